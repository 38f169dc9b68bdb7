"""Write grid data back to TOML text that `load_grid` (and the CLI) reads unchanged.

Only what grid files hold: tables, arrays of tables, and strings/numbers/booleans/arrays/inline tables.
"""

from __future__ import annotations

import math
import re
from typing import Any

BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def dumps(data: dict[str, Any]) -> str:
    lines: list[str] = []
    _table(lines, [], data)
    return "\n".join(lines).strip() + "\n"


def _table(lines: list[str], path: list[str], table: dict[str, Any]) -> None:
    subtables = {k: v for k, v in table.items() if isinstance(v, dict)}
    arrays = {k: v for k, v in table.items() if _is_table_array(v)}
    for key, value in table.items():
        if key not in subtables and key not in arrays:
            lines.append(f"{_key(key)} = {value_text(value)}")
    for key, sub in subtables.items():
        lines += ["", f"[{'.'.join(_key(p) for p in [*path, key])}]"]
        _table(lines, [*path, key], sub)
    for key, items in arrays.items():
        for item in items:
            lines += ["", f"[[{'.'.join(_key(p) for p in [*path, key])}]]"]
            _table(lines, [*path, key], item)


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def _key(k: str) -> str:
    return k if BARE_KEY.fullmatch(k) else _string(k)


def _string(s: str) -> str:
    """A TOML basic string: quotes, backslashes and every control character escaped."""
    out = []
    for ch in s:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'



def value_text(v: Any) -> str:
    """One TOML value, as it would appear after `key = `."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, list):
        return "[" + ", ".join(value_text(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {value_text(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")
