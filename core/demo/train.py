"""The demo trainables: an MLP on per-sample pose statistics and an LSTM on the pose sequences."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from gridwatch.demo import data

Report = Callable[..., None]


def mlp(config: dict[str, Any], report: Report) -> dict[str, float]:
    """config: hidden (64), hidden_layers (2), lr, batch_size, epochs, weight_decay, n_per_class."""
    import torch
    from torch import nn

    ds = data.load(int(config.get("n_per_class", 800)), int(config.get("frames", 24)))
    torch.manual_seed(int(config["seed"]) * 1000 + int(config["fold"]))
    width, depth = int(config.get("hidden", 64)), int(config.get("hidden_layers", 2))
    layers: list[nn.Module] = []
    size = ds.features.shape[1]
    for _ in range(depth):
        layers += [nn.Linear(size, width), nn.ReLU()]
        size = width
    model = nn.Sequential(nn.BatchNorm1d(ds.features.shape[1]), *layers, nn.Linear(size, len(data.CLASSES)))
    return _fit(model, ds.features, ds.labels, config, report)


def lstm(config: dict[str, Any], report: Report) -> dict[str, float]:
    """config: hidden (32), layers (1), lr, batch_size, epochs, n_per_class, frames."""
    import torch
    from torch import nn

    ds = data.load(int(config.get("n_per_class", 800)), int(config.get("frames", 24)))
    torch.manual_seed(int(config["seed"]) * 1000 + int(config["fold"]))

    class SeqClassifier(nn.Module):
        def __init__(self, inputs: int, hidden: int, layers: int, classes: int) -> None:
            super().__init__()
            self.lstm = nn.LSTM(inputs, hidden, num_layers=layers, batch_first=True)
            self.head = nn.Linear(hidden, classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out, _ = self.lstm(x)
            return self.head(out[:, -1])

    model = SeqClassifier(ds.sequences.shape[2], int(config.get("hidden", 32)), int(config.get("layers", 1)),
                          len(data.CLASSES))
    return _fit(model, ds.sequences, ds.labels, config, report)


def _fit(model: Any, x: np.ndarray, y: np.ndarray, config: dict[str, Any], report: Report) -> dict[str, float]:
    import torch
    from torch import nn

    device = torch.device(config.get("device", "cpu"))
    model.to(device)
    train_idx, val_idx = data.stratified_fold(y, int(config["n_folds"]), int(config["fold"]), int(config["seed"]))
    opt = torch.optim.Adam(model.parameters(), lr=float(config.get("lr", 1e-3)),
                           weight_decay=float(config.get("weight_decay", 0.0)))
    loss_fn = nn.CrossEntropyLoss()
    batch = int(config.get("batch_size", 64))
    rng = np.random.default_rng(int(config["seed"]) + int(config["fold"]))
    val_acc = loss = 0.0
    started = time.perf_counter()
    for _epoch in range(int(config.get("epochs", 10))):
        model.train()
        losses = []
        for idx in _batches(rng.permutation(train_idx), batch):
            xb, yb = _tensors(x, y, idx, device)
            opt.zero_grad(set_to_none=True)
            out = loss_fn(model(xb), yb)
            out.backward()
            opt.step()
            losses.append(out.item())
        loss = float(np.mean(losses))
        val_acc = _accuracy(model, x, y, val_idx, batch * 4, device)
        report(val_acc=val_acc, train_loss=loss)
    return {"val_acc": val_acc, "train_loss": loss, "train_s": time.perf_counter() - started}


def _batches(order: np.ndarray, size: int) -> list[np.ndarray]:
    # Sorted indices read the memory-mapped file front to back; order inside a batch does not matter.
    return [np.sort(order[i:i + size]) for i in range(0, len(order), size)]


def _tensors(x: np.ndarray, y: np.ndarray, idx: np.ndarray, device: Any) -> tuple[Any, Any]:
    import torch

    xb = torch.from_numpy(np.ascontiguousarray(x[idx], dtype=np.float32))
    yb = torch.from_numpy(np.ascontiguousarray(y[idx]))
    return xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)


def _accuracy(model: Any, x: np.ndarray, y: np.ndarray, idx: np.ndarray, batch: int, device: Any) -> float:
    import torch

    model.eval()
    correct = 0
    with torch.no_grad():
        for b in _batches(idx, batch):
            xb, yb = _tensors(x, y, b, device)
            correct += int((model(xb).argmax(dim=1) == yb).sum().item())
    return correct / len(idx)
