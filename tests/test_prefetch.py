import contextlib
import gc
import sys
import threading
import time
import types
import weakref

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


# --- a fake CUDA for the side-stream copy: torch is looked up in sys.modules, so a test can put one there ---


class FakeTorch:
    """The slice of torch the prefetcher uses, with a caching allocator like PyTorch's: a block freed on the
    stream it was allocated on is handed to that stream's next allocation at once, unless `record_stream` tied
    it to another stream, whose kernels queued before the free must run first. Ops on the loop's side are logged.
    """

    def __init__(self) -> None:
        self.log: list[tuple[str, FakeStream, object]] = []
        self.blocks: list[Block] = []
        self.lock = threading.RLock()
        self.local = threading.local()
        self.default_stream = FakeStream(self)
        self.Tensor = FakeTensor
        self.device = FakeDevice
        self.cuda = types.SimpleNamespace(
            Stream=lambda device=None: FakeStream(self),
            Event=FakeEvent,
            stream=self.stream,
            current_stream=self.current_stream,
            is_available=lambda: True,
        )

    def tensor(self, value):
        return FakeTensor(self, value)

    def current_stream(self, device=None):
        return getattr(self.local, "stream", self.default_stream)  # per thread, as in torch

    @contextlib.contextmanager
    def stream(self, stream):
        before = self.current_stream()
        self.local.stream = stream
        try:
            yield
        finally:
            self.local.stream = before

    def allocate(self):
        stream = self.current_stream()
        with self.lock:
            for block in self.blocks:
                if block.stream is stream and block.reusable():
                    block.live, block.streams = True, set()
                    return block
            block = Block(stream)
            self.blocks.append(block)
            return block


class Block:
    def __init__(self, stream) -> None:
        self.stream, self.live, self.data = stream, True, None
        self.streams: set[FakeStream] = set()  # the streams record_stream tied it to
        self.free_after: dict[FakeStream, int] = {}  # kernels on those streams that must run before it is reused

    def free(self) -> None:
        self.live = False
        self.free_after = {s: s.launched for s in self.streams}

    def reusable(self) -> bool:
        return not self.live and all(s.done >= n for s, n in self.free_after.items())


class FakeStream:
    def __init__(self, torch) -> None:
        self.torch, self.queued, self.launched, self.done = torch, [], 0, 0

    def wait_event(self, event) -> None:
        self.torch.log.append(("wait", self, event))

    def launch(self, kernel) -> None:
        """Queue a kernel: it runs at the next synchronize(), as a GPU runs behind the Python loop."""
        self.queued.append(kernel)
        self.launched += 1

    def synchronize(self) -> None:
        with self.torch.lock:
            for kernel in self.queued:
                kernel()
            self.queued, self.done = [], self.launched


class FakeEvent:
    def record(self, stream=None) -> None:
        pass


class FakeDevice:
    def __init__(self, spec) -> None:
        self.type = str(spec).split(":")[0]


class FakeTensor:
    def __init__(self, torch, value, block=None) -> None:
        self.torch, self.value, self.block = torch, value, block

    def pin_memory(self):
        return self

    def to(self, device, non_blocking=False):
        with self.torch.lock:
            block = self.torch.allocate()
            block.data = self.value  # the copy, on the current (side) stream
            return FakeTensor(self.torch, self.value, block)

    def record_stream(self, stream) -> None:
        self.block.streams.add(stream)
        self.torch.log.append(("record", stream, self))

    def __del__(self) -> None:
        if self.block is not None:
            with self.torch.lock:
                self.block.free()


@pytest.fixture
def fake_torch(monkeypatch):
    fake = FakeTorch()
    monkeypatch.setitem(sys.modules, "torch", fake)
    return fake


def test_a_batch_is_not_overwritten_while_the_step_still_reads_it(fake_torch):
    n = 10
    batches = [(fake_torch.tensor(i), [fake_torch.tensor(i)]) for i in range(n)]
    step = fake_torch.cuda.current_stream()
    reads = []
    for i, (x, (y,)) in enumerate(pf.prefetch(batches, depth=2, device="cuda")):
        # the step's kernels are queued on the loop's stream and read the batch later: no per-step sync
        step.launch(lambda i=i, xb=x.block, yb=y.block: reads.append((i, xb.data, yb.data)))
    step.synchronize()
    assert reads == [(i, i, i) for i in range(n)], "a later copy overwrote a batch its step had not read yet"


def test_every_tensor_of_a_batch_is_tied_to_the_loop_stream_after_the_wait(fake_torch):
    t = fake_torch.tensor
    batches = [{"x": t(i), "y": [t(i), (t(i), "label")], "id": i} for i in range(3)]
    step = fake_torch.cuda.current_stream()
    seen = 0
    for i, batch in enumerate(pf.prefetch(batches, depth=2, device="cuda")):
        leaves = [batch["x"], batch["y"][0], batch["y"][1][0]]
        assert [v.value for v in leaves] == [i, i, i] and batch["y"][1][1] == "label" and batch["id"] == i
        ops, seen = fake_torch.log[seen:], len(fake_torch.log)
        assert ops[0][:2] == ("wait", step), "the loop's stream waits for the copy first"
        recorded = [x for op, s, x in ops[1:] if op == "record" and s is step]
        assert sorted(map(id, recorded)) == sorted(map(id, leaves)), "then every tensor is recorded on it"


# --- leaving early: the loader thread ends and lets go of the batches it queued ---


class Batch:
    """A batch a weakref can watch."""

    def __init__(self, i: int) -> None:
        self.i = i


def _watched(i, refs, on_release=None):
    batch = Batch(i)
    refs.append(weakref.ref(batch))
    if on_release is not None:
        weakref.finalize(batch, on_release)
    return batch


def _leave_after_first(loader, ready):
    """Take one batch, wait until the loader thread has filled the queue behind it, leave the loop."""
    earlier = _prefetch_threads()
    for _ in loader:
        ours = _prefetch_threads() - earlier
        assert ready.wait(timeout=10), "the loader read the whole source"
        break
    return ours


def _assert_ended_and_released(threads, refs):
    for t in threads:
        t.join(timeout=10)
    assert not [t for t in threads if t.is_alive()], "the loader thread ended once the loop was left"
    gc.collect()
    assert [r() for r in refs] == [None] * len(refs), "no batch is kept alive by the queue"


def test_leaving_early_with_a_full_queue_ends_the_thread_and_releases_batches():
    refs, exhausted = [], threading.Event()

    def source():
        for i in range(3):
            yield _watched(i, refs)
        exhausted.set()  # batches 1 and 2 fill the queue (depth 2); the end marker waits for room

    threads = _leave_after_first(pf.prefetch(source(), depth=2), exhausted)
    _assert_ended_and_released(threads, refs)


def test_a_loader_error_after_leaving_early_does_not_block_the_thread():
    refs, at_end, left = [], threading.Event(), threading.Event()

    def source():
        for i in range(3):
            yield _watched(i, refs, on_release=left.set if i == 1 else None)
        at_end.set()  # batches 1 and 2 are queued
        left.wait(timeout=10)  # batch 1 left the queue: the loop has stopped
        raise OSError("disk gone")

    threads = _leave_after_first(pf.prefetch(source(), depth=2), at_end)
    _assert_ended_and_released(threads, refs)
