"""Checks on single grid-file values: each problem becomes one SpecError naming the file and the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class SpecError(ValueError):
    """A grid file problem: which file, which key, what is wrong."""

    def __init__(self, path: str | Path, key: str, message: str) -> None:
        self.path = str(path)
        self.key = key
        self.message = message
        super().__init__(f"{self.path}: {key}: {message}" if key else f"{self.path}: {message}")


def gpus_value(text: str) -> Any:
    """The text form of a GPU choice (the CLI's --gpus, the window's field: "all", "none", "0,1" or "0 1")
    as the TOML value a grid file holds; `gpus` then checks both the same way."""
    t = text.strip()
    if t in ("", "all", "none"):
        return t or "all"
    try:
        return [int(x) for x in t.replace(",", " ").split()]
    except ValueError:
        return t


def gpus(path: str | Path, key: str, value: Any) -> tuple[int, ...] | None:
    """None for all GPUs, () for none, else the indices (as NVML and nvidia-smi number them)."""
    if value == "all":
        return None
    if value == "none":
        return ()
    ok = isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                         for v in value)
    if not ok:
        raise SpecError(path, key, f'must be "all", "none" or a list of GPU indices, not {value!r}')
    return tuple(value)


def no_unknown(path: str | Path, where: str, table: dict[str, Any], allowed: set[str]) -> None:
    for key in table:
        if key not in allowed:
            full = f"{where}.{key}" if where else key
            raise SpecError(path, full, f"unknown key (expected one of: {', '.join(sorted(allowed))})")


def table(path: str | Path, key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SpecError(path, key, f"must be a table, not {type(value).__name__}")
    return value


def string(path: str | Path, key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise SpecError(path, key, f"must be a string, not {toml_repr(value)}")
    return value


def whole(path: str | Path, key: str, value: Any, minimum: int, auto: bool = False) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        extra = ' or "auto"' if auto else ""
        raise SpecError(path, key, f"must be a whole number{extra}, not {toml_repr(value)}")
    if value < minimum:
        raise SpecError(path, key, f"must be at least {minimum}, not {value}")
    return value


def toml_repr(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)
