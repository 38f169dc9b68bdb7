import threading
import time

import pytest

from gridwatch.worker import prefetch as pf


def slow_batches(n, load_s, loaded=None):
    """`n` batches, each taking `load_s` to load; `loaded[i]` is set once batch i is loaded."""
    for i in range(n):
        time.sleep(load_s)  # like I/O or a numpy kernel: releases the GIL
        if loaded is not None:
            loaded[i].set()
        yield i


def train(loader, step_s):
    seen = []
    for b in loader:
        time.sleep(step_s)
        seen.append(b)
    return seen


def test_inline_loading_waits_for_every_batch():
    loaded = [threading.Event() for _ in range(20)]
    inline = pf.prefetch(slow_batches(20, 0.02, loaded), depth=0)
    seen = []
    for b in inline:
        assert not any(e.is_set() for e in loaded[b + 1:]), "inline: nothing is loaded ahead of the step"
        seen.append(b)
    assert seen == list(range(20))
    assert inline.stats.steps == 20 and inline.stats.fraction > 0.5, "the loop spent its time waiting for data"


def test_prefetch_overlaps_loading_with_the_step():
    loaded = [threading.Event() for _ in range(20)]
    ahead = pf.prefetch(slow_batches(20, 0.02, loaded), depth=2)
    seen = []
    for b in ahead:
        # the step on batch b lasts until batch b+2 is loaded: only a loader running beside it gets there,
        # and it has queued batch b+1 by then
        if b + 2 < len(loaded):
            assert loaded[b + 2].wait(timeout=30), f"batch {b + 2} was loaded while the step on batch {b} ran"
        seen.append(b)
    assert seen == list(range(20))
    # every batch after the first was queued when the loop asked for it: the wait is the first load only
    assert ahead.stats.steps == 20 and ahead.stats.fraction < 0.2, ahead.stats


def test_errors_in_the_loader_reach_the_training_loop():
    def broken():
        yield 1
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        list(pf.prefetch(broken(), depth=2))


def _prefetch_threads():
    return {t for t in threading.enumerate() if t.name == "gridwatch-prefetch" and t.is_alive()}


def test_leaving_early_stops_the_thread():
    earlier = _prefetch_threads()
    loader = pf.prefetch(slow_batches(1000, 0.001), depth=2)
    for b in loader:
        if b == 3:
            ours = _prefetch_threads() - earlier
            assert len(ours) == 1, "one loader thread runs while the loop iterates"
            break
    for t in ours:
        t.join(timeout=10)
    assert not [t for t in ours if t.is_alive()], "the loader thread ended once the loop was left"


def test_sink_gets_rolling_and_epoch_figures():
    got = []
    pf.set_sink(got.append)
    try:
        loader = pf.prefetch(slow_batches(5, 0.01), depth=0)
        train(loader, 0.0)
    finally:
        pf.set_sink(None)
    assert got and "data_wait" in got[0]
    last = got[-1]
    assert last["steps"] == 5 and last["epoch_data_wait"] == loader.stats.fraction, "the epoch's figure"
    assert 0.5 < last["epoch_data_wait"] <= 1.0, "inline loading with a step that does nothing: mostly waiting"
