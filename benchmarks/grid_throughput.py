"""What gridwatch costs over multiprocessing.Pool on one train(config) grid: whole processes, CPU and wall.

    python benchmarks/grid_throughput.py [--slots N] [--scale F] [--rounds R] [--no-fork] [--no-serial]

Each round starts fresh processes, one after the other (the order rotates from round to round), that run the
same 18-trial grid of bench_trainable.train, and checks that all of them agree exactly on every trial's loss:
  serial      `python grid_throughput.py --child serial`: a plain loop in one process
  pool-spawn  `python grid_throughput.py --child pool-spawn`: multiprocessing.Pool(N), spawn context (the
              yardstick)
  pool-fork   the same with the fork context (--no-fork skips it)
  pool-1t     pool-spawn with the thread limits gridwatch gives its workers (OMP/MKL/OPENBLAS_NUM_THREADS=1):
              without them each Pool worker's OpenMP runtime keeps a second thread that burns CPU
  gridwatch   the real CLI, `python -m gridwatch run grid.toml --db r.db --cpu-slots N --gpus none --quiet`,
              from a fresh temporary folder

How the CPU is counted, the same way for every way:
  * tree: user+sys CPU of the whole process tree, from getrusage(RUSAGE_CHILDREN) before and after. This
    benchmark makes itself a child subreaper (prctl PR_SET_CHILD_SUBREAPER), so a descendant whose parent did
    not wait for it (multiprocessing's resource tracker, a worker left behind) is re-parented to us and
    reaped here: its CPU is counted too ("orphans"), nothing of the tree escapes.
  * top process ("parent"): its own user+sys (all its threads), read from /proc/<pid>/stat while it is a
    zombie (waitid WNOWAIT: exited, not yet reaped). Its cutime+cstime there is what it reaped itself: for
    gridwatch it shows that the workers, reaped by Qt's QProcess, are inside the count.
  * grid: the trainable's own CPU summed over trials: its thread's CPU from after `import torch` to its
    return (bench_trainable's cpu_s). proc_cpu_s - cpu_s is what other threads of the worker burnt meanwhile
    (gridwatch: its peak-memory meter and parent watcher).
  * overhead = tree - grid. Workers beyond the trainable = tree - parent - grid, split by what the trainable
    module records in each process (bench_trainable's startup_cpu, pre_torch_cpu): start-up before torch
    (interpreter, multiprocessing's bootstrap or gridwatch's worker modules), importing torch (Pool's workers
    in their first trial, gridwatch's in their preload), and the rest: task/result passing, the peak-memory
    meter, idle threads, exit. For serial the one process is both "parent" and "worker".
  * per-thread split (sampled, approximate): /proc/<pid>/task/<tid>/stat of every process of the tree every
    0.5 s; the last half second before each exit is not seen. The totals above are exact.
  * other load on the machine: busy CPU of the whole machine (/proc/stat) minus the tree's and ours, per
    second of the run. A run that saw more than --max-foreign cores of it is run again (--retries).
The target lines compare gridwatch with the round's pool-spawn run and take the median over rounds (min..max
shows the noise): gridwatch's own overhead beyond Pool's in % of the grid's CPU (target <= 1 %): parent plus
workers, leaving out the trainable's CPU and the workers' `import torch`, the same work on both sides and
where nearly all the run-to-run noise lives (it swings by a second on a 2-core VM); it is also printed with
the import in (where gridwatch's OMP_NUM_THREADS=1 saves Pool's idle OpenMP thread) and for the whole tree,
beside the trainable's own difference (a watcher that slowed training would show there, one-sided); and
gridwatch's wall / Pool's wall (target <= 1.0).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_trainable import train  # noqa: E402  (imports nothing at the top: Pool's spawned children re-import us)

WAYS = ("serial", "pool-spawn", "pool-fork", "pool-1t", "gridwatch")
# What gridwatch puts in each CPU slot's environment (gridwatch.run.devices.Slot.env): one thread per library.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "-1"}
TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def grid_configs(scale: float) -> tuple[list[dict], str]:
    """18 trials: 3 widths x 2 epoch counts x 3 folds; --scale multiplies the epochs (trial length)."""
    widths, epochs = [16, 64, 256], [max(1, round(e * scale)) for e in (12, 40)]
    configs = [{"width": w, "epochs": e, "fold": f, "n_folds": 3, "seed": 0}
               for w in widths for e in epochs for f in range(3)]
    toml = f"""
