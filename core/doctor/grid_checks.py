"""Checks 3 and 6-9: small grids through the real `gridwatch run` (child processes, real slot workers), read
back from the results file and from the notes the doctor's trainables leave (gridwatch.doctor.trainables)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gridwatch.doctor.compare import GIB, gib, peak_concurrency, ratio, same_uuid, slot_gpu
from gridwatch.doctor.context import Context, label
from gridwatch.doctor.grid_run import GridRun, model_toml, run_grid, verdicts
from gridwatch.doctor.proc import Sampler, probe
from gridwatch.doctor.table import FAIL, PASS, WARN, Row, skipped, verdict
from gridwatch.run.devices import GpuInfo
from gridwatch.run.scheduler import MARGIN

TRAINABLES = "gridwatch.doctor.trainables"
RESERVE_GB = 0.5  # the grids' vram_reserve_gb (gridwatch's default)
OOM_SHARE = 0.45  # of the free VRAM, per trial: two fit, three cannot
STARVED_WAIT_S = 60.0


def devices(cpu_slots: int | str, per_gpu: int) -> str:
    cpu = '"auto"' if cpu_slots == "auto" else str(cpu_slots)
    return f"cpu_slots = {cpu}\ngpu_slots_per_gpu = {per_gpu}\nvram_reserve_gb = {RESERVE_GB}\n"


def free_vram(g: GpuInfo) -> int:
    return int(probe("memory", {"uuids": [g.uuid]}, timeout=60)[g.uuid]["free"])


def on_gpu(g: GpuInfo) -> list[str]:
    return ["--cpu-slots", "0", "--gpus", str(g.index)]


# The doctor's grids' [[model]] tables (tests parse each one with the real grid parser).
def where_models(folder: Path, n_slots: int) -> str:
    return model_toml("where", f"{TRAINABLES}:where", "gpu", {"k": list(range(n_slots))},
                      {"dir": str(folder), "hold_s": 1.5})


def mixed_models() -> str:
    return model_toml("mlp", "gridwatch.demo:mlp", "any", {"hidden_layers": [1, 2], "lr": [0.001, 0.003]},
                      {"hidden": 64, "epochs": 15})


def hold_models(name: str, folder: Path, nbytes: int, n: int, delay_s: float = 0.0) -> str:
    return model_toml(name, f"{TRAINABLES}:hold_vram", "gpu", {"k": list(range(n))},
                      {"dir": str(folder), "nbytes": nbytes, "delay_s": delay_s, "hold_s": 3.0})


def starved_models() -> str:
    return model_toml("starved", "gridwatch.demo:input_bound", "gpu", {"prefetch": [False]},
                      {"heatmap_size": 64, "epochs": 200})


def busy_models(seconds: float) -> str:
    return model_toml("busy", f"{TRAINABLES}:compute_bound", "gpu", {"prefetch": [True, False]},
                      {"seconds": seconds})


def check_workers(ctx: Context) -> list[Row]:
    name, expected = "3. workers on their slot's GPU", "every trial's CUDA device (torch, NVML) = its slot's GPU"
    if ctx.torch_problem:
        return [skipped(name, ctx.torch_problem, expected)]
    per_gpu = 2
    n_slots = per_gpu * len(ctx.gpus)
    models = where_models(ctx.work / "workers", n_slots)
    r = run_grid(ctx.work, "workers", devices(0, per_gpu), models, ["--cpu-slots", "0", "--gpus", ctx.gpus_arg()],
                 timeout=300)
    problem = r.problem()
    if problem:
        return [Row(name, FAIL, problem, expected)]
    notes = r.notes("where")
    by_index = {g.index: g for g in ctx.gpus}
    wrong = [w for w in (misplaced(n, by_index) for n in notes) if w]
    slots = sorted({str(n["slot"]) for n in notes})
    measured = f"{len(notes)} trials on {len(slots)}/{n_slots} slots ({', '.join(slots)})"
    if notes and all(n["nvml_uuid"] is None for n in notes):
        measured += "; NVML cannot see the workers' PIDs (container?): torch's word only"
    if wrong:
        measured += f"; {wrong[0]}"
    return [verdict(name, bool(notes) and not wrong, measured, expected)]


def misplaced(note: dict[str, Any], by_index: dict[int, GpuInfo]) -> str:
    """What is wrong with where one trial ran ("" if nothing)."""
    slot = str(note["slot"])
    index = slot_gpu(slot)
    g = by_index.get(index) if index is not None else None
    if g is None:
        return f"{slot}: not a slot of a GPU under test"
    if note["count"] != 1:
        return f"{slot}: its worker sees {note['count']} GPUs (CUDA_VISIBLE_DEVICES={note['cvd']!r})"
    if not same_uuid(str(note["uuid"]), g.uuid):
        return f"{slot}: torch runs on {note['uuid']}, not {label(g)} ({g.uuid})"
    if note["nvml_uuid"] and not same_uuid(str(note["nvml_uuid"]), g.uuid):
        return f"{slot}: NVML lists its worker on {note['nvml_uuid']}, not {label(g)} ({g.uuid})"
    return ""


def ended(name: str, r: GridRun, ok: bool, measured: str, expected: str) -> Row:
    """A check's row once its grid ran: FAIL with why when the run itself went wrong, else the verdict."""
    problem = r.problem()
    if problem:
        return Row(name, FAIL, f"{problem}; {measured}", expected)
    return verdict(name, ok, measured, expected)


