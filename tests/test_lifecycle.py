"""The trial lifecycle's policies on a simulated clock: no Qt, no processes."""

import math

from gridwatch.grid.spec import ModelSpec
from gridwatch.grid.trials import Trial, TrialState
from gridwatch.run.estimates import Estimates
from gridwatch.run.lifecycle import CUDA_CONTEXT_BYTES, MAX_OOM_RETRIES, Kept, TrialLifecycle
from gridwatch.run.scheduler import SlotView, TrialScheduler

GB = 1024**3
CPU = SlotView("cpu0", "cpu", "host")
GPU = SlotView("gpu0", "gpu", "gpu0")


def model(name="m", retries=1, timeout=None):
    return ModelSpec(name, "python", "x.py:fit", "any", {}, {}, "/tmp", retries=retries, timeout=timeout)


def trials(n, name="m"):
    return [Trial(f"{name}-{i}", name, f"{name}-{i}", {"i": i}, 0, "any", {}) for i in range(n)]


def lifecycle(n=2, budgets=None, kept=None, **kw):
    ts = trials(n)
    logs = []
    lc = TrialLifecycle({"m": model(**kw)}, ts, TrialScheduler([t for t in ts if t.id not in (kept or {})],
                        Estimates(), budgets or {}), kept, lambda tid, line: logs.append((tid, line)))
    return lc, logs


def start(lc, slot=CPU, now=0.0):
    t = lc.assign(slot, [slot], now, None)
    assert t is not None and lc.get(t.id).state == TrialState.RUNNING
    return t.id


def test_a_trial_runs_and_finishes_with_its_metrics_and_the_scheduler_learns():
    lc, _ = lifecycle(1)
    tid = start(lc, now=10.0)
    out = lc.finished(tid, 14.0, {"acc": "0.5"}, 123.0)
    assert out.commit and out.state == TrialState.FINISHED
    lt = lc.get(tid)
    assert lt.metrics == {"acc": 0.5} and lt.duration == 4.0 and lt.peak_mem == 123.0
    assert lc.learned()[0][:4] == ("m", "cpu", 4.0, 1)
    assert lc.queued() == 0


def test_out_of_memory_requeues_with_the_reason_until_the_retries_are_spent():
    lc, logs = lifecycle(1, budgets={"gpu0": 8 * GB})
    outcomes = []
    for attempt in range(MAX_OOM_RETRIES + 1):
        tid = start(lc, GPU, now=float(attempt))
        outcomes.append(lc.failed(tid, attempt + 0.5, "CUDA out of memory", oom=True, peak=20 * GB))
    assert [o.requeued for o in outcomes] == [True] * MAX_OOM_RETRIES + [False]
    assert outcomes[-1].commit and outcomes[-1].state == TrialState.FAILED
    assert lc.get("m-0").reason.startswith(f"out of memory after {MAX_OOM_RETRIES} retries")
    assert sum("out of memory" in line for _, line in logs) == MAX_OOM_RETRIES
    assert lc.queued() == 0 and lc.assign(GPU, [GPU], 9.0, None) is None


def test_a_crash_is_retried_as_the_model_allows_then_fails_with_the_last_output():
    lc, _ = lifecycle(1, retries=1)
    tid = start(lc)
    lc.log(tid, "epoch 1")
    first = lc.worker_died(tid, "worker killed by SIGSEGV", 1.0, stopping=False, memory_low=False)
    assert first.requeued and lc.get(tid).state == TrialState.QUEUED and "retry 1 of 1" in lc.get(tid).reason
    tid = start(lc, now=2.0)
    second = lc.worker_died(tid, "worker killed by SIGSEGV", 3.0, stopping=False, memory_low=False)
    assert second.commit and lc.get(tid).state == TrialState.FAILED
    assert lc.get(tid).reason == "worker killed by SIGSEGV; last output: epoch 1"


def test_the_oom_killer_counts_as_out_of_memory_only_when_ram_was_nearly_full():
    lc, _ = lifecycle(2, retries=0)
    a, b = start(lc), start(lc)
    low = lc.worker_died(a, "worker killed by SIGKILL", 1.0, stopping=False, memory_low=True)
    assert low.requeued and lc.get(a).reason.startswith("out of memory, retrying")
    plain = lc.worker_died(b, "worker killed by SIGKILL", 1.0, stopping=False, memory_low=False)
    assert plain.commit and lc.get(b).state == TrialState.FAILED


def test_a_silent_trial_times_out_once_and_counts_as_failed():
    lc, logs = lifecycle(2, timeout=5.0)
    a = start(lc, now=0.0)
    b = start(lc, now=0.0)
    lc.heard_from(b, 4.0)
    assert lc.hung(4.9) == []
    assert lc.hung(5.5) == [a], "only the trial silent for longer than the timeout"
    assert lc.hung(6.0) == [], "named once: its worker is being killed"
    out = lc.worker_died(a, "worker killed by SIGKILL", 6.1, stopping=False, memory_low=False)
    assert out.commit and out.state == TrialState.TIMEOUT and lc.get(a).reason == "no progress for 5 s: worker killed"
    p = lc.progress(2, 0.0, False, 7.0)
    assert p.failed == 1 and p.ended == 1 and p.running == {"cpu": 1}
    assert TrialState.TIMEOUT.failed and TrialState.TIMEOUT.ended and not TrialState.STOPPED.ended


def test_stopping_leaves_the_trial_stopped_and_nothing_committed():
    lc, _ = lifecycle(1)
    tid = start(lc)
    out = lc.worker_died(tid, "worker killed by SIGTERM", 1.0, stopping=True, memory_low=False)
    assert not out.commit and not out.requeued and lc.get(tid).state == TrialState.STOPPED