[run]
name = "throughput"
folds = 3
[[model]]
name = "mlp"
trainable = "{HERE / 'bench_trainable.py'}:train"
device = "cpu"
metric = "loss"
[model.grid]
width = {widths}
epochs = {epochs}
"""
    return configs, toml


def key(c: dict) -> tuple:
    return (c["width"], c["epochs"], c["fold"])


# -- the measured processes (serial and Pool) ---------------------------------------------------------------

def child(mode: str, scale: float, slots: int, out: str) -> int:
    configs, _ = grid_configs(scale)
    if mode == "serial":
        results = [train(c) for c in configs]
    else:
        import multiprocessing as mp

        with mp.get_context("fork" if mode == "pool-fork" else "spawn").Pool(slots) as pool:
            results = pool.map(train, configs)
    Path(out).write_text(json.dumps([[list(key(c)), r] for c, r in zip(configs, results, strict=True)]))
    return 0


# -- measuring a whole process tree ------------------------------------------------------------------------

def become_subreaper() -> bool:
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def _stat(path: str) -> list[str] | None:
    try:
        with open(path, "rb") as f:
            text = f.read().decode()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # fields from 3 (state) on; the name may hold spaces


def _cpu(fields: list[str], first: int = 11) -> float:
    """utime+stime (fields 14, 15) or, with first=13, cutime+cstime (16, 17), in seconds."""
    return (int(fields[first]) + int(fields[first + 1])) / TICK


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/children", "rb") as f:
                    out += [int(x) for x in f.read().split()]
            except OSError:
                pass
    except OSError:
        pass
    return out


class ThreadSampler:
    """Last-seen CPU of every thread of the tree under `root`: {(pid, depth in the tree): {tid: seconds}}."""

    def __init__(self, root: int, every: float = 0.5) -> None:
        import threading

        self.root, self.every = root, every
        self.seen: dict[tuple[int, int], dict[int, float]] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(self.every):
            todo = [(self.root, 0)]
            while todo:
                pid, depth = todo.pop()
                try:
                    tids = os.listdir(f"/proc/{pid}/task")
                except OSError:
                    continue
                threads = self.seen.setdefault((pid, depth), {})
                for tid in tids:
                    f = _stat(f"/proc/{pid}/task/{tid}/stat")
                    if f is not None and f[0] != "Z":
                        threads[int(tid)] = _cpu(f)
                todo += [(c, depth + 1) for c in _children(pid)]

    def split(self) -> dict[str, float]:
        self.stop.set()
        self.thread.join()
        out = {"parent_main": 0.0, "parent_other": 0.0, "workers_main": 0.0, "workers_other": 0.0}
        for (pid, depth), threads in self.seen.items():
            who = "parent" if depth == 0 else "workers"
            for tid, cpu in threads.items():
                out[f"{who}_{'main' if tid == pid else 'other'}"] += cpu
        return out


def _machine_busy() -> tuple[float, float]:
    """(busy, steal) CPU-seconds of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return (v[0] + v[1] + v[2] + v[5] + v[6]) / TICK, v[7] / TICK


def measure(cmd: list[str], cwd: Path, log: Path, env: dict[str, str] | None = None) -> dict[str, float]:
    """Run `cmd` to its end; wall time and the CPU of its whole tree, split as the module docstring says."""
    import resource
    import subprocess

    def children_cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    def own_cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    before, own, (busy, steal) = children_cpu(), own_cpu(), _machine_busy()
    with open(log, "wb") as out:
        launched, t0 = time.time(), time.perf_counter()
        p = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env)
        sampler = ThreadSampler(p.pid)
        os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)
        wall, exited = time.perf_counter() - t0, time.time()
        fields = _stat(f"/proc/{p.pid}/stat")
        assert fields is not None, "the exited process's /proc entry is gone before it was reaped"
        split = sampler.split()
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
    tree_of_top = ru.ru_utime + ru.ru_stime
    deadline = time.monotonic() + 30.0  # orphans (re-parented to us) still running: wait for them, then reap
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{cmd[2:4]}: descendants still running 30 s after the top process exited")
            time.sleep(0.01)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} exited with {p.returncode}:\n{log.read_text()[-3000:]}")
    tree = children_cpu() - before
    busy2, steal2 = _machine_busy()
    parent = _cpu(fields)
    return {"wall": wall, "tree": tree, "parent": parent, "reaped_by_parent": _cpu(fields, 13),
            "orphans": tree - tree_of_top, "launched": launched, "exited": exited,
            "foreign": max(0.0, (busy2 - busy) - tree - (own_cpu() - own)) / wall, "steal": (steal2 - steal) / wall,
            **split}


