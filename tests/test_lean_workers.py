"""Workers that stay lean: a trial's recorded memory is what it added, and a worker that grows is recycled.

The creeping trainable keeps MB megabytes per trial in a module-level list, the way a cache or a leak does:
a long-lived worker would grow by that much per trial for ever, and (measured as the worker's whole RSS) each
trial's recorded peak with it, so the footprint the scheduler learns for admission would grow too.
"""

import json
import re
import sqlite3
from pathlib import Path

import pytest

from gridwatch.grid.checks import SpecError
from gridwatch.grid.spec import RECYCLE_ABOVE_GB, parse_grid

from helpers import cli, grid, write

MB = 2**20
GB = 2**30

CREEP = """
import json, os
KEPT = []  # survives from trial to trial, in this worker

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

def fit(config):
    with open(os.path.join(config["dir"], "starts.jsonl"), "a") as f:
        f.write(json.dumps({"pid": os.getpid(), "rss": rss()}) + "\\n")
    KEPT.append(bytearray(b"\\x01") * (config["mb"] * 2**20))  # written, so resident
    return {"s": float(config["fold"])}
"""


def _creep_grid(folder: Path, mb: int, recycle: str, folds: int, axis: str = "") -> Path:
    write(folder / "creep.py", CREEP)
    axes = f"[model.grid]\n{axis}\n" if axis else ""
    return grid(folder, f'[[model]]\nname = "creep"\ntrainable = "creep.py:fit"\n{recycle}\n{axes}'
                        f'[model.fixed]\ndir = "{folder}"\nmb = {mb}\n', folds=folds, devices="cpu_slots = 1")


def _starts(folder: Path) -> dict[int, list[int]]:
    """Worker pid -> its RSS as each of its trials started, in order."""
    out: dict[int, list[int]] = {}
    for line in (folder / "starts.jsonl").read_text().splitlines():
        row = json.loads(line)
        out.setdefault(row["pid"], []).append(row["rss"])
    return out


def test_a_creeping_worker_is_recycled_and_each_trial_records_only_what_it_added(outside):
    per_trial, margin = 60, 0.2  # MB kept per trial; GiB a worker may grow before it is replaced
    g = _creep_grid(outside, per_trial, f"recycle_above_gb = {margin}", folds=2,
                    axis="x = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]")
    db = outside / "r.db"
    r = cli("run", str(g), "--db", str(db), "--quiet", cwd=outside)
    assert r.returncode == 0, r.stderr

    # the restart is said, once per recycle: growth passes 0.2 GiB after the 4th trial of 60 MB (240 MB)
    said = re.findall(r"gridwatch: cpu0 grew (\d+\.\d) GB over (\d+) trials: restarted", r.stderr)
    assert said == [("0.2", "4")] * 4, r.stderr

    # the worker's RSS stayed within its margin: measured by the trainable as each trial started
    starts = _starts(outside)
    assert sum(len(v) for v in starts.values()) == 20 and len(starts) == 5, "five workers, four trials each"
    for pid, rss in starts.items():
        assert max(rss) - rss[0] <= margin * GB, f"worker {pid} grew {(max(rss) - rss[0]) / MB:.0f} MB"
        assert rss[-1] - rss[0] >= 2.5 * per_trial * MB, "it did creep (the precondition)"

    # each trial's recorded peak is what it added, flat from first to last, not its worker's whole RSS
    peaks = [p for (p,) in sqlite3.connect(db).execute("SELECT peak_mem FROM trials ORDER BY started")]
    assert len(peaks) == 20
    # (within the kernel's counters: VmHWM may fall short of the exact RSS by a few hundred KB)
    assert all((per_trial - 2) * MB <= p <= (per_trial + 12) * MB for p in peaks), [round(p / MB) for p in peaks]
    assert max(peaks) - min(peaks) <= 12 * MB, [round(p / MB) for p in peaks]


def test_a_worker_is_recycled_after_its_trials(outside):
    g = _creep_grid(outside, 0, "recycle_after_trials = 3", folds=7)
    r = cli("run", str(g), "--db", str(outside / "r.db"), "--quiet", cwd=outside)
    assert r.returncode == 0, r.stderr
    said = re.findall(r"gridwatch: cpu0 ran 3 trials \(recycle_after_trials = 3\): restarted", r.stderr)
    assert len(said) == 2, r.stderr  # after the 3rd and 6th; the 7th is the last: nothing queued to restart for
    assert [len(v) for v in _starts(outside).values()] == [3, 3, 1]


def test_a_worker_that_stays_within_its_margin_is_kept(outside):
    g = _creep_grid(outside, 5, "", folds=6)  # 30 MB in all: far below the 2 GiB default
    r = cli("run", str(g), "--db", str(outside / "r.db"), "--quiet", cwd=outside)
    assert r.returncode == 0, r.stderr
    assert "restarted" not in r.stderr and [len(v) for v in _starts(outside).values()] == [6]


def _model(extra: str) -> str:
    return f'[run]\nfolds = 2\n[[model]]\nname = "m"\ntrainable = "gridwatch.demo:mlp"\n{extra}\n'


def test_recycling_keys_default_and_validate(tmp_path):
    m = parse_grid(_model(""), tmp_path / "g.toml").models[0]
    assert m.recycle_after_trials is None and m.recycle_above_gb == RECYCLE_ABOVE_GB == 2.0
    m = parse_grid(_model("recycle_after_trials = 50\nrecycle_above_gb = 0.5"), tmp_path / "g.toml").models[0]
    assert m.recycle_after_trials == 50 and m.recycle_above_gb == 0.5
    assert parse_grid(_model("recycle_above_gb = inf"), tmp_path / "g.toml").models[0].recycle_above_gb > 1e300
    for bad, key in [("recycle_after_trials = 0", "recycle_after_trials"),
                     ('recycle_after_trials = "3"', "recycle_after_trials"),
                     ("recycle_above_gb = 0", "recycle_above_gb"), ("recycle_above_gb = -1", "recycle_above_gb"),
                     ("recycle_above_gb = nan", "recycle_above_gb"), ("recycle_above_gb = true", "recycle_above_gb")]:
        with pytest.raises(SpecError, match=rf"model\[0\] \(m\)\.{key}"):
            parse_grid(_model(bad), tmp_path / "g.toml")
