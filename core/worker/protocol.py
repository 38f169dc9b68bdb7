"""Worker protocol: newline-delimited JSON, one message type per event, versioned.

Parent -> worker (stdin):  run {trial}, shutdown
Worker -> parent (its own pipe, the worker's original stdout; user prints never reach it):
  hello, trial_started, epoch, metric, log, trial_finished, trial_failed,
  telemetry (data-wait figures from gridwatch.prefetch), memory_probe (a trial's RSS and VRAM after a second)
`epoch` {step, metrics} and `metric` {key, value, step}: `step` is the x-axis (the epoch where the trainable
names it); a value for a key and step already sent replaces it. Optional `epochs_total`: the epochs the trial
says it runs (a command's `epoch 3/6`). Optional fields are added, never required: older peers ignore them.
"""

from __future__ import annotations

import json
import math
from typing import Any

VERSION = 1
TYPES = frozenset(
    {"hello", "trial_started", "epoch", "metric", "log", "trial_finished", "trial_failed", "telemetry",
     "memory_probe", "run", "shutdown"}
)


class ProtocolError(ValueError):
    pass


def encode(type_: str, **fields: Any) -> bytes:
    if type_ not in TYPES:
        raise ProtocolError(f"unknown message type {type_!r}")
    msg = {"v": VERSION, "type": type_, **fields}
    return (json.dumps(_finite(msg), separators=(",", ":"), default=str) + "\n").encode("utf-8")


def decode(line: bytes | str) -> dict[str, Any]:
    try:
        msg = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"not a protocol line: {exc}") from None
    if not isinstance(msg, dict) or msg.get("type") not in TYPES:
        raise ProtocolError("not a protocol message")
    if msg.get("v") != VERSION:
        raise ProtocolError(f"protocol version {msg.get('v')!r}, expected {VERSION}")
    return msg


def _finite(value: Any) -> Any:
    """JSON has no NaN/inf: send them as strings so the parent can say what the trainable returned."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
