"""Scheduler policy on simulated clocks: makespan, mixed CPU+GPU placement, memory admission, OOM."""

import random

from simulator import simulate

from gridwatch.grid.trials import Trial
from gridwatch.run.estimates import Estimates
from gridwatch.run.scheduler import SlotView, TrialScheduler

GB = 1024**3


def make_trials(n_configs, folds, model_of, pref="any"):
    return [Trial(f"{model_of(c)}-{c}-f{f}", model_of(c), f"{model_of(c)}-{c}", {"c": c}, f, pref, {})
            for c in range(n_configs) for f in range(folds)]


def cpu_slots(n):
    return [SlotView(f"cpu{i}", "cpu", "host") for i in range(n)]


def test_makespan_within_10_percent_of_the_lower_bound_on_random_workloads():
    rng = random.Random(7)
    for trial_run in range(20):
        n_models = rng.randint(2, 6)
        base = {f"m{i}": rng.uniform(1, 60) for i in range(n_models)}
        configs = rng.randint(15, 40)
        trials = make_trials(configs, rng.choice([3, 5]), lambda c, n_models=n_models: f"m{c % n_models}")
        noise = {t.id: rng.uniform(0.9, 1.1) for t in trials}
        dur = {t.id: base[t.model] * noise[t.id] for t in trials}
        n = rng.randint(2, 8)
        # learned from a previous run of the same grid (estimates persist in the results file)
        est = Estimates()
        for m, s in base.items():
            est.learn(m, "cpu", s, None)
        res = simulate(TrialScheduler(trials, est), cpu_slots(n), lambda t, k, dur=dur: dur[t.id])
        bound = max(sum(dur.values()) / n, max(dur.values()))
        assert res.makespan <= 1.10 * bound, (trial_run, res.makespan, bound)


def test_learning_from_scratch_stays_close_too():
    rng = random.Random(3)
    base = {"small": 2.0, "medium": 9.0, "large": 30.0}
    trials = make_trials(30, 5, lambda c: ["small", "medium", "large"][c % 3])
    dur = {t.id: base[t.model] * rng.uniform(0.9, 1.1) for t in trials}
    res = simulate(TrialScheduler(trials), cpu_slots(6), lambda t, k: dur[t.id])
    bound = max(sum(dur.values()) / 6, max(dur.values()))
    assert res.makespan <= 1.15 * bound


def test_mixed_cpu_and_gpu_beats_either_alone():
    # small models: a CPU core about as fast as the GPU (10 s vs 8 s)
    trials = make_trials(24, 5, lambda c: "mlp")
    speed = {"cpu": 10.0, "gpu": 8.0}
    slots_cpu = cpu_slots(5)
    slots_gpu = [SlotView("gpu0", "gpu", "gpu0")]

    def run(slots):
        est = Estimates()
        for k, s in speed.items():
            est.learn("mlp", k, s, None)
        return simulate(TrialScheduler(list(trials), est), slots, lambda t, k: speed[k])

    mixed, cpu_only, gpu_only = run(slots_cpu + slots_gpu), run(slots_cpu), run(slots_gpu)
    assert mixed.makespan < min(cpu_only.makespan, gpu_only.makespan)
    assert {"cpu", "gpu"} == set(mixed.placed.values())


def test_any_trial_waits_for_a_much_faster_gpu():
    trials = make_trials(1, 1, lambda c: "cnn")
    est = Estimates()
    est.learn("cnn", "cpu", 100.0, None)
    est.learn("cnn", "gpu", 5.0, None)
    s = TrialScheduler(trials, est)
    cpu, gpu = SlotView("cpu0", "cpu", "host"), SlotView("gpu0", "gpu", "gpu0", busy_until=10.0)
    assert s.next_for(cpu, [cpu, gpu], now=0.0) is None, "starting now on the CPU would finish at 100 s"
    assert "faster GPU" in s.waiting[trials[0].id]
    assert s.next_for(gpu, [cpu, gpu], now=10.0) is not None


def test_admitted_memory_never_exceeds_the_budget():
    rng = random.Random(1)
    peaks = {"lstm": 5 * GB, "ffn": 2 * GB}
    trials = make_trials(20, 3, lambda c: "lstm" if c % 2 else "ffn")
    est = Estimates()
    for m, p in peaks.items():
        est.learn(m, "cpu", None, p)
    budget = 16 * GB
    res = simulate(TrialScheduler(trials, est, {"host": budget}), cpu_slots(12),
                   lambda t, k: rng.uniform(5, 10), lambda t, k: peaks[t.model])
    assert res.ooms == 0 and res.max_admitted["host"] <= budget
    assert res.max_admitted["host"] >= 10 * GB, "the budget is used, not left idle"


