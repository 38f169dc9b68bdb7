"""The ETA on simulated runs (the real scheduler and lifecycle on a simulated clock, no processes): within
25 % of the true remaining time where the old formula (remaining work by per-model means / slots) was far off."""

import heapq
import math
import random

import pytest

from gridwatch.grid.spec import ModelSpec
from gridwatch.grid.trials import Trial, TrialState
from gridwatch.run.estimates import DurationModel, Estimates
from gridwatch.run.lifecycle import TrialLifecycle
from gridwatch.run.live import progress_of
from gridwatch.run.progress import TrialTime, estimate_eta, makespan
from gridwatch.run.scheduler import SlotView, TrialScheduler


def slots(n):
    return [SlotView(f"cpu{i}", "cpu", "host") for i in range(n)]


def grid(model, axes, folds=3, epochs=None):
    """Trials of one model: every combination of `axes` (name -> values) x folds."""
    combos = [{}]
    for name, values in axes.items():
        combos = [{**c, name: v} for c in combos for v in values]
    fixed = {} if epochs is None else {"epochs": epochs}
    return [Trial(f"{model}-{i}-f{f}", model, f"{model}-{i}", c, f, "any", {**fixed, **c, "fold": f})
            for i, c in enumerate(combos) for f in range(folds)]


def lifecycle(trials, estimates=None):
    models = {t.model: ModelSpec(t.model, "python", "x.py:fit", "any", {}, {}, "/tmp") for t in trials}
    return TrialLifecycle(models, trials, TrialScheduler(trials, estimates or Estimates()))


def old_eta(lc, now, n_slots):
    """The formula before: remaining work by the scheduler's estimates / slots, else mean x trials left."""
    running = [(lt.trial, "cpu", lt.started) for lt in lc.live.values() if lt.state == TrialState.RUNNING]
    work = lc.scheduler.predicted_work(now, {"cpu"}, running)
    if work is not None:
        return work / n_slots
    done = [lt.duration for lt in lc.live.values() if lt.state == TrialState.FINISHED]
    if not done:
        return None
    mean = sum(done) / len(done)
    queued = sum(lt.state == TrialState.QUEUED for lt in lc.live.values())
    return (queued * mean + sum(max(mean - (now - s), 0.0) for _t, _k, s in running)) / n_slots


def simulate(trials, seconds, n_slots, estimates=None):
    """Run to the end; at each trial's end read the ETA as the session does (before the freed slot takes its
    next trial). Returns [(trials ended, ETA, old formula's ETA, true remaining)]."""
    lc = lifecycle(trials, estimates)
    est = lc.scheduler.estimates
    views = slots(n_slots)
    start = now = 1000.0  # a clock that does not start at 0 (a trial started at 0 reads as "not started")
    ends, readings = [], []
    idle = list(views)
    while True:
        for s in list(idle):
            t = lc.assign(s, views, now, None)
            if t is not None:
                idle.remove(s)
                heapq.heappush(ends, (now + seconds(t), t.id, s.id))
        if not ends:
            break
        now, tid, sid = heapq.heappop(ends)
        lc.finished(tid, now, {}, None)
        idle.append(next(s for s in views if s.id == sid))
        p = progress_of(lc.live, n_slots, start, False, None, 0, now, lc.pending(), est.seconds, ["cpu"] * n_slots)
        readings.append((p.ended, p.eta_s, old_eta(lc, now, n_slots), now))
    assert all(lt.state == TrialState.FINISHED for lt in lc.live.values())
    return [(n, eta, old, now - at) for n, eta, old, at in readings]


def at_milestones(readings, total):
    """The readings when 20/40/60/80 % of the trials were done."""
    return {m: next(r for r in readings if r[0] >= math.ceil(total * m / 100)) for m in (20, 40, 60, 80)}


def err(eta, true):
    return abs(eta - true) / true


# -- simulated runs where the old formula was far off ----------------------------------------------------


def demo_like():
    """The demo grid's shape: an MLP whose batch size sets its cost 4x over, an LSTM whose width does, and an
    input-bound model 2x slower without prefetch, each with a little noise."""
    rng = random.Random(5)
    trials = (grid("heatmaps", {"prefetch": [False, True]}, epochs=8)
              + grid("lstm", {"hidden": [32, 64], "lr": [0.003, 0.01]}, epochs=20)
              + grid("mlp", {"hidden_layers": [1, 2, 3], "lr": [0.001, 0.003], "batch_size": [128, 32]}, epochs=15))
    base = {t.id: rng.uniform(0.9, 1.1) for t in trials}

    def seconds(t):
        p = t.params
        if t.model == "heatmaps":
            return base[t.id] * (12.0 if not p["prefetch"] else 5.5)
        if t.model == "lstm":
            return base[t.id] * 3.0 * (p["hidden"] / 32) ** 0.6
        return base[t.id] * 0.4 * (128 / p["batch_size"]) ** 0.95 * (1 + 0.1 * p["hidden_layers"])

    return trials, seconds