def test_the_memory_probe_uses_the_memory_the_slot_draws_on():
    lc, _ = lifecycle(2, budgets={"gpu0": 8 * GB, "host": 8 * GB})
    g = start(lc, GPU)
    assert not lc.memory_probe(g, rss=5 * GB, vram=None), "host RSS is never a VRAM figure"
    assert lc.scheduler.estimates.peak("m", "gpu") is None
    assert lc.memory_probe(g, rss=5 * GB, vram=1 * GB)
    # twice the first second's figure, provisionally, with the CUDA context the allocator does not report
    assert lc.scheduler.estimates.peak("m", "gpu") == 2 * (1 * GB + CUDA_CONTEXT_BYTES)
    c = start(lc, CPU)
    assert lc.memory_probe(c, rss=3 * GB, vram=None)
    assert lc.scheduler.estimates.peak("m", "cpu") == 6 * GB


def test_trials_kept_from_an_earlier_session_show_as_finished_and_are_not_run():
    kept = {"m-0": Kept("cpu1", 1.0, 3.0, {"acc": 0.9}, None)}
    lc, _ = lifecycle(2, kept=kept)
    assert lc.skipped == 1 and lc.get("m-0").state == TrialState.FINISHED and lc.get("m-0").metrics == {"acc": 0.9}
    assert start(lc) == "m-1" and lc.assign(CPU, [CPU], 0.0, None) is None


def test_data_wait_and_per_epoch_values_are_kept_for_the_curves():
    lc, _ = lifecycle(1)
    tid = start(lc)
    lc.data_wait(tid, 0.3, 5.0)
    lc.data_wait(tid, 0.25, 6.0, epoch_fraction=0.27, epoch=1)
    lc.epoch(tid, 1, {"acc": 0.5, "bad": "x"}, 6.0)
    lt = lc.get(tid)
    assert lt.data_wait == 0.25 and lt.reporting_since == 5.0 and lt.epoch == 1
    assert ("data_wait", 1, 0.27, 6.0) in lt.steps and ("acc", 1, 0.5, 6.0) in lt.steps
    assert any(k == "bad" and math.isnan(v) for k, _s, v, _t in lt.steps)


def test_a_gpu_trials_footprint_counts_its_cuda_context_and_what_nvml_saw():
    """Finding 9: torch reports only its allocator's reserve; the context is VRAM too."""
    lc, _ = lifecycle(3, budgets={"gpu0": 80 * GB})
    a = start(lc, GPU)
    lc.hear(a, {"type": "trial_finished", "t": 5.0, "metrics": {"x": 1.0}, "peak_rss": 3 * GB,
                "peak_vram": 2 * GB}, 5.0)
    assert lc.get(a).peak_mem == 2 * GB + CUDA_CONTEXT_BYTES, "VRAM, never the host RSS, plus the context"
    b = start(lc, GPU)
    lc.saw_vram(b, 6 * GB)  # NVML: the worker's processes held more than the allocator's peak
    lc.hear(b, {"type": "trial_finished", "t": 9.0, "metrics": {"x": 1.0}, "peak_vram": 2 * GB}, 9.0)
    assert lc.get(b).peak_mem == 6 * GB


def test_a_gpu_command_trials_vram_is_unknown_without_nvml_not_zero():
    """Finding 8: a command trial's VRAM is its script's; with no NVML reading it is unknown (None)."""
    lc, _ = lifecycle(2)
    a = start(lc, GPU)
    lc.saw_vram(a, math.nan)
    lc.hear(a, {"type": "trial_finished", "t": 5.0, "metrics": {"x": 1.0}, "peak_rss": 3 * GB}, 5.0)
    assert lc.get(a).peak_mem is None
    b = start(lc, GPU)
    lc.saw_vram(b, 3 * GB)
    lc.hear(b, {"type": "trial_finished", "t": 6.0, "metrics": {"x": 1.0}, "peak_rss": 3 * GB}, 6.0)
    assert lc.get(b).peak_mem == 3 * GB, "what NVML saw the command's processes hold"


def test_one_point_per_key_and_step_and_the_total_the_trial_says():
    lc, _ = lifecycle(1, retries=1)
    tid = start(lc)
    for step, value in [(1, 0.9), (1, 0.7), (2, 0.5)]:
        lc.hear(tid, {"type": "metric", "key": "loss", "step": step, "value": value, "epochs_total": 6}, 1.0)
    lc.hear(tid, {"type": "epoch", "step": 2, "metrics": {"loss": 0.4, "acc": 0.8}}, 2.0)
    lc.hear(tid, {"type": "metric", "key": "acc", "step": 3, "value": 0.9, "epochs_total": "6"}, 3.0)
    lt = lc.get(tid)
    assert [(k, s, v) for k, s, v, _t in lt.steps] == [("loss", 1, 0.7), ("loss", 2, 0.4), ("acc", 2, 0.8),
                                                       ("acc", 3, 0.9)], "a later value for an epoch replaces it"
    assert (lt.epoch, lt.epochs_total) == (3, 6), "a total that is no whole number is ignored"
    lc.worker_died(tid, "worker killed by SIGKILL", 4.0, stopping=False, memory_low=False)
    again = start(lc, now=5.0)
    assert again == tid and (lt.epoch, lt.epochs_total, lt.steps) == (0, 0, [])
    lc.hear(tid, {"type": "metric", "key": "loss", "step": 1, "value": 0.6}, 6.0)
    assert [(k, s, v) for k, s, v, _t in lt.steps] == [("loss", 1, 0.6)], "a retry starts its points afresh"