def run_way(way: str, scale: float, slots: int, folder: Path) -> tuple[dict[str, float], dict, list[float]]:
    """(measurements, {trial key: result dict}, dispatch gaps)"""
    gaps: list[float] = []
    if way == "gridwatch":
        _, toml = grid_configs(scale)
        (folder / "grid.toml").write_text(toml)
        cmd = [sys.executable, "-m", "gridwatch", "run", "grid.toml", "--db", "r.db", "--cpu-slots", str(slots),
               "--gpus", "none", "--quiet"]
        m = measure(cmd, folder, folder / "log.txt")
        from gridwatch.results.store import ResultStore
        from gridwatch.results.summary import dispatch_gaps

        store = ResultStore(folder / "r.db", create=False)
        rows = store.trials()
        store.close()
        assert all(r.state == "finished" for r in rows), [(r.id, r.state, r.reason) for r in rows]
        results = {(r.params["width"], r.params["epochs"], r.fold): r.metrics for r in rows}
        gaps = dispatch_gaps(rows)
    else:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", way, "--scale", str(scale),
               "--slots", str(slots), "--out", str(folder / "out.json")]
        env = {**os.environ, **ONE_THREAD} if way == "pool-1t" else None
        m = measure(cmd, folder, folder / "log.txt", env)
        results = {tuple(k): r for k, r in json.loads((folder / "out.json").read_text())}
    m["grid"] = sum(r["cpu_s"] for r in results.values())
    m["in_trial_threads"] = sum(r["proc_cpu_s"] - r["cpu_s"] for r in results.values())
    m["overhead"] = m["tree"] - m["grid"]
    m["workers_beyond"] = m["tree"] - m["parent"] - m["grid"] if way != "serial" else m["overhead"]
    firsts = [r for r in results.values() if "startup_cpu" in r]
    m["startup"] = sum(r["startup_cpu"] for r in firsts)
    pre = [r["pre_torch_cpu"] for r in firsts]
    m["pre_torch"] = sum(pre) if pre and min(pre) >= 0 else float("nan")
    m["torch_import"] = m["startup"] - m["pre_torch"]
    m["machinery"] = m["workers_beyond"] - m["startup"]
    m["processes"] = len(firsts)
    starts: dict[int, list[tuple[float, float]]] = {}
    for r in results.values():
        starts.setdefault(int(r["pid"]), []).append((r["started"], r["ended"]))
    m["to_first_trial"] = min(r["started"] for r in results.values()) - m["launched"]
    m["to_all_busy"] = max(min(s for s, _ in v) for v in starts.values()) - m["launched"]
    m["after_last_trial"] = m["exited"] - max(r["ended"] for r in results.values())
    m["idle_between"] = sum(max(e for _, e in v) - min(s for s, _ in v) - sum(e - s for s, e in v)
                            for v in starts.values())
    return m, results, gaps


# -- report ------------------------------------------------------------------------------------------------

