"""`gridwatch doctor` where there is no GPU: the real command says so and exits 0; and the doctor's pure parts
(nvidia-smi parsing, tolerances, UUIDs, the table and its exit code, its grids) with plain data. What needs a
GPU is what the doctor itself is for: run it on one."""

from __future__ import annotations

import io
import json
import shutil
import signal
import sys
from pathlib import Path

import pytest

from gridwatch.doctor import grid_checks, nvml_checks, runner, trainables
from gridwatch.doctor.compare import (
    MIB,
    SmiComparison,
    compare_sample,
    index_mismatches,
    normalise_uuid,
    outside,
    parse_smi_csv,
    peak_concurrency,
    same_uuid,
    slot_gpu,
)
from gridwatch.doctor.context import Context, label, nvml_index
from gridwatch.doctor.grid_run import grid_text, run_grid, verdicts
from gridwatch.doctor.proc import ProbeError, probe, run
from gridwatch.doctor.runner import run_check, select, torch_preflight
from gridwatch.doctor.table import FAIL, INFO, PASS, WARN, Row, exit_code, format_rows, save_json, skipped
from gridwatch.grid.spec import parse_grid
from gridwatch.run.devices import DeviceError, GpuInfo, detect_gpus

from helpers import cli

UUID0 = "GPU-8f3c1a2b-1111-2222-3333-444455556666"
UUID1 = "GPU-0badc0de-aaaa-bbbb-cccc-ddddeeeeffff"
SMI = f"0, {UUID0}, 37, 1523, 81559\n1, {UUID1}, [N/A], 0, 81559\n"


def gpu(index: int, uuid: str = UUID0) -> GpuInfo:
    return GpuInfo(index, "NVIDIA Test", 80 * 1024**3, uuid)


# -- the real command, on this machine ----------------------------------------------------------------------

