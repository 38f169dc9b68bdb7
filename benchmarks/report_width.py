"""`gridwatch report` of a trial with very many metric names, in each format: how long, against json.

    python benchmarks/report_width.py [--metrics 100000] [--trials 2]

The trials go through a real results file (store -> render_trials), as the CLI reads them. Columns were once
collected with `name not in list`, quadratic in the number of names (100,000 did not finish in 60 s; json took
0.4 s). Goal: table and csv within a small factor of json (about 2x), growing linearly with --metrics.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gridwatch.grid import trials  # noqa: E402
from gridwatch.grid.spec import parse_grid  # noqa: E402
from gridwatch.results.report import render_trials  # noqa: E402
from gridwatch.results.store import ResultStore  # noqa: E402


def wide_file(folder: Path, n_metrics: int, n_trials: int) -> Path:
    (folder / "t.py").write_text("def fit(config):\n    return {}\n", encoding="utf-8")
    xs = list(range(max(1, n_trials // 2)))
    spec = parse_grid(f'[run]\nname="wide"\nfolds=2\n[[model]]\nname="m"\ntrainable="t.py:fit"\n[model.grid]\n'
                      f'x={xs}\n', folder / "g.toml")
    db = folder / "wide.gridwatch.db"
    store = ResultStore(db)
    ts = trials.expand(spec)
    store.begin(spec, ts, ["cpu0"])
    for i, t in enumerate(ts):
        metrics = {f"t{i}.m{k}": float(k) for k in range(n_metrics)}  # each trial its own names
        store.mark_running(t.id, "cpu0", "cpu", float(i))
        store.finish_trial(t.id, "finished", i + 1.0, metrics, None, [], "")
    store.end_session("done")
    store.close()
    return db


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--metrics", type=int, default=100_000, help="metric names per trial")
    ap.add_argument("--trials", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = wide_file(Path(tmp), args.metrics, args.trials)
        store = ResultStore(db, create=False)
        rows = store.trials()
        store.close()
        times = {}
        for fmt in ("json", "csv", "table"):
            started = time.perf_counter()
            text = render_trials(rows, fmt, db)
            times[fmt] = time.perf_counter() - started
            print(f"{fmt:5}  {times[fmt]:7.3f} s  {len(text) / 1e6:6.1f} MB  ({len(rows)} trials x "
                  f"{args.metrics:,} metric names each)")
    worst = max(times["csv"], times["table"]) / times["json"]
    print(f"slowest of table and csv: {worst:.1f}x json (goal: a small factor, not growing with --metrics)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