def test_demo_like_grid_within_25_percent_from_20_percent_done_where_the_old_formula_was_not():
    trials, seconds = demo_like()
    marks = at_milestones(simulate(trials, seconds, 2), len(trials))
    old_errors = {m: err(old, true) for m, (_n, _eta, old, true) in marks.items()}
    assert max(old_errors.values()) > 0.4, f"the old formula was far off somewhere: {old_errors}"
    for m, (_n, eta, _old, true) in marks.items():
        assert eta is not None and err(eta, true) <= 0.25, (m, eta, true)


def test_more_slots_than_trials_left_the_longest_decides():
    trials = grid("m", {"c": list(range(11))}, folds=1)
    readings = simulate(trials, lambda t: 60.0, 8)
    n, eta, old, true = next(r for r in readings if r[0] == 8)  # 3 trials of 60 s left for 8 slots
    assert true == 60.0 and err(old, true) > 0.5, old
    assert eta == pytest.approx(60.0)


def test_one_slot_busy_with_a_long_trial():
    est = Estimates()  # known from an earlier run of the grid
    est.learn("long", "cpu", 200.0, None)
    est.learn("short", "cpu", 4.0, None)
    trials = grid("long", {"c": [0]}, folds=1) + grid("short", {"c": list(range(30))}, folds=1)
    readings = simulate(trials, lambda t: 200.0 if t.model == "long" else 4.0, 2, est)
    n, eta, old, true = next(r for r in readings if r[0] >= 20)
    assert err(old, true) > 0.25, (old, true)
    assert err(eta, true) <= 0.05, (eta, true)


def test_a_model_whose_batch_size_sets_its_cost():
    trials = grid("mlp", {"batch_size": [256, 128, 64, 32], "lr": [0.1, 0.01]})
    readings = simulate(trials, lambda t: 128 / t.params["batch_size"], 2)
    marks = at_milestones(readings, len(trials))
    assert any(err(old, true) > 0.25 for _n, _e, old, true in marks.values())
    assert all(err(eta, true) <= 0.25 for _n, eta, _o, true in marks.values()), marks


# -- the pieces ----------------------------------------------------------------------------------------------


def lanes(n, kind="cpu", busy=()):
    return [(kind, b) for b in busy] + [(kind, 0.0)] * (n - len(busy))


def test_makespan_counts_the_tail_and_the_running_trials():
    assert makespan(lanes(2), [{"cpu": 10.0}] * 4) == 20.0
    assert makespan(lanes(8), [{"cpu": 10.0}] * 3) == 10.0, "fewer trials than slots: the longest decides"
    assert makespan(lanes(2, busy=[100.0]), [{"cpu": 5.0}] * 10) == 100.0, "a long one does not hold the rest"
    assert makespan(lanes(4, busy=[3.0, 1.0]), []) == 3.0
    assert makespan(lanes(10), [{"cpu": 1.0}] * 10, spread=100.0) == 11.0, "work before: shared evenly first"


def test_a_huge_queue_is_placed_in_bulk_then_one_by_one():
    queued = grid("m", {"c": list(range(5000))}, folds=1)
    ended = [TrialTime("m", "m-0", {"c": 0}, "cpu", seconds=2.0)]
    assert estimate_eta(ended, [], queued, ["cpu"] * 10) == pytest.approx(1000.0)


def test_makespan_puts_each_trial_where_it_ends_first():
    mixed = lanes(2) + lanes(1, "gpu")
    # 10 trials: 10 s on a CPU slot, 2 s on the GPU: the GPU takes them all (20 s) but the first two
    assert makespan(mixed, [{"cpu": 10.0, "gpu": 2.0}] * 10) == pytest.approx(16.0)
    assert makespan(mixed, [{"cpu": 10.0}] * 4) == 20.0, "CPU-only trials never use the GPU slot"


def test_nothing_finished_none_unless_stored_estimates_say():
    queued = grid("m", {"c": [0, 1]}, folds=1)
    assert estimate_eta([], [], queued, ["cpu"] * 2) is None
    assert estimate_eta([], [], queued, ["cpu"] * 2, lambda model, kind: 30.0) == 30.0


def test_a_model_none_of_whose_trials_has_ended_makes_the_eta_unknown_not_made_up():
    ended = [TrialTime("big", "big-0", {"c": 0}, "cpu", seconds=300.0)]
    queued = grid("big", {"c": [0]}, folds=1) + grid("small", {"c": list(range(50))}, folds=1)
    assert estimate_eta(ended, [], queued, ["cpu"] * 2) is None
    assert estimate_eta(ended, [], queued[:1], ["cpu"] * 2) == 300.0