def check_mixed(ctx: Context) -> list[Row]:
    name, expected = "6. CPU + GPU slots together", "all trials finish; both <= the faster alone (+10 %)"
    if ctx.quick:
        return [skipped(name, "--quick", expected)]
    if ctx.torch_problem:
        return [skipped(name, ctx.torch_problem, expected)]
    probe("dataset", {}, timeout=300)  # generated once, outside the timed runs
    models = mixed_models()
    gpus = ctx.gpus_arg()
    runs = {"CPU only": ["--gpus", "none"], "GPU only": ["--cpu-slots", "0", "--gpus", gpus], "both": ["--gpus", gpus]}
    wall: dict[str, float] = {}
    n = 0
    for i, (what, args) in enumerate(runs.items()):
        r = run_grid(ctx.work, f"mixed-{i}", devices("auto", 1), models, args, timeout=400)
        problem = r.problem()
        if problem:
            return [Row(name, FAIL, f"{what}: {problem}", expected)]
        wall[what], n = r.done.wall_s, len(r.trials())
    cpu, gpu, both = wall["CPU only"], wall["GPU only"], wall["both"]
    measured = (f"{n} trials: CPU only {cpu:.0f} s, GPU only {gpu:.0f} s, both {both:.0f} s (speedup "
                f"{ratio(cpu, both)} over CPU, {ratio(gpu, both)} over GPU)")
    return [Row(name, PASS if both <= 1.1 * min(cpu, gpu) else WARN, measured, expected)]


def check_oom(ctx: Context) -> list[Row]:
    g = ctx.first
    name, expected = f"7. CUDA OOM retried [{label(g)}]", ">= 1 OOM retried; every trial finished"
    if ctx.torch_problem:
        return [skipped(name, ctx.torch_problem, expected)]
    nbytes = int(OOM_SHARE * free_vram(g))
    # Each trial holds only a CUDA context for 2 s, so the scheduler's first reading (after 1 s) misses
    # its real footprint and lets three start: the third cannot fit.
    models = hold_models("oom", ctx.work / "oom", nbytes, 2, delay_s=2.0)
    r = run_grid(ctx.work, "oom", devices(0, 3), models, on_gpu(g), timeout=400)
    trials = r.trials()
    oom = [t for t in trials if t["attempts"] >= 2 and "out of memory" in str(t["log_tail"] or "").lower()]
    finished = sum(t["state"] == "finished" for t in trials)
    measured = (f"{len(oom)} trial(s) ran out of memory and were retried; {finished}/{len(trials)} finished; "
                f"{held_at_once(r)} held {gib(nbytes)} at once at most")
    if r.problem():
        return [ended(name, r, False, measured, expected)]
    if not oom:
        return [Row(name, "skipped: no trial ran out of memory, so no retry to check", measured, expected)]
    return [verdict(name, True, measured, expected)]


def held_at_once(r: GridRun) -> int:
    return peak_concurrency([(float(n["t0"]), float(n["t1"])) for n in r.notes("held")])


