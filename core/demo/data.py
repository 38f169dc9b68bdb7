"""A synthetic pose-keypoint action dataset, generated deterministically and cached as .npy files.

14 keypoints x (x, y) per frame, T frames per sample, one action class per sample. Workers open the cache
with mmap_mode="r", so N workers share the page cache instead of holding N copies.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

KEYPOINTS = 14  # head, neck, shoulders, elbows, wrists, hips, knees, ankles
CLASSES = ("wave", "squat", "walk", "reach", "jump")
VERSION = 1

# A standing skeleton, (x, y) with y up, in body heights.
SKELETON = np.array([
    [0.00, 0.95], [0.00, 0.85],                 # head, neck
    [-0.12, 0.82], [0.12, 0.82],                # shoulders L, R
    [-0.18, 0.65], [0.18, 0.65],                # elbows
    [-0.20, 0.50], [0.20, 0.50],                # wrists
    [-0.08, 0.50], [0.08, 0.50],                # hips
    [-0.09, 0.27], [0.09, 0.27],                # knees
    [-0.09, 0.03], [0.09, 0.03],                # ankles
], dtype=np.float32)


@dataclass(frozen=True)
class PoseData:
    sequences: np.ndarray  # (N, T, 28) float32, memory-mapped
    features: np.ndarray  # (N, 56) float32 per-coordinate mean and std over time, memory-mapped
    labels: np.ndarray  # (N,) int64


def cache_dir() -> Path:
    env = os.environ.get("GRIDWATCH_CACHE")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("gridwatch"))


def generate(n_per_class: int, frames: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = n_per_class * len(CLASSES)
    labels = np.repeat(np.arange(len(CLASSES)), n_per_class)
    t = np.linspace(0.0, 1.0, frames, dtype=np.float32)[None, :, None]  # (1, T, 1)
    speed = rng.uniform(1.0, 2.5, (n, 1, 1)).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1)).astype(np.float32)
    wave = np.sin(2 * np.pi * speed * t + phase)  # (n, T, 1)
    pose = np.broadcast_to(SKELETON, (n, frames, KEYPOINTS, 2)).copy()
    amp = rng.uniform(0.02, 0.10, (n, 1, 1)).astype(np.float32)
    _move(pose, labels, wave[..., 0], amp[..., 0])
    scale = rng.uniform(0.8, 1.2, (n, 1, 1, 1)).astype(np.float32)
    shift = rng.normal(0, 0.05, (n, 1, 1, 2)).astype(np.float32)
    pose = pose * scale + shift + rng.normal(0, 0.06, pose.shape).astype(np.float32)
    order = rng.permutation(n)
    return pose.reshape(n, frames, KEYPOINTS * 2)[order].astype(np.float32), labels[order].astype(np.int64)


def _move(pose: np.ndarray, labels: np.ndarray, w: np.ndarray, a: np.ndarray) -> None:
    """Each class moves a different part of the body; amplitude overlaps so classes are not trivial."""
    for c, name in enumerate(CLASSES):
        s = labels == c
        ws, As = w[s], a[s]
        if name == "wave":
            pose[s, :, 7, 1] += 2.5 * As * ws
            pose[s, :, 5, 1] += As * ws
        elif name == "squat":
            pose[s, :, :10, 1] -= (As * (1 + ws))[..., None]
        elif name == "walk":
            pose[s, :, 12, 0] += As * ws
            pose[s, :, 13, 0] -= As * ws
        elif name == "reach":
            pose[s, :, 6, 1] += 1.5 * As * (1 + ws)
            pose[s, :, 7, 1] += 1.5 * As * (1 + ws)
        elif name == "jump":
            pose[s, :, :, 1] += As[..., None] * np.abs(ws)[..., None]


def load(n_per_class: int = 800, frames: int = 24, seed: int = 0) -> PoseData:
    """Generate once per (size, seed), atomically, then memory-map for every later caller."""
    folder = cache_dir() / f"pose-v{VERSION}-n{n_per_class}-t{frames}-s{seed}"
    names = ("sequences.npy", "features.npy", "labels.npy")
    if not all((folder / f).exists() for f in names):
        seq, labels = generate(n_per_class, frames, seed)
        feats = np.concatenate([seq.mean(axis=1), seq.std(axis=1)], axis=1).astype(np.float32)
        folder.mkdir(parents=True, exist_ok=True)
        for name, arr in zip(names, (seq, feats, labels), strict=True):
            _save_atomic(folder / name, arr)
    seq, feats, labels = (np.load(folder / f, mmap_mode="r") for f in names)
    return PoseData(seq, feats, np.asarray(labels))


def _save_atomic(path: Path, arr: np.ndarray) -> None:
    """Write to a temp file and rename, so a concurrent worker never maps a half-written array."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, arr)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def stratified_fold(labels: np.ndarray, n_folds: int, fold: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) indices: every class split into n_folds near-equal parts, part `fold` held out."""
    if not 0 <= fold < n_folds:
        raise ValueError(f"fold {fold} is outside 0..{n_folds - 1}")
    rng = np.random.default_rng(seed)
    val_parts = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        val_parts.append(np.array_split(idx, n_folds)[fold])
    val = np.sort(np.concatenate(val_parts))
    train = np.setdiff1d(np.arange(len(labels)), val, assume_unique=True)
    return train, val
