"""Shared test helpers: write grids and trainables, run the real CLI, inspect process trees."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import psutil

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def grid(folder: Path, models: str, folds: int = 2, devices: str = "cpu_slots = 2", name: str = "t") -> Path:
    text = f'[run]\nname = "{name}"\nfolds = {folds}\nseed = 0\n\n[devices]\n{devices}\n\n'
    return write(folder / "grid.toml", text + textwrap.dedent(models).lstrip())


def cli_env(cwd: Path) -> dict[str, str]:
    """The CLI's environment in tests: results go to `runs/` in the folder it runs from."""
    env = dict(os.environ)
    env["GRIDWATCH_RUNS"] = str(cwd / "runs")
    return env


def cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = cli_env(cwd)
    return subprocess.run([sys.executable, "-m", "gridwatch", *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=timeout)


def cli_popen(*args: str, cwd: Path) -> subprocess.Popen[str]:
    env = cli_env(cwd)
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


def wait_for(predicate: Callable[[], T], timeout: float, what: str | Callable[[], str],
             interval: float = 0.02) -> T:
    """Poll `predicate` until it returns something truthy, and return that; on timeout fail the test with
    what was awaited (`what` may be a callable, to describe the state at the time of failure)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout:g} s waiting for: {text}")
        time.sleep(interval)


def is_worker(p: psutil.Process) -> bool:
    """A gridwatch slot worker (`python -P -m gridwatch.worker`)."""
    try:
        return "gridwatch.worker" in " ".join(p.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def worker_processes(pid: int) -> list[psutil.Process]:
    """The live descendants of `pid` that are gridwatch workers."""
    return [p for p in alive(descendants(pid)) if is_worker(p)]


# A trainable that holds each trial until the file `gate` (in config["dir"]) exists, after leaving a file
# `running-<pid>` there: a test sees which workers are mid-trial, and decides when the trials may end.
# The first config["free"] trials (default 0) to claim a token file are not held: they finish at once.
# The 120 s cap only keeps a broken test from hanging for ever; no test relies on it.
GATED = """
import os, time
def fit(config):
    folder = config["dir"]
    for k in range(config.get("free", 0)):
        try:
            os.close(os.open(os.path.join(folder, f"free-{k}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return {"s": float(config["fold"])}
        except FileExistsError:
            pass
    open(os.path.join(folder, f"running-{os.getpid()}"), "w").close()
    deadline = time.monotonic() + 120
    while not os.path.exists(os.path.join(folder, "gate")) and time.monotonic() < deadline:
        time.sleep(0.02)
    return {"s": float(config["fold"])}
"""


def running_workers(folder: Path) -> set[int]:
    """Pids of the workers that have entered a GATED trial in `folder`."""
    return {int(p.name.split("-", 1)[1]) for p in folder.glob("running-*")}


def gated_grid(folder: Path, axes: str = "", folds: int = 2, devices: str = "cpu_slots = 2", free: int = 0) -> Path:
    """A grid of one GATED model (trainable `gated.py:fit` in `folder`); `axes` are its [model.grid] lines."""
    write(folder / "gated.py", GATED)
    models = '[[model]]\nname = "g"\ntrainable = "gated.py:fit"\n'
    if axes:
        models += f"[model.grid]\n{axes}\n"
    models += f'[model.fixed]\ndir = "{folder}"\n' + (f"free = {free}\n" if free else "")
    return grid(folder, models, folds=folds, devices=devices)


def finished_ids(db: Path) -> set[str]:
    """Ids of the finished trials in a results file; empty while the CLI has not created it yet."""
    if not db.exists():  # connecting would create it, and the CLI would then refuse it
        return set()
    try:
        conn = sqlite3.connect(db, timeout=10)
        try:
            return {t for (t,) in conn.execute("SELECT id FROM trials WHERE state='finished'")}
        finally:
            conn.close()
    except sqlite3.Error:  # not created yet, or mid-creation
        return set()


# -- the package as a stranger gets it: the wheel, installed into a fresh venv (conftest's `wheel`, `venv`) -----

TORCH = "torch==2.13.0"  # the Makefile's TORCH: the CPU build
# Build inputs only: never the dev venv, build outputs, caches or results.
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "runs", "*.egg-info", "__pycache__", "*.pyc",
                                    ".pytest_cache", ".hypothesis", ".ruff_cache", ".mypy_cache", ".whl", ".gl",
                                    "*.gridwatch.db*")


def proc_tail(proc: subprocess.CompletedProcess[str], n: int = 6000) -> str:
    return f"exit {proc.returncode}\n--- stdout ---\n{proc.stdout[-n:]}\n--- stderr ---\n{proc.stderr[-n:]}"


def run_cmd(cmd: list[str | Path], timeout: float, cwd: Path, env: dict[str, str] | None = None,
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, text=True, capture_output=True, timeout=timeout)


@dataclass
class Wheel:
    path: Path
    source: Path  # the copied tree it was built from


@dataclass
class FreshVenv:
    root: Path
    seconds: dict[str, float] = field(default_factory=dict)
    torch_before: str = ""
    torch_after: str = ""

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def python(self) -> Path:
        return self.bin / "python"

    def env(self, **extra: str) -> dict[str, str]:
        """This venv only: no PYTHONPATH, no dev venv, no inherited gridwatch settings."""
        drop = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONSAFEPATH", "VIRTUAL_ENV")
        env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("GRIDWATCH_")}
        env["VIRTUAL_ENV"] = str(self.root)
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        env.update(extra)
        return env


def _no_isolation() -> bool:
    """The dev venv already has the build backend (setuptools>=77): no download, no isolated build env."""
    try:
        return int(importlib.metadata.version("setuptools").split(".")[0]) >= 77
    except importlib.metadata.PackageNotFoundError:
        return False


def build_wheel(src: Path, out: Path) -> Wheel:
    """Built from a copy at `src`, so the checkout's build/ and egg-info are neither used (stale files) nor
    touched."""
    shutil.copytree(REPO, src, ignore=NOT_SOURCE)
    cmd: list[str | Path] = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", out, src]
    if _no_isolation():
        cmd.insert(5, "--no-build-isolation")
    proc = run_cmd(cmd, timeout=300, cwd=src)
    assert proc.returncode == 0, proc_tail(proc)
    wheels = list(out.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return Wheel(wheels[0], src)


def fresh_venv(wheel: Wheel, root: Path) -> FreshVenv:
    """A new venv at `root`: the pinned CPU torch first, then the wheel (not editable, not from the source tree:
    pip reads the dependencies from the wheel's own metadata)."""
    v = FreshVenv(root)

    def step(name: str, cmd: list[str | Path], timeout: float) -> subprocess.CompletedProcess[str]:
        t0 = time.monotonic()
        proc = run_cmd(cmd, timeout=timeout, env=v.env(), cwd=v.root.parent)
        v.seconds[name] = time.monotonic() - t0
        assert proc.returncode == 0, f"{name}: {proc_tail(proc)}"
        return proc

    def torch_version() -> str:
        code = "import importlib.metadata as m; print(m.version('torch'))"
        return step("torch version", [v.python, "-c", code], 60).stdout.strip()

    step("venv", [sys.executable, "-m", "venv", v.root], 120)
    # --no-compile: byte-compiling torch's files is most of its install time, and nothing here imports torch.
    step("pip install torch", [v.python, "-m", "pip", "install", "--no-compile", TORCH], 600)
    v.torch_before = torch_version()
    step("pip install wheel", [v.python, "-m", "pip", "install", wheel.path], 600)
    v.torch_after = torch_version()
    return v