def check_packing(ctx: Context) -> list[Row]:
    g = ctx.first
    settings = (3,) if ctx.quick else (2, 3, 4)
    if ctx.torch_problem:
        return [skipped(f"8. packing [{label(g)}]", ctx.torch_problem, "no OOM; free VRAM never < vram_reserve_gb")]
    # Sized so that max(settings) trials fit the budget by the scheduler's own margin, with the CUDA contexts
    # (which no trial's peak counts) left for the reserve to absorb.
    nbytes = int(0.95 * (free_vram(g) - RESERVE_GB * GIB) / (max(settings) * MARGIN))
    return [packing_row(ctx, g, per_gpu, nbytes) for per_gpu in settings]


def packing_row(ctx: Context, g: GpuInfo, per_gpu: int, nbytes: int) -> Row:
    name = f"8. packing, {per_gpu} slots per GPU [{label(g)}]"
    expected = f"no OOM; free VRAM never < vram_reserve_gb ({RESERVE_GB} GiB)"
    run_name = f"packing-{per_gpu}"
    models = hold_models("pack", ctx.work / run_name, nbytes, per_gpu)
    sampler = Sampler([g.uuid], max_s=420)
    try:
        r = run_grid(ctx.work, run_name, devices(0, per_gpu), models, on_gpu(g), timeout=400)
    finally:
        seen = sampler.stop()[g.uuid]
    oom = [t for t in r.trials() if t["attempts"] >= 2]
    min_free = float(seen["min_free"])
    measured = f"{held_at_once(r)} trials of {gib(nbytes)} at once at most; free VRAM >= {gib(min_free)}"
    if oom:
        measured += f"; {len(oom)} trial(s) ran again ({oom[0]['reason'] or 'out of memory'})"
    return ended(name, r, not oom and min_free >= RESERVE_GB * GIB, measured, expected)


def check_starvation(ctx: Context) -> list[Row]:
    g = ctx.first
    if ctx.torch_problem:
        return [skipped(f"9. starvation verdicts [{label(g)}]", ctx.torch_problem,
                        "input-bound flagged; compute-bound not")]
    probe("dataset", {}, timeout=300)
    return [input_bound_row(ctx, g), compute_bound_row(ctx, g)]


def input_bound_row(ctx: Context, g: GpuInfo) -> Row:
    name = f"9. input-bound trial flagged [{label(g)}]"
    expected = f"an input-bound verdict within {STARVED_WAIT_S:.0f} s"
    models = starved_models()

    def flagged(db: Path) -> bool:
        return any(v[0] == "input_bound" for v in verdicts(db))

    r = run_grid(ctx.work, "starved", devices(0, 1), models, on_gpu(g), timeout=STARVED_WAIT_S + 30, until=flagged)
    found = [v for v in verdicts(r.db) if v[0] == "input_bound"]
    if found:
        return verdict(name, True, f"{found[0][2]}: {found[0][3]}", expected)
    states = ", ".join(sorted({str(t["state"]) for t in r.trials()})) or r.done.why()
    return verdict(name, False, f"no verdict in {r.done.wall_s:.0f} s (trials: {states})", expected)


def compute_bound_row(ctx: Context, g: GpuInfo) -> Row:
    seconds = 10 if ctx.quick else 30  # 4 trials, 2 at a time on the GPU (as gpu_slots_per_gpu = 2 shares it)
    name = f"9. compute-bound: no false alarm [{label(g)}]"
    expected = f"no verdict in {2 * seconds} s"
    models = busy_models(seconds)
    sampler = Sampler([g.uuid], max_s=2 * seconds + 300)
    try:
        r = run_grid(ctx.work, "busy", devices(0, 2), models, on_gpu(g), timeout=2 * seconds + 240)
    finally:
        util = float(sampler.stop()[g.uuid]["util_mean"])
    found = verdicts(r.db)
    measured = f"{len(found)} verdict(s) over 4 trials of {seconds} s, 2 at a time; GPU {util:.0f} % busy on average"
    if found:
        measured += f"; {found[0][0]} on {found[0][1]}: {found[0][3]}"
    return ended(name, r, not found, measured, expected)