def test_waiting_says_why():
    trials = make_trials(2, 1, lambda c: "big")
    est = Estimates()
    est.learn("big", "gpu", 10.0, 3 * GB)
    s = TrialScheduler(trials, est, {"gpu0": 4 * GB})
    gpu0, gpu1 = SlotView("gpu0", "gpu", "gpu0"), SlotView("gpu0.1", "gpu", "gpu0")
    assert s.next_for(gpu0, [gpu0, gpu1], 0.0) is not None
    assert s.next_for(gpu1, [gpu0, gpu1], 0.0) is None
    assert s.waiting[trials[1].id] == "waiting: needs ~3.6 GB VRAM, 0.4 GB of the budget left"


def test_repeated_out_of_memory_converges_to_a_concurrency_that_fits():
    # the first (probe) trial is small; the rest need more than it taught: the first wave overflows the GPU
    trials = make_trials(10, 3, lambda c: "lstm")
    gpu_slots = [SlotView(f"gpu0.{i}", "gpu", "gpu0") for i in range(6)]
    capacity = {"gpu0": 16 * GB}
    res = simulate(TrialScheduler(trials, Estimates(), {"gpu0": 16 * GB}), gpu_slots, lambda t, k: 10.0,
                   lambda t, k: 2 * GB if t.id == "lstm-0-f0" else 5 * GB, capacity)
    assert res.max_admitted["gpu0"] <= 16 * GB
    assert 1 <= res.ooms <= 6, "a few OOMs, not one per trial"
    assert len(res.placed) == 30, "every trial finally ran"


def test_the_first_trial_on_a_gpu_waits_for_memory_another_job_holds():
    """Finding 9: the free-memory check applied only beside a trial of ours; the first was admitted whatever
    was really free (here another user's job holds 14 of 16 GB)."""
    trials = make_trials(1, 1, lambda c: "big")
    est = Estimates()
    est.learn("big", "gpu", 10.0, 3 * GB)
    s = TrialScheduler(trials, est, {"gpu0": 16 * GB})
    gpu0 = SlotView("gpu0", "gpu", "gpu0")
    assert s.next_for(gpu0, [gpu0], 0.0, free={"gpu0": 2 * GB}) is None
    assert s.waiting[trials[0].id] == "waiting: needs ~3.6 GB VRAM, 2.0 GB free"
    assert s.next_for(gpu0, [gpu0], 1.0, free={"gpu0": 5 * GB}) is not None, "it starts once the memory is free"


def test_a_first_trial_of_unknown_footprint_needs_only_a_floor_free():
    trials = make_trials(2, 1, lambda c: "new")
    s = TrialScheduler(trials, Estimates(), {"gpu0": 80 * GB})  # a probe counts as 20 GB of the budget
    gpu0 = SlotView("gpu0", "gpu", "gpu0")
    assert s.next_for(gpu0, [gpu0], 0.0, free={"gpu0": 1 * GB}) is None, "1 GB free: not even a context fits"
    assert "1.0 GB free" in s.waiting[trials[0].id]
    assert s.next_for(gpu0, [gpu0], 0.0, free={"gpu0": 10 * GB}) is not None, "10 GB free is enough to learn"


def test_a_need_no_empty_gpu_could_free_does_not_wait_forever():
    """A need raised past what the GPU can ever have free (an OOM raises it 1.5x, the context is added) would
    block that model for good on an idle GPU, and the run would never end."""
    trials = make_trials(2, 1, lambda c: "huge")
    est = Estimates()
    est.learn("huge", "gpu", 10.0, 22.5 * GB)  # x 1.2 = 27 GB
    s = TrialScheduler(trials, est, {"gpu0": 23 * GB})
    gpu0, gpu1 = SlotView("gpu0", "gpu", "gpu0"), SlotView("gpu0.1", "gpu", "gpu0")
    assert s.next_for(gpu0, [gpu0, gpu1], 0.0, free={"gpu0": 23.5 * GB}) is not None, "it runs, alone"
    assert s.next_for(gpu1, [gpu0, gpu1], 0.0, free={"gpu0": 1 * GB}) is None
    assert s.waiting[trials[1].id].startswith("waiting: needs ~27.0 GB VRAM"), "but not beside itself"