ROWS = [
    ("wall", "wall time, s"),
    ("tree", "CPU of the whole process tree, s"),
    ("grid", "  the trainable's own CPU (grid CPU), s"),
    ("overhead", "  everything else (tree - grid), s"),
    ("parent", "    top process (all threads), s"),
    ("parent_main", "      its main thread (sampled), s"),
    ("parent_other", "      its other threads (sampled), s"),
    ("workers_beyond", "    workers beyond the trainable, s"),
    ("pre_torch", "      start-up before torch (python, framework), s"),
    ("torch_import", "      importing torch, s"),
    ("machinery", "      after start-up (between trials, exit), s"),
    ("in_trial_threads", "      other threads during trials, s"),
    ("workers_other", "      threads besides main (sampled), s"),
    ("reaped_by_parent", "  CPU the top process reaped itself, s"),
    ("orphans", "  CPU of orphans reaped by the benchmark, s"),
    ("to_first_trial", "launch -> first train() starts, s"),
    ("to_all_busy", "launch -> every process has started one, s"),
    ("idle_between", "idle between trials, summed over processes, s"),
    ("after_last_trial", "last train() ends -> top process exits, s"),
    ("foreign", "other load on the machine meanwhile, cores"),
    ("steal", "CPU stolen by the hypervisor meanwhile, cores"),
]


def precompile(spec: object) -> str:
    """An editable checkout under PYTHONDONTWRITEBYTECODE would recompile gridwatch at every start (parent and
    each worker): a cost no installed copy has. Write the .pyc files once, before anything is timed."""
    import compileall

    folders = [Path(p) for p in getattr(spec, "submodule_search_locations", None) or []]
    try:
        import gridwatch.gui

        folders += [Path(p) for p in gridwatch.gui.__path__]
    except ImportError:
        pass
    ok = all(compileall.compile_dir(str(f), quiet=1) for f in folders)
    return ", ".join(str(f) for f in folders) if ok and folders else ""


