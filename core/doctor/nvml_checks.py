"""Checks 1, 2, 4 and 5: what NVML, nvidia-smi, CUDA and gridwatch.prefetch say on this machine, each from
probes in child processes (gridwatch.doctor.probes)."""

from __future__ import annotations

import os
import shutil
from typing import Any

from gridwatch.doctor.compare import (
    MEM_TOL_FRACTION,
    NvmlPair,
    SmiComparison,
    compare_sample,
    index_mismatches,
    mib,
    normalise_uuid,
    same_uuid,
)
from gridwatch.doctor.context import Context, label, nvml_index
from gridwatch.doctor.proc import ProbeError, probe
from gridwatch.doctor.table import FAIL, INFO, Row, skipped, verdict
from gridwatch.run.devices import GpuInfo

SMI_SAMPLES = 10


def check_smi(ctx: Context) -> list[Row]:
    name, expected = "1. NVML = nvidia-smi", "util ±5 points, memory used ±5 %, same index -> UUID"
    if shutil.which("nvidia-smi") is None:
        return [skipped(name, "nvidia-smi is not on PATH", expected)]
    env = {"CUDA_VISIBLE_DEVICES": ",".join(g.uuid for g in ctx.gpus)}
    args = {"gpus": [[nvml_index(g), g.uuid] for g in ctx.gpus], "samples": SMI_SAMPLES,
            "load": not ctx.torch_problem}
    answer = probe("smi", args, timeout=240, env=env)
    if "skip" in answer:
        return [skipped(name, answer["skip"], expected)]
    samples = answer["samples"]
    result, v2 = compare_smi(samples), compare_smi(samples, with_v2=True)
    wrong_index = index_mismatches(samples[0]["smi"], {int(i): u for i, u in answer["nvml_indices"].items()})
    measured = (f"{result.compared} readings: util off by <= {result.util_worst:.0f} points, memory by <= "
                f"{result.mem_worst_fraction:.1%} ({result.mem_worst_mib:.0f} MiB)")
    if not answer["loaded"]:
        measured += f"; idle GPU ({ctx.torch_problem})"
    problems = wrong_index + result.problems
    if problems:
        measured += f"; {problems[0]}" + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else "")
    if result.mem_worst_fraction > MEM_TOL_FRACTION and v2.compared and v2.mem_worst_fraction <= MEM_TOL_FRACTION:
        measured += "; NVML's v2 memory query (without the driver's reserved memory) agrees with nvidia-smi"
    return [verdict(name, result.ok and not wrong_index, measured, expected)]


def compare_smi(samples: list[dict[str, Any]], with_v2: bool = False) -> SmiComparison:
    """Every sample of the smi probe compared; with_v2: memory used as NVML's v2 query gave it instead."""
    result = SmiComparison()
    for s in samples:
        pairs: dict[str, NvmlPair] = {}
        for u, (lo, hi) in s["nvml"].items():
            pairs[u] = ((float(lo[0]), float(lo[1])), (float(hi[0]), float(hi[1])))
            if with_v2:
                used = s["v2"].get(u)
                if used is None:
                    del pairs[u]
                    continue
                pairs[u] = ((pairs[u][0][0], float(used)), (pairs[u][1][0], float(used)))
        compare_sample(result, s["smi"], pairs)
    return result


def check_identity(ctx: Context) -> list[Row]:
    """NVML's UUID of each GPU is the device a process sees when CUDA_VISIBLE_DEVICES names it, by UUID
    and by NVML index (with CUDA_DEVICE_ORDER=PCI_BUS_ID, as gridwatch's workers get)."""
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        seen = f"torch sees {probe('torch', {}, timeout=180)['count']} GPU(s) with it"
    except ProbeError as exc:
        seen = str(exc)
    rows = [Row("2. CUDA_VISIBLE_DEVICES here", INFO, ("unset" if cvd is None else f"set to {cvd!r}") + f"; {seen}",
                "either: gridwatch sets it for each worker")]
    for g in ctx.gpus:
        try:
            rows.append(_identity_row(ctx, g))
        except ProbeError as exc:  # this GPU's row says so; the next GPU is still checked
            rows.append(Row(f"2. CUDA device = NVML UUID [{label(g)}]", FAIL, str(exc)))
    return rows


