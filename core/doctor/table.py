"""The doctor's one table: a row per check (and per GPU where it is per GPU), its exit code, its JSON form.

A row's result is "pass", "FAIL", "warn" (worth a look, not a failure), "info" (a measurement with no
threshold) or "skipped: why". Only FAIL makes the exit code non-zero: a check that could not run is said,
never counted against the machine.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gridwatch.results.report import table

PASS, FAIL, WARN, INFO = "pass", "FAIL", "warn", "info"
HEADERS = ["check", "result", "measured", "expected"]


@dataclass(frozen=True)
class Row:
    check: str
    result: str
    measured: str = "-"
    expected: str = "-"

    @property
    def failed(self) -> bool:
        return self.result == FAIL


def skipped(check: str, why: str, expected: str = "-") -> Row:
    return Row(check, f"skipped: {why}", "-", expected)


def verdict(check: str, ok: bool, measured: str, expected: str) -> Row:
    return Row(check, PASS if ok else FAIL, measured, expected)


def format_rows(rows: list[Row]) -> str:
    return table(HEADERS, [[r.check, r.result, r.measured, r.expected] for r in rows])


def exit_code(rows: list[Row]) -> int:
    return 1 if any(r.failed for r in rows) else 0


def summary_line(rows: list[Row]) -> str:
    counts: dict[str, int] = {}
    for r in rows:
        key = "skipped" if r.result.startswith("skipped") else r.result
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{n} {k}" for k, n in counts.items()) or "no checks ran"


def save_json(path: Path, rows: list[Row], meta: dict[str, Any]) -> None:
    data = {**meta, "exit_code": exit_code(rows), "rows": [asdict(r) for r in rows]}
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
