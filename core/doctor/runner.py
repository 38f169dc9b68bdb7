"""`gridwatch doctor`: run every check, print one table, exit 1 if any check failed.

Each check drives child processes with time limits (probes, or the real `gridwatch run`), so one that
hangs or crashes becomes its own FAIL row and the others still run. This process loads neither torch nor
Qt; it asks NVML only which GPUs there are, through the engine's own detect_gpus().
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from gridwatch import __version__
from gridwatch.doctor import grid_checks, nvml_checks
from gridwatch.doctor.context import Context, label
from gridwatch.doctor.proc import ProbeError, probe
from gridwatch.doctor.table import FAIL, PASS, Row, exit_code, format_rows, save_json, skipped, summary_line
from gridwatch.grid.checks import gpus_value
from gridwatch.run.devices import DeviceError, GpuInfo, detect_gpus

Check = Callable[[Context], list[Row]]
CHECKS: list[tuple[str, Check]] = [
    ("NVML vs nvidia-smi, same instants", nvml_checks.check_smi),
    ("CUDA device <-> NVML UUID", nvml_checks.check_identity),
    ("workers on their slot's GPU", grid_checks.check_workers),
    ("VRAM of one CUDA context", nvml_checks.check_context),
    ("gridwatch.prefetch on the GPU", nvml_checks.check_prefetch),
    ("CPU + GPU slots together", grid_checks.check_mixed),
    ("a CUDA out-of-memory is retried", grid_checks.check_oom),
    ("packing trials on one GPU", grid_checks.check_packing),
    ("starvation verdicts", grid_checks.check_starvation),
]


def run_doctor(quick: bool = False, gpus: str | None = None, json_path: str | None = None,
               out: TextIO | None = None) -> int:
    out = out or sys.stdout
    check_arguments(gpus, json_path)
    found, note = detect_gpus()
    meta: dict[str, Any] = {"gridwatch": __version__, "quick": quick, "note": note,
                            "gpus": [{"index": g.index, "name": g.name, "uuid": g.uuid} for g in found]}
    if not found:
        print(f"gridwatch doctor: {note}: nothing to check on this machine (every check needs an NVIDIA GPU; "
              "run `gridwatch doctor` on the GPU machine)", file=out)
        if json_path:
            save_json(Path(json_path), [], meta)
        return 0
    chosen = select(found, gpus)
    # Every check names a GPU by its UUID (as the workers' CUDA_VISIBLE_DEVICES does).
    rows = [skipped(f"{label(g)}", "NVML gave no UUID for it, so no check can name it") for g in chosen if not g.uuid]
    chosen = [g for g in chosen if g.uuid]
    with tempfile.TemporaryDirectory(prefix="gridwatch-doctor-") as tmp:
        ctx = Context(chosen, Path(tmp), quick)
        if note:
            ctx.log(note)  # GPUs NVML lists but this process may not use, and why
        for g in chosen:
            ctx.log(f"{label(g)}: {g.name}, {g.memory_total / 1024**3:.1f} GiB, {g.uuid}")
        if chosen:
            rows.append(torch_preflight(ctx))
        for i, (title, check) in enumerate(CHECKS if chosen else [], 1):
            rows += run_check(ctx, i, title, check)
    print(format_rows(rows), file=out)
    print(f"\n{summary_line(rows)}" + ("; quick run (--quick)" if quick else ""), file=out)
    if json_path:
        save_json(Path(json_path), rows, {**meta, "checked": [g.index for g in chosen]})
    return exit_code(rows)


def check_arguments(gpus: str | None, json_path: str | None) -> None:
    """Bad arguments are one line (exit 2) before anything runs, GPU or not."""
    value = gpus_value(gpus or "all")
    if value != "all" and (not isinstance(value, list) or not value):
        raise DeviceError(f"--gpus: expected 'all' or GPU indices like 0,1, not {gpus!r}")
    if json_path:
        path = Path(json_path)
        if path.is_dir():
            raise DeviceError(f"--json {json_path}: is a folder; name a file")
        if not path.parent.is_dir():
            raise DeviceError(f"--json {json_path}: folder {str(path.parent)!r} does not exist")


def select(found: list[GpuInfo], text: str | None) -> list[GpuInfo]:
    """--gpus as `gridwatch run` reads it ("all" or indices like 0,1); the doctor has nothing to do on none."""
    value = gpus_value(text or "all")
    if value == "all":
        return found
    if not isinstance(value, list) or not value:
        raise DeviceError(f"--gpus: expected 'all' or GPU indices like 0,1, not {text!r}")
    have = {g.index: g for g in found}
    missing = [i for i in value if i not in have]
    if missing:
        raise DeviceError(f"GPU {missing[0]} not found (this machine's GPUs: {', '.join(map(str, have))})")
    return [have[i] for i in dict.fromkeys(value)]


def torch_preflight(ctx: Context) -> Row:
    """Can the workers' torch use CUDA on these GPUs? If not, that fails, and every check that needs it
    says why it was skipped."""
    name, expected = "0. torch can use CUDA here", "a CUDA build of torch that sees these GPUs"
    try:
        t = probe("torch", {}, timeout=180, env={"CUDA_VISIBLE_DEVICES": ",".join(g.uuid for g in ctx.gpus)})
    except ProbeError as exc:
        ctx.torch_problem = f"torch does not load ({exc})"
    else:
        if not t["cuda"]:
            ctx.torch_problem = f"torch {t['torch']} is a CPU build (install a CUDA build)"
        elif not t["available"]:
            ctx.torch_problem = f"torch {t['torch']} (CUDA {t['cuda']}) cannot use CUDA here"
    if ctx.torch_problem:
        ctx.log(f"{ctx.torch_problem}: the checks that need it are skipped")
        return Row(name, FAIL, ctx.torch_problem, expected)
    return Row(name, PASS, f"torch {t['torch']}, CUDA {t['cuda']}", expected)


def run_check(ctx: Context, number: int, title: str, check: Check) -> list[Row]:
    ctx.log(f"[{number}/{len(CHECKS)}] {title} ...")
    started = time.monotonic()
    try:
        rows = check(ctx)
    except ProbeError as exc:
        rows = [Row(f"{number}. {title}", FAIL, str(exc))]
    except Exception as exc:  # noqa: BLE001 - a bug in one check must not hide the others' results
        rows = [Row(f"{number}. {title}", FAIL, f"the doctor itself failed: {type(exc).__name__}: {exc}")]
    results = ", ".join(r.result for r in rows)
    ctx.log(f"[{number}/{len(CHECKS)}] {results} ({time.monotonic() - started:.0f} s)")
    return rows