def _identity_row(ctx: Context, g: GpuInfo) -> Row:
    name, expected = f"2. CUDA device = NVML UUID [{label(g)}]", "1 device, NVML's UUID, by UUID and by index"
    if ctx.torch_problem:
        return skipped(name, ctx.torch_problem, expected)
    if not g.uuid:
        return skipped(name, "NVML gave no UUID for this GPU", expected)
    seen = []
    for how, value in (("UUID", g.uuid), (f"index {nvml_index(g)}", str(nvml_index(g)))):
        answer = probe("identity", {}, timeout=120, env={"CUDA_VISIBLE_DEVICES": value})
        uuids = [str(u) for u in answer["uuids"]]
        ok = len(uuids) == 1 and same_uuid(uuids[0], g.uuid)
        what = "ok" if ok else f"{len(uuids)} device(s) {', '.join(normalise_uuid(u)[:8] for u in uuids)}"
        seen.append((ok, f"by {how}: {what}"))
    measured = f"{g.uuid[:12]}...: " + "; ".join(text for _, text in seen)
    return verdict(name, all(ok for ok, _ in seen), measured, expected)


def check_context(ctx: Context) -> list[Row]:
    rows = []
    for g in ctx.gpus:
        name = f"4. VRAM of a CUDA context [{label(g)}]"
        expected = "info: each GPU worker's cost beyond its trials' measured peak"
        if ctx.torch_problem:
            rows.append(skipped(name, ctx.torch_problem, expected))
            continue
        try:
            answer = probe("context", {"uuid": g.uuid}, timeout=120, env={"CUDA_VISIBLE_DEVICES": g.uuid})
        except ProbeError as exc:
            rows.append(Row(name, FAIL, str(exc), expected))
            continue
        if "skip" in answer:
            rows.append(skipped(name, answer["skip"], expected))
            continue
        measured = (f"{mib(answer['context'])} (NVML: {mib(answer['used'])} for the process, torch reserved "
                    f"{mib(answer['reserved'])})")
        rows.append(Row(name, INFO, measured, expected))
    return rows


def check_prefetch(ctx: Context) -> list[Row]:
    g = ctx.first
    busy = f"5. prefetch raises GPU use [{label(g)}]"
    safe = f"5. prefetch batches intact [{label(g)}]"
    busy_expected, safe_expected = "depth 2 >= depth 0", "every batch as filled, none lost"
    if ctx.torch_problem:
        return [skipped(busy, ctx.torch_problem, busy_expected), skipped(safe, ctx.torch_problem, safe_expected)]
    a = probe("prefetch", {"uuid": g.uuid}, timeout=300, env={"CUDA_VISIBLE_DEVICES": g.uuid})
    measured = (f"GPU util {a['util_off']:.0f} % -> {a['util_on']:.0f} %, data wait {a['wait_off']:.0%} -> "
                f"{a['wait_on']:.0%} (steps of {a['step_s'] * 1000:.0f} ms)")
    bad, total = a["bad"], a["batches"]
    intact = f"{total - len(bad)}/{total} intact, {a['seen']} seen (no sync until the end)"
    if bad:
        i, lo, hi, _ = bad[0]
        intact += f"; batch {i:.0f} read min {lo:g} max {hi:g}"
    if a["util_on"] != a["util_on"] or a["util_off"] != a["util_off"]:
        first = skipped(busy, "NVML gives no utilisation for this GPU", busy_expected)
    else:
        first = verdict(busy, a["util_on"] >= a["util_off"], measured, busy_expected)
    return [first, verdict(safe, not bad and a["seen"] == total, intact, safe_expected)]
