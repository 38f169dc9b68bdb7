"""An input-bound demo: pose heatmaps rendered on the CPU per batch, then decoded into features.

Pose pipelines render a Gaussian heatmap per keypoint and decode it back to coordinates; done per batch on
the CPU it sits on the training loop's critical path. `heatmap_size` sets its cost (work grows with its
square); `prefetch = true` overlaps it with the step through gridwatch.prefetch, `false` loads inline (still
measured), so one grid shows the starved and the fixed case side by side.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from gridwatch import prefetch
from gridwatch.demo import data

Report = Callable[..., None]


def render_and_decode(seq: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """(B, T, 28) keypoints -> jittered heatmaps (B, 14, size, size) of the middle frame -> decoded features."""
    b = seq.shape[0]
    pts = seq[:, seq.shape[1] // 2].reshape(b, data.KEYPOINTS, 2)
    pts = pts + rng.normal(0, 0.01, pts.shape).astype(np.float32)  # augmentation: jitter
    grid = np.linspace(-0.4, 1.2, size, dtype=np.float32)
    sigma2 = 2 * (1.6 / size * 1.5) ** 2
    gx = np.exp(-((grid[None, None, :] - pts[..., :1]) ** 2) / sigma2)  # (B, 14, size)
    gy = np.exp(-((grid[None, None, :] - pts[..., 1:]) ** 2) / sigma2)
    heat = gy[..., :, None] * gx[..., None, :]  # (B, 14, size, size)
    flat = heat.reshape(b, data.KEYPOINTS, -1)
    peak = flat.argmax(axis=2)
    coords = np.stack([grid[peak % size], grid[peak // size]], axis=2)  # decoded (B, 14, 2)
    spread = flat.mean(axis=2)
    return np.concatenate([coords.reshape(b, -1), spread, seq.std(axis=1)], axis=1).astype(np.float32)


def input_bound(config: dict[str, Any], report: Report) -> dict[str, float]:
    """config: heatmap_size (48), prefetch (true), depth (3), hidden (512), batch_size (64), epochs (5), lr."""
    import torch
    from torch import nn

    ds = data.load(int(config.get("n_per_class", 800)), int(config.get("frames", 24)))
    seed, fold = int(config["seed"]), int(config["fold"])
    torch.manual_seed(seed * 1000 + fold)
    device = torch.device(config.get("device", "cpu"))
    size, batch = int(config.get("heatmap_size", 48)), int(config.get("batch_size", 64))
    depth = int(config.get("depth", 3)) if config.get("prefetch", True) else 0
    train_idx, val_idx = data.stratified_fold(ds.labels, int(config["n_folds"]), fold, seed)
    features = 14 * 2 + 14 + 28
    width = int(config.get("hidden", 512))
    model = nn.Sequential(nn.BatchNorm1d(features), nn.Linear(features, width), nn.ReLU(), nn.Linear(width, width),
                          nn.ReLU(), nn.Linear(width, len(data.CLASSES))).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=float(config.get("lr", 3e-3)))
    rng = np.random.default_rng(seed + fold)
    val_acc = loss = wait = 0.0
    for _ in range(int(config.get("epochs", 5))):
        model.train()
        losses = []
        loader = prefetch(_batches(ds, rng.permutation(train_idx), batch, size, rng), depth=depth, device=device)
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            opt.zero_grad(set_to_none=True)
            out = nn.functional.cross_entropy(model(xb), yb)
            out.backward()
            opt.step()
            losses.append(out.item())
        loss, wait = float(np.mean(losses)), loader.stats.fraction
        val_acc = _accuracy(model, ds, val_idx, size, device)
        report(val_acc=val_acc, train_loss=loss, data_wait=wait)
    return {"val_acc": val_acc, "train_loss": loss, "data_wait": wait}


def _batches(ds: data.PoseData, order: np.ndarray, batch: int, size: int, rng: np.random.Generator
             ) -> Iterator[tuple[Any, Any]]:
    import torch

    for i in range(0, len(order), batch):
        idx = np.sort(order[i:i + batch])
        x = render_and_decode(np.asarray(ds.sequences[idx]), size, rng)
        yield torch.from_numpy(x), torch.from_numpy(np.asarray(ds.labels[idx]))


def _accuracy(model: Any, ds: data.PoseData, idx: np.ndarray, size: int, device: Any) -> float:
    import torch

    model.eval()
    rng = np.random.default_rng(0)
    correct = 0
    with torch.no_grad():
        for xb, yb in _batches(ds, idx, 256, size, rng):
            correct += int((model(xb.to(device)).argmax(dim=1) == yb.to(device)).sum().item())
    return correct / len(idx)
