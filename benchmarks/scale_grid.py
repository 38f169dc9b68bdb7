"""A grid of many tiny trials for benchmarks/gui_overhead.py: `configs` configs x `folds` folds of a ~2 ms
pure-python trainable (no torch), each reporting two epochs, on `slots` CPU slots."""

from __future__ import annotations

import time
from pathlib import Path

TRIAL_S = 0.002  # each trial spins this long


def fit(config: dict, report: object) -> dict:
    """About TRIAL_S of python work, reported as two epochs; deterministic metrics."""
    deadline = time.perf_counter() + config.get("seconds", TRIAL_S)
    n = 0
    while time.perf_counter() < deadline:
        n += 1
    score = (config["a"] * 31 + config["b"] * 7 + config["fold"]) % 97 / 97
    report(score=score / 2)  # type: ignore[operator]
    report(score=score)  # type: ignore[operator]
    return {"score": score, "spins": float(n)}


def write_grid(folder: Path, configs: int = 2000, folds: int = 2, slots: int = 2) -> Path:
    """The grid file, beside a copy of this trainable; `configs` = len(a) x len(b)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "scale_trainable.py").write_text(Path(__file__).read_text(encoding="utf-8"), encoding="utf-8")
    b = 40 if configs % 40 == 0 else 1
    a = configs // b
    text = (f'[run]\nname = "scale"\nfolds = {folds}\nseed = 0\n\n[devices]\ncpu_slots = {slots}\ngpus = "none"\n\n'
            '[[model]]\nname = "tiny"\ntrainable = "scale_trainable.py:fit"\ndevice = "cpu"\n'
            f'metric = "score"\n[model.grid]\na = {list(range(a))}\nb = {list(range(b))}\n'
            '[model.fixed]\nepochs = 2\n')
    path = folder / "scale.toml"
    path.write_text(text, encoding="utf-8")
    return path
