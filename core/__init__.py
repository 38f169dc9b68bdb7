"""gridwatch: run a grid of model trainings on every CPU core and GPU of one machine, and watch it work.

The public API for trainables is this module's `__all__`:

    from gridwatch import prefetch
    for x, y in prefetch(loader, depth=2):   # load batch N+1 while the step on batch N runs
        ...

Everything else (`gridwatch.grid`, `gridwatch.run`, `gridwatch.worker`, ...) is internal and may change.
"""

from gridwatch.worker.prefetch import Prefetcher, WaitStats, prefetch

__version__ = "0.1.0"
__all__ = ["Prefetcher", "WaitStats", "__version__", "prefetch"]
