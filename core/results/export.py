"""A results file as files for other tools: the leaderboard and the trials as CSV (each param and each final
metric a column of its own, numbers as stored, never rounded), and each model's best config as a `[[model]]`
block to paste into a grid file. Trials of an earlier version of the grid (superseded) are left out."""

from __future__ import annotations

import csv
import io
import json
import sys
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from gridwatch.grid.gridfile import BARE_KEY, value_text
from gridwatch.grid.trials import TrialState
from gridwatch.results.store import ResultStore, StoreError, TrialRow
from gridwatch.results.summary import ConfigResult, leaderboard

STDOUT = "-"
# Keys of a model's table that change how its trials run or rank: a best-config block keeps them as written.
KEPT_KEYS = ("metric", "goal", "metrics_regex", "retries", "timeout", "workdir", "repeats", "recycle_after_trials",
             "recycle_above_gb")


class ExportError(StoreError):
    """An output that cannot be written, in one line naming it (the CLI exits 2, as for a bad results file)."""


@dataclass(frozen=True)
class RunData:
    """What the exports read of a results file, read once."""

    name: str
    rows: list[TrialRow]  # superseded trials left out
    models: list[dict[str, Any]]  # as the results file keeps them: name, kind, target, device, fixed, metric, ...
    folds: int
    grid_path: str | None = None
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)  # each model's table as the grid file wrote it

    @property
    def board(self) -> list[ConfigResult]:
        return leaderboard(self.rows, self.models, self.folds)


def read_run(store: ResultStore) -> RunData:
    info = store.run_info()
    rows = [r for r in store.trials() if r.state != TrialState.SUPERSEDED]
    try:
        raw = tomllib.loads(store.grid_text()).get("model", [])
    except (StoreError, tomllib.TOMLDecodeError):
        raw = []
    tables = {m["name"]: m for m in raw if isinstance(m, dict) and isinstance(m.get("name"), str)}
    return RunData(info["name"], rows, info["models"], info["folds"] or 0, info["grid_path"], tables)


# -- CSV ----------------------------------------------------------------------------------------------------


def _cell(v: Any) -> Any:
    """What the csv module writes: floats by repr (round-trips exactly), None as empty, arrays as JSON."""
    if v is None:
        return ""
    if isinstance(v, list | dict):
        return json.dumps(v)
    return v


def _names(dicts: Iterable[dict[str, Any]], prefix: str) -> list[str]:
    """Every key, in order of first appearance, prefixed (a param named `mean` never meets the `mean` column)."""
    return [prefix + k for k in dict.fromkeys(k for d in dicts for k in d)]


def _csv(columns: list[str], records: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _cell(v) for k, v in rec.items()} for rec in records)
    return buf.getvalue()


def leaderboard_csv(data: RunData) -> str:
    """One row per ranked config, best first: rank, model, each param, the metric's mean and sample sd over
    folds, the folds done, and its trials' training time (total, and per ended fold)."""
    board = data.board
    durations: dict[tuple[str, str], list[float]] = {}
    for r in data.rows:
        if r.duration is not None and r.state in (TrialState.FINISHED, TrialState.FAILED, TrialState.TIMEOUT):
            durations.setdefault((r.model, r.config_key), []).append(r.duration)
    params = _names((c.params for c in board), "param.")
    columns = ["rank", "model", "config_key", *params, "metric", "goal", "mean", "sd", "folds_done", "folds_total",
               "folds_failed", "duration_s", "fold_duration_mean_s"]
    records = []
    for rank, c in enumerate(board, 1):
        spent = durations.get((c.model, c.config_key), [])
        records.append({"rank": rank, "model": c.model, "config_key": c.config_key,
                        **{f"param.{k}": v for k, v in c.params.items()}, "metric": c.metric, "goal": c.goal,
                        "mean": c.mean, "sd": c.std, "folds_done": c.folds_done, "folds_total": c.folds_total,
                        "folds_failed": c.failed, "duration_s": sum(spent) if spent else None,
                        "fold_duration_mean_s": sum(spent) / len(spent) if spent else None})
    return _csv(columns, records)


def trials_csv(data: RunData) -> str:
    """One row per trial in run order: its params, where and when it ran, each final metric, its peak memory
    (bytes) and why it failed."""
    rows = data.rows
    params = _names((r.params for r in rows), "param.")
    metrics = _names((r.metrics for r in rows), "metric.")
    columns = ["trial_id", "model", "config_key", *params, "fold", "state", "slot", "device", "attempts", "started",
               "ended", "duration_s", *metrics, "peak_mem_bytes", "reason"]
    records = [{"trial_id": r.id, "model": r.model, "config_key": r.config_key,
                **{f"param.{k}": v for k, v in r.params.items()}, "fold": r.fold, "state": r.state, "slot": r.slot,
                "device": r.device, "attempts": r.attempts, "started": r.started, "ended": r.ended,
                "duration_s": r.duration, **{f"metric.{k}": v for k, v in r.metrics.items()},
                "peak_mem_bytes": r.peak_mem, "reason": r.reason} for r in rows]
    return _csv(columns, records)


# -- best configs as TOML -------------------------------------------------------------------------------------


def _comment(text: str) -> str:
    return "# " + " ".join(text.split())


