"""The detector on synthetic traces sampled at 4 Hz: right verdict, and no false alarm."""

import math

from gridwatch.telemetry.starvation import Observation, StarvationDetector, TrialObs

HZ = 4


def trace(seconds, make):
    d = StarvationDetector()
    changes = []
    for i in range(int(seconds * HZ)):
        t = 1000.0 + i / HZ
        changes += d.observe(make(t, t - 1000.0))
    return d, changes


def test_input_bound_trial_is_named_with_its_evidence_and_fix():
    d, _ = trace(60, lambda t, s: Observation(t, {0: 30.0}, (TrialObs("mlp-a-f0", 100, 100, 0, 0.35, 1000.0),)))
    [v] = d.active()
    assert v.kind == "input_bound" and v.subject == "mlp-a-f0" and v.severity == "high"
    assert "35%" in v.evidence and "GPU 0 at 30 %" in v.evidence
    assert "prefetch" in v.fix and "num_workers" in v.fix


def test_moderately_input_bound():
    d, _ = trace(20, lambda t, s: Observation(t, {}, (TrialObs("x", 100, 100, None, 0.08, 1000.0),)))
    assert [v.severity for v in d.active()] == ["moderate"]


def test_compute_bound_trace_gives_no_alarm_over_60_s():
    def compute_bound(t, s):
        util = 92.0 + 5 * math.sin(s)  # busy GPU, CPU busy feeding it, almost no data wait
        return Observation(t, {0: util}, (TrialObs("lstm-b-f1", 100, 100, 0, 0.01 + 0.01 * math.sin(s), 1000.0),
                                          TrialObs("cmd-c-f0", 98, 100, 0)), idle_gpu_slots={0: 0})

    d, changes = trace(60, compute_bound)
    assert changes == [] and d.verdicts == []


def test_gpu_starved_by_cpu_seen_from_outside_needs_10_s():
    def starved(t, s):
        return Observation(t, {0: 18.0}, (TrialObs("cmd-a-f0", 97.0, 100.0, 0),))

    d, _ = trace(9.5, starved)
    assert d.verdicts == [], "not before the condition held for 10 s"
    d, _ = trace(15, starved)
    [v] = d.active()
    assert v.kind == "cpu_starved_gpu" and "GPU 0: it was busy 18 % of the time" in v.evidence
    assert "its processes used 97% of 1 core," in v.evidence


def test_a_short_dip_is_not_a_verdict():
    def dip(t, s):
        util = 15.0 if 20 <= s < 26 else 90.0
        return Observation(t, {0: util}, (TrialObs("cmd-a-f0", 99.0, 100.0, 0),))

    d, _ = trace(60, dip)
    assert d.verdicts == []


def test_idle_gpu_while_cpu_trials_queue():
    def idle(t, s):
        return Observation(t, {0: 0.0}, (), idle_gpu_slots={0: 1}, queued_cpu_only=5,
                           queued_cpu_models=("lstm",))

    d, _ = trace(30, idle)
    [v] = d.active()
    assert v.kind == "gpu_unused" and v.subject == "gpu0" and "5 CPU-only trials wait" in v.evidence
    assert 'device = "any"' in v.fix and '"lstm"' in v.fix


def test_verdict_closes_when_the_trial_recovers_and_stays_in_history():
    def recovering(t, s):
        return Observation(t, {}, (TrialObs("x", 100, 100, None, 0.4 if s < 20 else 0.01, 1000.0),))

    d, changes = trace(40, recovering)
    assert d.active() == [] and len(d.verdicts) == 1 and not d.verdicts[0].active
    assert d.verdicts[0].ended - d.verdicts[0].started > 10


# -- finding 10: what the CPU-starved rule compares --------------------------------------------------------


def test_a_saturated_python_loop_is_seen_whatever_threads_the_slot_allows():
    """With threads_per_cpu_slot = 4 a single-threaded loop reads 1/4 of the budget and was never flagged."""
    def loop(t, s):
        return Observation(t, {0: 12.0}, (TrialObs("cmd-a-f0", 100.0, 400.0, 0, busiest_thread=99.0),))

    d, _ = trace(20, loop)
    [v] = d.active()
    assert v.kind == "cpu_starved_gpu" and "busiest thread ran at 99 % of a core" in v.evidence


def test_dataloader_workers_with_cores_to_spare_are_not_saturation():
    """Four loader processes at 60 % each pushed CPU / (threads x 100) to 2.5: a false alarm."""
    def loaders(t, s):
        return Observation(t, {0: 20.0}, (TrialObs("cmd-a-f0", 250.0, 500.0, 0, busiest_thread=60.0),))

    d, _ = trace(30, loaders)
    assert d.verdicts == []


def test_on_a_shared_gpu_each_trial_is_judged_by_its_own_share():
    """Two slots on GPU 0: the device's 73 % is mostly the other trial's; this one's kernels ran 3 %."""
    def shared(t, s):
        return Observation(t, {0: 73.0}, (
            TrialObs("busy", 100.0, 100.0, 0, gpu_own=70.0, busiest_thread=99.0, alone=False),  # spin-wait
            TrialObs("starved", 100.0, 100.0, 0, gpu_own=3.0, busiest_thread=99.0, alone=False)))

    d, _ = trace(20, shared)
    assert [(v.subject, v.kind) for v in d.active()] == [("starved", "cpu_starved_gpu")]
    assert "its kernels ran 3 % of the time" in d.active()[0].evidence


def test_on_a_shared_gpu_without_per_process_figures_there_is_no_verdict():
    def shared(t, s):
        return Observation(t, {0: 20.0}, (TrialObs("a", 100.0, 100.0, 0, busiest_thread=99.0, alone=False),
                                          TrialObs("b", 5.0, 100.0, 0, busiest_thread=5.0, alone=False)))

    d, _ = trace(20, shared)
    assert d.verdicts == [], "the device's figure is not this trial's: no evidence either way"


def test_the_observation_gives_each_trial_its_own_gpu_share_and_its_cores():
    from gridwatch.run.devices import Slot
    from gridwatch.telemetry.diagnosis import SlotState, observation
    from gridwatch.telemetry.nvml import GpuSample
    from gridwatch.telemetry.sampler import ProcSample, Snapshot

    slots = [Slot("gpu0", "gpu", 4, gpu_index=0), Slot("gpu0.1", "gpu", 4, gpu_index=0), Slot("gpu1", "gpu", 1, 1)]
    snap = Snapshot(1.0, 50.0, (50.0,), 1.0, 1.0, 2.0, (GpuSample(0, util=73.0), GpuSample(1, util=10.0)), {
        "gpu0": ProcSample(cpu=100.0, gpu_sm=70.0, busiest_thread=99.0, processes=1.0),
        "gpu0.1": ProcSample(cpu=300.0, gpu_sm=3.0, busiest_thread=80.0, processes=6.0),
        "gpu1": ProcSample(cpu=100.0, busiest_thread=99.0, processes=1.0)})
    obs = observation(snap, [SlotState(slots[0], "a"), SlotState(slots[1], "b"), SlotState(slots[2], "c")], ())
    a, b, c = obs.trials
    assert (a.gpu_own, a.alone, a.cpu_budget_pct) == (70.0, False, 400.0)
    assert (b.gpu_own, b.cpu_budget_pct) == (3.0, 600.0), "six processes: six cores' worth, not four threads"
    assert c.alone and c.own_gpu_util(obs.gpu_util[1]) == 10.0, "alone on GPU 1: the device's figure is its own"
