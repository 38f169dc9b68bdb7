import time

import pytest

from gridwatch.worker import prefetch as pf


def slow_batches(n, load_s):
    for i in range(n):
        time.sleep(load_s)  # like I/O or a numpy kernel: releases the GIL
        yield i


def train(loader, step_s):
    seen = []
    for b in loader:
        time.sleep(step_s)
        seen.append(b)
    return seen


def test_prefetch_overlaps_loading_with_the_step():
    inline = pf.prefetch(slow_batches(20, 0.02), depth=0)
    t = time.perf_counter()
    assert train(inline, 0.02) == list(range(20))
    t_inline = time.perf_counter() - t
    ahead = pf.prefetch(slow_batches(20, 0.02), depth=2)
    t = time.perf_counter()
    assert train(ahead, 0.02) == list(range(20))
    t_ahead = time.perf_counter() - t
    assert inline.stats.fraction > 0.4, "inline: about half of each step waits for data"
    assert ahead.stats.fraction < 0.2
    assert t_ahead < 0.8 * t_inline


def test_errors_in_the_loader_reach_the_training_loop():
    def broken():
        yield 1
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        list(pf.prefetch(broken(), depth=2))


def test_leaving_early_stops_the_thread():
    loader = pf.prefetch(slow_batches(1000, 0.001), depth=2)
    for b in loader:
        if b == 3:
            break
    time.sleep(0.3)
    import threading

    assert not [t for t in threading.enumerate() if t.name == "gridwatch-prefetch" and t.is_alive()]


def test_sink_gets_rolling_and_epoch_figures():
    got = []
    pf.set_sink(got.append)
    try:
        train(pf.prefetch(slow_batches(5, 0.01), depth=0), 0.01)
    finally:
        pf.set_sink(None)
    assert "data_wait" in got[0]
    assert 0.3 < got[-1]["epoch_data_wait"] < 0.7 and got[-1]["steps"] == 5
