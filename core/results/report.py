"""Renderings of a run summary: leaderboard cells (the CLI's table and the window's both use them), timing,
speedup, and the per-trial report (table, csv, json)."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from gridwatch.results.store import TrialRow, run_folder, trial_dir
from gridwatch.results.summary import ConfigResult, RunSummary

TRIAL_COLUMNS = ["trial_id", "model", "fold", "state", "device", "slot", "start", "end", "duration_s",
                 "attempts", "reason", "trial_dir", "log_tail"]
LEADERBOARD_TOP = 20  # configs the CLI lists; `gridwatch report` has every trial


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


def fmt(v: float | None, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}g}"


def fixed(v: float) -> str:
    """Same decimals down a column, so means line up and compare at a glance."""
    if math.isnan(v):
        return "-"
    return f"{v:.4f}" if abs(v) < 1e4 else f"{v:.3e}"


def params_text(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items()) or "(no params)"


LEADERBOARD_HEADERS = ["#", "model", "params", "metric", "CV mean", "± std", "folds"]


def leaderboard_cells(board: list[ConfigResult]) -> list[list[str]]:
    """One row of text per config, best first, in LEADERBOARD_HEADERS order."""
    rows = []
    for i, c in enumerate(board, 1):
        arrow = "↑" if c.goal == "max" else "↓"
        folds = f"{c.folds_done}/{c.folds_total}" + (f" ({c.failed} failed)" if c.failed else "")
        rows.append([str(i), c.model, params_text(c.params), f"{c.metric} {arrow}", fixed(c.mean),
                     fixed(c.std) if c.folds_done > 1 else "-", folds])
    return rows


def leaderboard_text(board: list[ConfigResult], top: int | None = None) -> str:
    """Best first; with `top`, only that many rows and a line saying how many more."""
    if not board:
        return "no finished trials: nothing to rank"
    rows = [[*r[:4], f"{r[4]} ± {r[5]}", r[6]] for r in leaderboard_cells(board)]
    more = len(rows) - top if top is not None and len(rows) > top else 0
    text = table(["#", "model", "params", "metric", "CV mean ± std", "folds"], rows[: len(rows) - more])
    return text + (f"\n... and {more} more configs" if more else "")


def speedup_text(s: RunSummary) -> str:
    return (f"{len(s.timed)} trials: {s.serial_s:.1f} s of training in {s.wall_s:.1f} s wall time "
            f"-> speedup {s.speedup:.2f}x over one at a time")


TIMING_HEADERS = ["trial", "slot", "state", "duration"]


def timing_cells(s: RunSummary) -> list[list[str]]:
    return [[r.id, r.slot or "-", r.state, f"{r.duration or 0.0:.1f} s"] for r in s.timed]


def timing_totals(s: RunSummary) -> str:
    return (f"{len(s.timed)} trials: serial-equivalent {s.serial_s:.1f} s · wall {s.wall_s:.1f} s · "
            f"speedup {s.speedup:.2f}x")


def timing_text(s: RunSummary) -> str:
    """Per trial its duration, then the serial-equivalent sum, the wall time and the speedup."""
    lines = [table(TIMING_HEADERS, timing_cells(s)),
             f"serial-equivalent (sum of durations): {s.serial_s:.1f} s",
             f"wall time:                            {s.wall_s:.1f} s",
             f"speedup:                              {s.speedup:.2f}x"]
    return "\n".join(lines)


def failures_text(s: RunSummary, limit: int = 10, last_lines: int = 3, logs: dict[str, str] | None = None
                  ) -> list[str]:
    """Each failed or timed-out trial with its reason (the first `limit`) and, from `logs` (trial id -> its
    stored output), its last lines; then how many more."""
    rows = s.failed_rows()
    lines = []
    for r in rows[:limit]:
        lines.append(f"{r.state}: {r.id}: {r.reason}")
        tail = [ln for ln in (logs or {}).get(r.id, "").splitlines() if ln.strip()][-last_lines:] if last_lines else []
        lines += [f"    | {ln[:200]}" for ln in tail]
    if len(rows) > limit:
        lines.append(f"... and {len(rows) - limit} more failed")
    return lines


def trial_records(rows: list[TrialRow], db: Path | None = None) -> list[dict[str, Any]]:
    """One flat record per trial: fixed columns (its folder, where its files are, and the tail of its
    output), then every param, then every final metric."""
    out = []
    for r in rows:
        rec: dict[str, Any] = {
            "trial_id": r.id, "model": r.model, "fold": r.fold, "state": r.state, "device": r.device,
            "slot": r.slot, "start": r.started, "end": r.ended, "duration_s": r.duration,
            "attempts": r.attempts, "reason": r.reason,
            "trial_dir": str(trial_dir(db, r.id)) if db is not None else None, "log_tail": r.log_tail,
        }
        rec.update({f"param.{k}": v for k, v in r.params.items()})
        rec.update({f"metric.{k}": v for k, v in r.metrics.items()})
        out.append(rec)
    return out


def _columns(records: list[dict[str, Any]]) -> list[str]:
    """The fixed columns, then every param, then every metric, each in order of first appearance. A dict
    keeps that order and finds a name in one step: linear in the cells, however many metrics a trial has."""
    cols = dict.fromkeys(TRIAL_COLUMNS)
    for prefix in ("param.", "metric."):
        for rec in records:
            for k in rec:
                if k.startswith(prefix):
                    cols.setdefault(k)
    return list(cols)


def render_trials(rows: list[TrialRow], format_: str, db: Path | None = None) -> str:
    records = trial_records(rows, db)
    if format_ == "json":
        return json.dumps(records, indent=2)
    cols = _columns(records)
    if format_ == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
        return buf.getvalue().rstrip("\n")
    shown = [c for c in cols if c not in ("start", "end", "attempts", "trial_dir", "log_tail")]
    cells = [[_cell(rec.get(c)) for c in shown] for rec in records]
    text = table([c.removeprefix("param.").removeprefix("metric.") for c in shown], cells)
    if db is not None:
        text += f"\ntrial folders: {run_folder(db) / 'trials'}/<trial_id>/ (--format json: each trial's log tail)"
    return text


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return fmt(v)
    return str(v)
