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
    assert v.kind == "cpu_starved_gpu" and "GPU 0 averaged 18 %" in v.evidence and "97%" in v.evidence


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