def test_all_done_is_zero_and_paused_is_unknown():
    trials = grid("m", {"c": [0, 1]}, folds=1)
    lc = lifecycle(trials)
    assert progress_of(lc.live, 2, 0.0, False, None, now=1.0).eta_s is None, "nothing known yet"
    t = lc.assign(SlotView("cpu0", "cpu", "host"), slots(1), 0.0, None)
    lc.finished(t.id, 10.0, {}, None)
    assert progress_of(lc.live, 1, 0.0, False, None, now=10.0).eta_s == pytest.approx(10.0)
    p = progress_of(lc.live, 1, 0.0, True, None, now=10.0)
    assert p.paused and p.eta_s is None, "paused with trials queued: no end in sight"
    t = lc.assign(SlotView("cpu0", "cpu", "host"), slots(1), 10.0, None)
    paused = progress_of(lc.live, 1, 0.0, True, None, now=14.0)
    assert paused.eta_s == pytest.approx(6.0), "paused with none queued: the running one still ends"
    lc.finished(t.id, 20.0, {}, None)
    assert progress_of(lc.live, 1, 0.0, False, None, now=20.0).eta_s == 0.0


def test_stored_work_stands_in_before_anything_finishes_when_no_stored_estimate_is_given():
    lc = lifecycle(grid("m", {"c": [0, 1]}, folds=1))
    assert progress_of(lc.live, 2, 0.0, False, 50.0, now=0.0).eta_s == 25.0


def test_a_running_trial_is_projected_from_its_epochs():
    trials = grid("m", {"c": [0]}, folds=1, epochs=10)
    lc = lifecycle(trials)
    t = lc.assign(SlotView("cpu0", "cpu", "host"), slots(1), 0.0, None)
    lc.epoch(t.id, 5, {"acc": 0.5}, 50.0)  # half its epochs in 50 s
    assert progress_of(lc.live, 1, 0.0, False, None, now=52.0).eta_s == 48.0


def test_a_running_fold_longer_than_the_guess_raises_its_configs_other_folds():
    ended = [TrialTime("m", "m-0", {"x": "a"}, "cpu", seconds=10.0)]
    running = [TrialTime("m", "m-1", {"x": "b"}, "cpu", elapsed=30.0)]
    queued = [Trial("m-1-f1", "m", "m-1", {"x": "b"}, 1, "any", {})]
    assert estimate_eta(ended, running, queued, ["cpu"] * 2) == 30.0, "the queued fold takes at least 30 s"


def test_duration_model_rescales_by_batch_size_and_epochs_then_learns_from_data():
    m = DurationModel([("mlp", "a", {"batch_size": 128, "epochs": 10, "lr": 0.1}, "cpu", 1.0)])
    assert m.seconds("mlp", "a", {}) == 1.0, "its own config's figure"
    assert math.isclose(m.seconds("mlp", "b", {"batch_size": 32, "epochs": 10, "lr": 0.01}), 4.0)
    assert math.isclose(m.seconds("mlp", "c", {"batch_size": 128, "epochs": 20, "lr": 0.1}), 2.0)
    assert m.seconds("other", "d", {}) is None
    # on a big model the batch size barely matters: seen twice, the data outweighs the prior
    m = DurationModel([("big", "a", {"batch_size": 128}, "cpu", 10.0), ("big", "b", {"batch_size": 64}, "cpu", 10.0),
                       ("big", "c", {"batch_size": 256}, "cpu", 10.0)])
    assert 10.0 <= m.seconds("big", "d", {"batch_size": 32}) < 16.0


def test_duration_model_keeps_each_kind_of_slot_apart():
    m = DurationModel([("m", "a", {"c": 1}, "cpu", 20.0), ("m", "a", {"c": 1}, "gpu", 4.0),
                       ("m", "b", {"c": 2}, "cpu", 20.0), ("m", "b", {"c": 2}, "gpu", 4.0)])
    assert m.seconds("m", "a", {"c": 1}, "gpu") == 4.0 and m.seconds("m", "a", {"c": 1}, None) == 12.0
    assert m.seconds("m", "z", {"c": 3}, "gpu") < 8.0 < 14.0 < m.seconds("m", "z", {"c": 3}, "cpu")


def test_a_resumed_runs_kept_trials_inform_the_eta_from_the_start():
    from gridwatch.run.lifecycle import Kept

    trials = grid("m", {"c": [0, 1, 2, 3]}, folds=1)
    models = {"m": ModelSpec("m", "python", "x.py:fit", "any", {}, {}, "/tmp")}
    kept = {"m-0-f0": Kept("cpu0", 100.0, 130.0, {}, None)}  # finished in an earlier session: 30 s
    lc = TrialLifecycle(models, trials, TrialScheduler(trials[1:]), kept)
    p = progress_of(lc.live, 1, 500.0, False, None, now=500.0, order=lc.pending(), slot_kinds=["cpu"])
    assert p.finished == 1 and p.eta_s == pytest.approx(90.0)


def test_a_big_grid_is_fitted_on_a_sample_of_its_configs_and_values():
    rows = [("m", f"m-{i}", {"name": f"v{i}", "bs": 2 ** (i % 6)}, "cpu", 1.0) for i in range(5000)]
    fit = DurationModel(rows).fits["m"]
    assert len(fit.names) <= 24 and "bs" in fit.names
    assert math.isclose(DurationModel(rows).seconds("m", "new", {"name": "v1", "bs": 4}, "cpu"), 1.0, rel_tol=0.05)