def main() -> int:
    import argparse
    import statistics
    import tempfile

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slots", type=int, default=2)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply epochs (trial length)")
    ap.add_argument("--rounds", type=int, default=5, help="every way runs once per round; the order rotates")
    ap.add_argument("--no-fork", action="store_true", help="skip Pool with the fork context")
    ap.add_argument("--no-serial", action="store_true", help="skip the serial loop")
    ap.add_argument("--max-foreign", type=float, default=0.1, metavar="CORES",
                    help="rerun a way whose run saw more other load on the machine than this (default 0.1 cores)")
    ap.add_argument("--retries", type=int, default=2, help="at most this many reruns per way and round")
    ap.add_argument("--child", choices=WAYS[:4], help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.scale, args.slots, args.out)

    ways = [w for w in WAYS if not (w == "pool-fork" and args.no_fork) and not (w == "serial" and args.no_serial)]
    configs, _ = grid_configs(args.scale)
    if not become_subreaper():
        print("warning: not a child subreaper: orphaned descendants' CPU is not counted", file=sys.stderr)
    import importlib.util

    where = importlib.util.find_spec("gridwatch")
    print(f"gridwatch from {Path(where.origin).parent if where and where.origin else '?'}; python {sys.executable}")
    compiled = precompile(where)
    if compiled:
        print(f"compiled gridwatch's modules first ({compiled}), as pip does when it installs a wheel")
    print(f"{len(configs)} trials, {args.slots} processes/slots, {args.rounds} rounds of {', '.join(ways)} "
          f"(order rotates); {os.cpu_count()} CPUs, load avg {os.getloadavg()[0]:.2f} at start")
    runs: dict[str, list[dict[str, float]]] = {w: [] for w in ways}
    ref: dict | None = None
    same, gaps = True, []
    retried: dict[str, int] = {}
    for i in range(args.rounds):
        order = ways[i % len(ways):] + ways[:i % len(ways)]
        line = []
        for way in order:
            for attempt in range(args.retries + 1):  # the machine was busy with something else: try again
                with tempfile.TemporaryDirectory(prefix="gw-bench-") as d:
                    m, res, g = run_way(way, args.scale, args.slots, Path(d))
                if m["foreign"] <= args.max_foreign or attempt == args.retries:
                    break
                retried[way] = retried.get(way, 0) + 1
            losses = {k: r["loss"] for k, r in res.items()}
            ref = ref if ref is not None else losses
            same = same and losses == ref and len(losses) == len(configs)
            runs[way].append(m)
            gaps += g
            busy = f" (load {m['foreign']:.2f})" if m["foreign"] > args.max_foreign else ""
            line.append(f"{way} {m['wall']:.2f} s/{m['tree']:.2f} cpu-s{busy}")
        print(f"round {i + 1}: " + "   ".join(line), flush=True)

    med = statistics.median
    print(f"\nmedians over {args.rounds} rounds{'':14}" + "".join(f"{w:>12}" for w in ways))
    for k, label in ROWS:
        print(f"{label:<46}" + "".join(f"{med(m[k] for m in runs[w]):12.3f}" for w in ways))
    print(f"{'overhead per second of wall, cpu-s/s':<46}"
          + "".join(f"{med(m['overhead'] / m['wall'] for m in runs[w]):12.4f}" for w in ways))

    def spread(values: list[float], fmt: str) -> str:
        return f"{fmt.format(med(values))} ({fmt.format(min(values))}..{fmt.format(max(values))})"

    def versus(yard: str) -> tuple[list[float], list[float], list[float], list[float], list[tuple[dict, dict]]]:
        """Per round, in % of the grid's CPU (Pool's run): gridwatch's own overhead beyond Pool's (without torch's
        import), the same with it, the whole tree's extra CPU; and gridwatch's wall / Pool's."""
        rounds = list(zip(runs["gridwatch"], runs[yard], strict=True))
        own = [100 * ((gw["overhead"] - gw["torch_import"]) - (pool["overhead"] - pool["torch_import"]))
               / pool["grid"] for gw, pool in rounds]
        over = [100 * (gw["overhead"] - pool["overhead"]) / pool["grid"] for gw, pool in rounds]
        tree = [100 * (gw["tree"] - pool["tree"]) / pool["grid"] for gw, pool in rounds]
        return own, over, tree, [gw["wall"] / pool["wall"] for gw, pool in rounds], rounds

    met = True
    if "gridwatch" in runs and "pool-spawn" in runs:
        own, over, tree, wall, rounds = versus("pool-spawn")

        def delta(k: str) -> str:
            return spread([gw[k] - pool[k] for gw, pool in rounds], "{:+.3f}") + " cpu-s"

        print("\ngridwatch vs Pool(spawn), the yardstick; per-round differences, median (min..max over rounds):")
        print(f"  own overhead beyond Pool's:     {spread(own, '{:+.2f}')} % of the grid's CPU   target <= 1 %")
        print("    (parent + workers, leaving out the trainable's CPU and torch's import: the same work on both "
              "sides and the noisiest)")
        print(f"    top process:                    {delta('parent')}")
        print(f"    workers' start-up before torch: {delta('pre_torch')}")
        print(f"    workers after start-up:         {delta('machinery')}")
        print(f"  with torch's import too:        {spread(over, '{:+.2f}')} %   (importing torch: "
              f"{delta('torch_import')}; Pool's workers keep an OpenMP thread, gridwatch sets OMP_NUM_THREADS=1)")
        print(f"  whole tree:                     {spread(tree, '{:+.2f}')} %   (the trainable's own CPU: "
              f"{delta('grid')}: run-to-run noise unless one-sided)")
        print(f"  wall ratio gridwatch / Pool:    {spread(wall, '{:.3f}')}   target <= 1.0")
        met = med(own) <= 1.0 and med(wall) <= 1.0
        print(f"  targets: {'met' if met else 'NOT met'}")
    for yard, label in (("pool-fork", "Pool(fork)"), ("pool-1t", "Pool(spawn) + gridwatch's 1-thread env")):
        if "gridwatch" in runs and yard in runs:
            own, over, tree, wall, _ = versus(yard)
            print(f"vs {label}: own overhead {spread(own, '{:+.2f}')} %, with torch's import "
                  f"{spread(over, '{:+.2f}')} %, whole tree {spread(tree, '{:+.2f}')} %, wall ratio "
                  f"{spread(wall, '{:.3f}')}")
    if "serial" in runs and "gridwatch" in runs:
        speedup = med(m["wall"] for m in runs["serial"]) / med(m["wall"] for m in runs["gridwatch"])
        print(f"speed-up serial / gridwatch (wall): {speedup:.3f}")
    if gaps:
        print(f"dispatch gap on a warm slot: median {med(gaps) * 1000:.1f} ms, max {max(gaps) * 1000:.1f} ms over "
              f"{len(gaps)} gaps (target median <= 50 ms)")
    if retried:
        print(f"reruns for other load > {args.max_foreign} cores: {retried}; runs still above it are marked (load x)")
    print(f"same results (loss of every trial) all {len(ways)} ways: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
