"""Turn what a trainable returned or reported into plain finite numbers, or say what is wrong."""

from __future__ import annotations

import math
import numbers
from typing import Any


def to_number(value: Any) -> float | None:
    """A metric value as float: Python/numpy numbers and 0-d tensors (anything with .item())."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, numbers.Real):
        return float(value)
    item = getattr(value, "item", None)
    if callable(item):
        try:
            v = item()
        except (TypeError, ValueError, RuntimeError):
            return None
        return float(v) if isinstance(v, numbers.Real) else None
    return None


def clean_metrics(raw: dict[str, Any], strict: bool = False) -> tuple[dict[str, float], str | None]:
    """Numbers only. With strict (final results), NaN/inf or nothing numeric at all is a failure."""
    out, _ = split_values(raw)
    for key, v in out.items():
        if strict and not math.isfinite(v):
            return {}, f"returned {key}={v} (not a finite number)"
    if strict and raw and not out:
        return {}, "returned no numeric metrics"
    return out, None


def split_values(raw: dict[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    """(metrics, the rest): numbers (nested dicts of numbers as `outer.inner`) are metrics; every other value
    is said, never dropped without a word: text, booleans-as-text and None as info, the rest with why."""
    metrics: dict[str, float] = {}
    other: dict[str, str] = {}
    for key, value in raw.items():
        name = str(key)
        v = to_number(value)
        if v is not None:
            metrics[name] = v
        elif isinstance(value, dict):
            inner, rest = split_values(value)
            metrics.update({f"{name}.{k}": x for k, x in inner.items()})
            other.update({f"{name}.{k}": x for k, x in rest.items()})
        elif value is None or isinstance(value, str):
            other[name] = f"{value!r} (text: kept as info, not a metric)" if value is not None else "None"
        elif isinstance(value, (list, tuple)):
            other[name] = (f"a {type(value).__name__} of {len(value)} values: not a metric (report one value "
                           "per epoch with report(), or return its last value)")
        else:
            other[name] = f"a {type(value).__name__}: not a number, not kept"
    return metrics, other


COUNTERS = ("epoch", "step")  # the x-axis of `report`'s values, in this order of preference; never metrics


def epoch_index(value: float) -> int | None:
    """A counter as a step: a whole number as it is, a fraction as the epoch it is part of (Hugging Face's
    `epoch: 0.27` -> 1); None for what is no count (negative, NaN, inf)."""
    if not math.isfinite(value) or value < 0:
        return None
    return math.ceil(value)


def split_step(raw: dict[str, Any]) -> tuple[int | None, dict[str, Any]]:
    """(the step `report(epoch=3, ...)` names, the rest): a numeric `epoch`, else `step`, is the x-axis of the
    other values; both counters leave the metrics, as a command's counters do."""
    for name in COUNTERS:
        value = raw.get(name)
        number = None if value is None or isinstance(value, bool) else to_number(value)
        step = None if number is None else epoch_index(number)
        if step is not None:
            return step, {k: v for k, v in raw.items() if k not in COUNTERS}
    return None, raw
