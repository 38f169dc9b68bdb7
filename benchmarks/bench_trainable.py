"""The benchmark's plain `train(config)`: a small torch MLP on fixed random data, single-threaded.

Deterministic for a config, so the serial loop, multiprocessing.Pool and gridwatch must agree exactly (on
`loss`; every other figure it returns is a timing, for benchmarks/grid_throughput.py):
  cpu_s        the calling thread's CPU from after `import torch` to the return: the training itself
  proc_cpu_s   the whole process's CPU over the same span (other threads of the worker add to it)
  started, ended, pid   time.time() stamps and the process, to see when each process began and stopped training
and on the first trial of each process only:
  startup_cpu  the process's CPU when this trial could start training (interpreter, imports, torch, ...)
  pre_torch_cpu  the process's CPU before torch was imported, or -1 where torch came first (unknown split)
"""

from __future__ import annotations

import os
import sys
import time

# The process's CPU when this module was loaded: by a spawned Pool worker unpickling its first task, by
# gridwatch's worker preloading the trainable (both before they import torch), by a serial loop at its start.
_LOADED = (os.getpid(), time.process_time(), "torch" in sys.modules)
_seen_pids: set[int] = set()


def train(config: dict) -> dict:
    entry, had_torch = time.process_time(), "torch" in sys.modules
    import torch

    started, t_thread, t_proc = time.time(), time.thread_time(), time.process_time()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(1000 * config["width"] + config["fold"])
    x = torch.randn(2048, 32, generator=g)
    y = (x[:, :4].sum(dim=1) > 0).long()
    torch.manual_seed(config["fold"])
    model = torch.nn.Sequential(torch.nn.Linear(32, config["width"]), torch.nn.ReLU(),
                                torch.nn.Linear(config["width"], 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    loss = torch.tensor(0.0)
    for _ in range(config["epochs"]):
        for i in range(0, len(x), 128):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[i:i + 128]), y[i:i + 128])
            loss.backward()
            opt.step()
    out = {"loss": round(loss.item(), 6), "cpu_s": time.thread_time() - t_thread,
           "proc_cpu_s": time.process_time() - t_proc, "started": started, "ended": time.time(), "pid": os.getpid()}
    if os.getpid() not in _seen_pids:
        _seen_pids.add(os.getpid())
        if _LOADED[0] == os.getpid() and not _LOADED[2]:
            pre = _LOADED[1]
        elif _LOADED[0] != os.getpid() and not had_torch:  # forked with this module loaded, torch not yet
            pre = entry
        else:
            pre = -1.0
        out.update(startup_cpu=t_proc, pre_torch_cpu=pre)
    return out
