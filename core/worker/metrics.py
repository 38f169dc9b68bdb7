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
    out: dict[str, float] = {}
    for key, value in raw.items():
        v = to_number(value)
        if v is None:
            continue
        if strict and not math.isfinite(v):
            return {}, f"returned {key}={v} (not a finite number)"
        out[str(key)] = v
    if strict and raw and not out:
        return {}, "returned no numeric metrics"
    return out, None
