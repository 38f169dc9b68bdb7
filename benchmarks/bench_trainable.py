"""The benchmark's plain `train(config)`: a small torch MLP on fixed random data, single-threaded.

Deterministic for a config, so the serial loop, multiprocessing.Pool and gridwatch must agree exactly (on
`loss`; the other two figures are timings). It also returns its own CPU time, counted from after `import torch`
(so a process's first trial does not carry the import): `cpu_s` is the calling thread's (the training itself),
`proc_cpu_s` the whole process's over the same span (other threads of the worker running meanwhile add to it).
`started`/`ended` (time.time()) and `pid` let the benchmark see when each process began and stopped training.
"""

from __future__ import annotations

import os
import time


def train(config: dict) -> dict:
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
    return {"loss": round(loss.item(), 6), "cpu_s": time.thread_time() - t_thread,
            "proc_cpu_s": time.process_time() - t_proc, "started": started, "ended": time.time(), "pid": os.getpid()}
