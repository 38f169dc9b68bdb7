"""A stand-in for torch in worker tests: just enough CUDA to watch what the worker does with it.

It models the caching allocator the way the worker depends on it: memory a tensor frees stays *reserved*
(cached) until empty_cache(); reset_peak_memory_stats() resets the peak to what is reserved now; any call
that needs a device (current_device, reset_peak_memory_stats, allocating) initialises CUDA, and
`cuda.inits` counts it. Put this folder first on PYTHONPATH of a real worker process.
"""

import sys


class OutOfMemoryError(RuntimeError):
    pass


class _Cuda:
    def __init__(self):
        self.initialized = False
        self.inits = 0
        self.live = 0  # bytes held by live tensors
        self.reserved = 0  # bytes the caching allocator holds (live + cached)
        self.peak = 0
        self.calls = []
        self.broken = False  # a sticky CUDA error: every later CUDA call raises

    def _init(self):
        if not self.initialized:
            self.initialized = True
            self.inits += 1

    def is_available(self):
        return True

    def is_initialized(self):
        return self.initialized

    def current_device(self):
        self._init()
        return 0

    def reset_peak_memory_stats(self, device=None):
        self.calls.append("reset_peak_memory_stats")
        self.current_device()
        self.peak = self.reserved

    def memory_reserved(self, device=None):
        return self.reserved

    def max_memory_reserved(self, device=None):
        return self.peak

    def empty_cache(self):
        self.calls.append("empty_cache")
        if self.broken:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        self.reserved = self.live

    def alloc(self, nbytes):
        self._init()
        self.live += nbytes
        self.reserved = max(self.reserved, self.live)
        self.peak = max(self.peak, self.reserved)

    def free(self, nbytes):
        self.live -= nbytes  # stays reserved: cached for the next allocation


cuda = _Cuda()


class Tensor:
    def __init__(self, nbytes):
        cuda.alloc(nbytes)
        self.nbytes = nbytes

    def __del__(self):
        cuda.free(self.nbytes)


def empty(nbytes, device="cuda"):
    return Tensor(nbytes)


_threads = [1]


def get_num_threads():
    return _threads[0]


def set_num_threads(n):
    _threads[0] = n


sys.modules.setdefault("torch.cuda", cuda)
