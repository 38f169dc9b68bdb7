"""Shared test helpers: write grids and trainables, run the real CLI, inspect process trees."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def grid(folder: Path, models: str, folds: int = 2, devices: str = "cpu_slots = 2", name: str = "t") -> Path:
    text = f'[run]\nname = "{name}"\nfolds = {folds}\nseed = 0\n\n[devices]\n{devices}\n\n'
    return write(folder / "grid.toml", text + textwrap.dedent(models).lstrip())


def cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    return subprocess.run([sys.executable, "-m", "gridwatch", *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=timeout)


def cli_popen(*args: str, cwd: Path) -> subprocess.Popen[str]:
    env = dict(os.environ)
    return subprocess.Popen([sys.executable, "-m", "gridwatch", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out