def test_without_a_gpu_the_doctor_says_so_and_exits_0(tmp_path):
    gpus, note = detect_gpus()
    if gpus:
        pytest.skip("this machine has an NVIDIA GPU: run `gridwatch doctor` itself")
    report = tmp_path / "doctor.json"
    r = cli("doctor", "--quick", "--json", str(report), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "no NVIDIA GPU" in r.stdout and note in r.stdout  # the engine's own reason, verbatim
    saved = json.loads(report.read_text(encoding="utf-8"))
    assert saved["rows"] == [] and saved["exit_code"] == 0 and saved["note"] == note


def test_doctor_options_are_listed(tmp_path):
    r = cli("doctor", "--help", cwd=tmp_path)
    assert r.returncode == 0
    assert all(opt in r.stdout for opt in ("--quick", "--gpus", "--json"))


# -- nvidia-smi vs NVML -------------------------------------------------------------------------------------

def test_nvidia_smi_csv_is_parsed_with_missing_fields_as_nan():
    rows = parse_smi_csv(SMI)
    assert [(r.index, r.uuid, r.util, r.mem_used_mib, r.mem_total_mib) for r in rows[:1]] == [
        (0, UUID0, 37.0, 1523.0, 81559.0)]
    assert rows[1].util != rows[1].util  # "[N/A]" is NaN, never 0


def test_unexpected_nvidia_smi_output_is_an_error():
    with pytest.raises(ValueError, match="want 5 fields"):
        parse_smi_csv("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver")


def test_torch_and_nvml_uuids_compare_equal():
    torch_form = "8f3c1a2b-1111-2222-3333-444455556666"  # str(torch.cuda.get_device_properties(0).uuid)
    assert normalise_uuid(UUID0) == normalise_uuid(torch_form) == "8f3c1a2b111122223333444455556666"
    assert same_uuid(UUID0, torch_form) and same_uuid(UUID0.upper(), f" {torch_form} ")
    assert not same_uuid(UUID0, UUID1)
    assert not same_uuid("", "")  # nothing read is never a match
    assert same_uuid("MIG-8f3c1a2b-1111-2222-3333-444455556666", torch_form)


def test_a_reading_between_nvml_before_and_after_is_exact():
    assert outside(50, 48, 53) == 0 and outside(50, 53, 48) == 0
    assert outside(60, 50, 52) == 8 and outside(40, 50, 52) == 10


def test_readings_within_tolerance_pass():
    result = SmiComparison()
    nvml = {UUID0: ((35.0, 1523.4 * MIB), (41.0, 1523.4 * MIB))}
    compare_sample(result, SMI, nvml)
    assert result.ok and result.compared == 1 and result.util_worst == 0


def test_utilisation_five_points_off_is_the_limit():
    result = SmiComparison()
    compare_sample(result, SMI, {UUID0: ((32.0, 1523 * MIB), (32.0, 1523 * MIB))})  # 37 vs 32: 5 points
    assert result.ok
    compare_sample(result, SMI, {UUID0: ((31.0, 1523 * MIB), (31.0, 1523 * MIB))})  # 6 points
    assert not result.ok and "utilisation" in result.problems[0]


def test_memory_used_more_than_five_percent_off_fails():
    result = SmiComparison()
    # NVML's v1 "used" counts memory the driver reserves; nvidia-smi does not: 1523 vs 2000 MiB
    compare_sample(result, SMI, {UUID0: ((37.0, 2000 * MIB), (37.0, 2000 * MIB))})
    assert not result.ok and "memory used" in result.problems[0]
    assert result.mem_worst_mib == pytest.approx(476, abs=1)


def test_nvml_v2_memory_is_a_second_opinion():
    # as the smi probe answers: NVML's (lowest, highest) while nvidia-smi ran, and v2's memory used
    sample = {"smi": SMI, "nvml": {UUID0: [[36, 1900 * MIB], [38, 1900 * MIB]]}, "v2": {UUID0: 1523 * MIB}}
    v1, v2 = nvml_checks.compare_smi([sample]), nvml_checks.compare_smi([sample], with_v2=True)
    assert not v1.ok and v2.ok
    assert nvml_checks.compare_smi([{**sample, "v2": {UUID0: None}}], with_v2=True).compared == 0


def test_a_missing_nvml_reading_is_a_disagreement():
    result = SmiComparison()
    compare_sample(result, SMI, {UUID0: ((float("nan"), 1523 * MIB), (float("nan"), 1523 * MIB))})
    assert not result.ok and "utilisation" in result.problems[0]


def test_a_gpu_nvidia_smi_does_not_list_fails():
    result = SmiComparison()
    compare_sample(result, SMI, {"GPU-ffffffff-0000-0000-0000-000000000000": ((0, 0), (0, 0))})
    assert not result.ok and "not in nvidia-smi" in result.problems[0]
    assert not SmiComparison().ok  # nothing compared proves nothing


def test_index_to_uuid_must_agree_between_nvml_and_nvidia_smi():
    assert index_mismatches(SMI, {0: UUID0, 1: UUID1}) == []
    assert index_mismatches(SMI, {0: UUID1, 1: UUID0})[0].startswith("GPU 0: NVML")
    assert "missing" in index_mismatches(SMI, {2: UUID0})[0]


# -- grids, slots and trials --------------------------------------------------------------------------------

def test_peak_concurrency():
    assert peak_concurrency([]) == 0
    assert peak_concurrency([(0, 2), (2, 4), (4, 6)]) == 1  # one ends as the next starts
    assert peak_concurrency([(0, 10), (1, 2), (1.5, 3), (5, 6)]) == 3


def test_slot_ids_name_their_gpu():
    assert [slot_gpu(s) for s in ("gpu0", "gpu1.2", "gpu12", "cpu0", "gpu")] == [0, 1, 12, None, None]


def test_misplaced_trials_are_named():
    by_index = {0: gpu(0, UUID0), 1: gpu(1, UUID1)}
    good = {"slot": "gpu1.1", "count": 1, "uuid": normalise_uuid(UUID1), "nvml_uuid": UUID1, "cvd": UUID1}
    assert grid_checks.misplaced(good, by_index) == ""
    assert grid_checks.misplaced({**good, "nvml_uuid": None}, by_index) == ""  # NVML cannot tell: torch's word
    assert "not GPU 1" in grid_checks.misplaced({**good, "uuid": UUID0}, by_index)
    assert "NVML lists" in grid_checks.misplaced({**good, "nvml_uuid": UUID0}, by_index)
    assert "sees 2 GPUs" in grid_checks.misplaced({**good, "count": 2}, by_index)
    assert "not a slot" in grid_checks.misplaced({**good, "slot": "gpu3"}, by_index)


@pytest.mark.parametrize("models", [
    grid_checks.where_models(Path("/tmp/x"), 4),
    grid_checks.mixed_models(),
    grid_checks.hold_models("oom", Path("/tmp/x"), 10 * 1024**3, 2, delay_s=2.0),
    grid_checks.starved_models(),
    grid_checks.busy_models(30),
])
def test_the_doctors_grids_are_valid_grids(models, tmp_path):
    spec = parse_grid(grid_text("doctor-check", grid_checks.devices(0, 3), models), tmp_path / "grid.toml")
    assert spec.devices.cpu_slots == 0 and spec.devices.gpu_slots_per_gpu == 3
    assert spec.devices.vram_reserve_gb == grid_checks.RESERVE_GB
    assert len(spec.models) == 1 and spec.models[0].retries == 0


def test_a_grid_runs_through_the_real_cli(tmp_path):
    r = run_grid(tmp_path, "mixed-0", grid_checks.devices(2, 1), grid_checks.mixed_models(), ["--gpus", "none"],
                 timeout=240)
    assert r.problem() == "", r.done.err[-2000:]
    trials = r.trials()
    assert len(trials) == 8 and {t["state"] for t in trials} == {"finished"}
    assert all(t["slot"].startswith("cpu") and t["attempts"] == 1 for t in trials)


def test_a_run_is_interrupted_once_its_verdict_is_stored(tmp_path):
    models = grid_checks.starved_models().replace('device = "gpu"', 'device = "any"')  # CPU slots here

    def flagged(db: Path) -> bool:
        return any(v[0] == "input_bound" for v in verdicts(db))

    r = run_grid(tmp_path, "starved", grid_checks.devices(1, 1), models, ["--gpus", "none"], timeout=120,
                 until=flagged)
    assert flagged(r.db), r.done.err[-2000:]
    assert r.done.rc == 130  # stopped as Ctrl-C stops it, long before its 200 epochs


@pytest.mark.parametrize("use_prefetch", [True, False])
def test_compute_bound_trainable_takes_at_least_one_step(use_prefetch):
    config = {"device": "cpu", "seconds": 0.0, "size": 64, "prefetch": use_prefetch}
    assert trainables.compute_bound(config, lambda **_: None)["steps"] >= 1


# -- the table, its exit code, and checks that go wrong -----------------------------------------------------

def test_table_has_one_row_per_check_and_fails_only_on_fail(tmp_path):
    rows = [Row("1. NVML = nvidia-smi", PASS, "10 readings", "util ±5 points"),
            skipped("4. VRAM of a CUDA context [GPU 0]", "MIG is enabled"),
            Row("4. context", INFO, "512 MiB"), Row("6. mixed", WARN, "both 30 s")]
    text = format_rows(rows)
    lines = text.splitlines()
    assert lines[0].split() == ["check", "result", "measured", "expected"] and set(lines[1]) <= {"-", " "}
    assert len(lines) == 2 + len(rows) and "skipped: MIG is enabled" in text
    assert exit_code(rows) == 0
    rows.append(Row("7. OOM", FAIL, "2/4 trials not finished"))
    assert exit_code(rows) == 1
    save_json(tmp_path / "d.json", rows, {"quick": True})
    saved = json.loads((tmp_path / "d.json").read_text(encoding="utf-8"))
    assert saved["exit_code"] == 1 and saved["rows"][-1] == {"check": "7. OOM", "result": FAIL,
                                                             "measured": "2/4 trials not finished", "expected": "-"}


def test_a_check_that_crashes_or_hangs_is_its_own_fail_row(tmp_path):
    logged: list[str] = []
    ctx = Context([gpu(0)], tmp_path, log=logged.append)

    def broken(_: Context) -> list[Row]:
        raise KeyError("util")

    def hung(_: Context) -> list[Row]:
        raise ProbeError("probe smi: no answer within 240 s (killed)")

    rows = run_check(ctx, 3, "broken", broken) + run_check(ctx, 4, "hung", hung)
    assert [(r.check, r.result) for r in rows] == [("3. broken", FAIL), ("4. hung", FAIL)]
    assert "the doctor itself failed: KeyError" in rows[0].measured and "killed" in rows[1].measured
    assert any(line.startswith("[3/9] broken") for line in logged)  # progress as each check starts


def test_gpus_are_chosen_as_gridwatch_run_numbers_them():
    found = [gpu(0, UUID0), gpu(1, UUID1)]
    assert select(found, None) == found and select(found, "all") == found
    assert select(found, "1") == [found[1]] and select(found, "1,0,1") == [found[1], found[0]]
    with pytest.raises(DeviceError, match="GPU 5 not found"):
        select(found, "5")
    with pytest.raises(DeviceError, match="--gpus"):
        select(found, "none")


def test_nvml_index_defaults_to_the_cuda_index():
    g = gpu(1)
    assert nvml_index(g) == 1 and label(g) == "GPU 1"


def test_a_probe_that_fails_or_hangs_is_reported(tmp_path):
    with pytest.raises(ProbeError, match="exit code 1: KeyError"):
        probe("no-such-probe", {}, timeout=60)
    done = run([sys.executable, "-c", "import signal; signal.pause()"], timeout=0.5)
    assert done.timed_out and "killed" in done.why()
    done = run([sys.executable, "-c", f"import os; os.kill(os.getpid(), {int(signal.SIGTERM)})"], timeout=60)
    assert done.rc == -signal.SIGTERM and not done.timed_out


def test_torch_without_cuda_skips_the_checks_that_need_it(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this torch can use CUDA here")
    ctx = Context([gpu(0)], tmp_path, log=lambda _: None)
    row = torch_preflight(ctx)
    assert ctx.torch_problem.startswith(f"torch {torch.__version__}")
    assert row.failed and row.measured == ctx.torch_problem, "a GPU machine whose torch cannot use it fails"
    rows = grid_checks.check_oom(ctx) + grid_checks.check_workers(ctx)
    assert all(r.result == f"skipped: {ctx.torch_problem}" for r in rows)


def test_with_a_gpu_but_no_cuda_torch_every_row_says_why(tmp_path, monkeypatch, capsys):
    """The whole run on this machine, told there is one GPU: a torch without CUDA fails its row (exit 1), and
    every other row is a skip or an info with its reason, in one table."""
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available() or shutil.which("nvidia-smi"):
        pytest.skip("this machine can run the real checks: run `gridwatch doctor`")
    monkeypatch.setattr(runner, "detect_gpus", lambda: ([gpu(0)], ""))
    out = io.StringIO()
    code = runner.run_doctor(quick=True, json_path=str(tmp_path / "d.json"), out=out)
    lines = out.getvalue().splitlines()
    assert code == 1 and lines[0].split()[:2] == ["check", "result"]
    torch_row, *rows = json.loads((tmp_path / "d.json").read_text(encoding="utf-8"))["rows"]
    assert torch_row["check"].startswith("0. torch") and torch_row["result"] == "FAIL"
    assert {r["result"].split(":")[0] for r in rows} <= {"skipped", INFO}
    assert rows[0]["result"] == "skipped: nvidia-smi is not on PATH"
    assert {r["check"].split(".")[0] for r in rows} == {str(i) for i in range(1, 10)}  # every check has a row
    progress = capsys.readouterr().err
    assert all(f"[{i}/9]" in progress for i in range(1, 10))


@pytest.mark.parametrize("args, said", [
    (["--json", "/nonexistent-folder/x.json"], "does not exist"),
    (["--json", "."], "is a folder"),
    (["--gpus", "abc"], "--gpus"),
])
def test_bad_arguments_are_one_line_and_exit_2_even_without_a_gpu(tmp_path, args, said):
    r = cli("doctor", *args, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("gridwatch: error: --") and said in r.stderr