def _folder(data: RunData, model: dict[str, Any]) -> str | None:
    """The folder the model's relative paths start from, absolute, so the block works in any grid file here."""
    if not data.grid_path:
        return None
    base = Path(data.grid_path).parent
    cwd = data.tables.get(model["name"], {}).get("cwd")
    return str((base / cwd).resolve()) if isinstance(cwd, str) else str(base)


def _model_block(data: RunData, model: dict[str, Any], best: ConfigResult, configs: int) -> list[str]:
    goal = "higher" if best.goal == "max" else "lower"
    failed = f", {best.failed} failed" if best.failed else ""
    lines = [_comment(f"{model['name']}: best of {configs} configs by {best.metric} ({goal} is better): "
                      f"mean {best.mean!r} ± sd {best.std!r} over {best.folds_done}/{best.folds_total} folds"
                      f"{failed}; config {best.config_key}"),
             "[[model]]", f"name = {value_text(model['name'])}"]
    key = "command" if model.get("kind") == "command" else "trainable"
    lines.append(f"{key} = {value_text(model['target'])}")
    lines.append(f"device = {value_text(model.get('device', 'any'))}")
    table = data.tables.get(model["name"], {})
    folder = _folder(data, model)
    if folder is not None and (key == "command" or "cwd" in table):
        lines.append(f"cwd = {value_text(folder)}")
    kept = {k: table[k] for k in KEPT_KEYS if k in table}
    for k in ("metric", "goal"):
        if k not in kept and model.get(k) is not None:
            kept[k] = model[k]
    lines += [f"{k} = {value_text(v)}" for k, v in kept.items()]
    lines.append("[model.fixed]")
    fixed = {**model.get("fixed", {}), **best.params}
    lines += [f"{k if BARE_KEY.fullmatch(k) else value_text(k)} = {value_text(v)}" for k, v in fixed.items()]
    return lines


def best_toml(data: RunData, source: str = "") -> str:
    """Each model's best config (its leaderboard's first row) as a `[[model]]` block whose `[model.fixed]`
    holds the model's fixed values and the best params: paste it into a grid file under its `[run]` table."""
    board = data.board
    lines = [_comment(f"Best config of each model of run {data.name}" + (f" ({source})" if source else "")
                      + ", by its metric's mean over folds."),
             _comment("Paste into a grid file; each block's [model.fixed] holds the best params and the fixed values.")]
    for model in data.models:
        mine = [c for c in board if c.model == model["name"]]
        lines.append("")
        if not mine:
            lines.append(_comment(f"{model['name']}: no finished trial, no best config"))
            continue
        if not model.get("target"):  # written before the file kept each model's trainable
            lines.append(_comment(f"{model['name']}: the results file does not say its trainable; best params: "
                                  f"{json.dumps(mine[0].params)}"))
            continue
        lines += _model_block(data, model, mine[0], len(mine))
    return "\n".join(lines) + "\n"


# -- writing ----------------------------------------------------------------------------------------------


def write_output(target: str, text: str, stdout: TextIO | None = None) -> None:
    """`-`: standard output; else the file, replaced. A failure is one ExportError line naming the file."""
    if target == STDOUT:
        (stdout or sys.stdout).write(text)
        return
    try:
        with open(target, "w", encoding="utf-8", newline="") as f:
            f.write(text)
    except OSError as exc:
        raise ExportError(f"{target}: cannot write: {exc.strerror or exc}") from None


RENDERERS: dict[str, Callable[[RunData, str], str]] = {
    "leaderboard": lambda data, _source: leaderboard_csv(data),
    "trials": lambda data, _source: trials_csv(data),
    "best": best_toml,
}


def _check_targets(db: Path, outputs: dict[str, str]) -> None:
    if not outputs:
        raise ExportError(f"{db}: nothing to export: give --leaderboard, --trials and/or --best with a file "
                          f"('-' for standard output)")
    files = [t for t in outputs.values() if t != STDOUT]
    if len(outputs) - len(files) > 1:
        raise ExportError(f"{db}: only one of --leaderboard, --trials, --best may go to standard output ('-')")
    resolved = [Path(t).resolve() for t in files]
    if len(set(resolved)) < len(resolved):
        raise ExportError(f"{db}: two exports name the same file")
    ours = {db.resolve(), *(db.resolve().with_name(db.name + s) for s in ("-wal", "-shm"))}
    for t, r in zip(files, resolved, strict=True):
        if r in ours:
            raise ExportError(f"{t}: is the results file itself; name another file")


def export_files(db: str | Path, leaderboard: str | None = None, trials: str | None = None,
                 best: str | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
    """`gridwatch export`: read the results file once, then write each export asked for. Nothing is written
    when the results file cannot be read."""
    db = Path(db)
    outputs = {k: v for k, v in (("leaderboard", leaderboard), ("trials", trials), ("best", best)) if v}
    _check_targets(db, outputs)
    store = ResultStore(db, create=False)
    try:
        data = read_run(store)
    finally:
        store.close()
    texts = {kind: RENDERERS[kind](data, db.name) for kind in outputs}
    for kind, target in outputs.items():
        write_output(target, texts[kind], stdout)
        if target != STDOUT:
            print(f"gridwatch: {kind} -> {target}", file=stderr or sys.stderr)
