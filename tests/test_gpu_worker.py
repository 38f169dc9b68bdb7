"""What a real worker process does with CUDA between trials, against a stand-in torch (tests/fake_torch) that
models the caching allocator: memory freed by a tensor stays reserved until empty_cache(), and
reset_peak_memory_stats() restarts the peak from what is reserved now."""

import json
import os
import subprocess
import sys

import pytest

from gridwatch.worker import protocol
from gridwatch.worker.peak import is_oom

from helpers import REPO, write

GB = 2**30
FAKE_TORCH = REPO / "tests" / "fake_torch"

TRAINABLES = f"""
import torch

GB = {GB}

def big_then_oom(config):
    held = torch.empty(4 * GB)  # still referenced by this frame when the error is raised
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

def state(config):
    return {{"reserved": float(torch.cuda.memory_reserved()), "initialized": float(torch.cuda.is_initialized()),
            "inits": float(torch.cuda.inits)}}

def big(config):
    t = torch.empty(4 * GB)
    return {{"ok": 1.0}}

def small(config):
    t = torch.empty(1 * GB)
    return {{"ok": 1.0}}

def cpu_only(config):
    return {{"ok": 1.0}}

def breaks_cuda(config):
    t = torch.empty(GB)
    torch.cuda.broken = True
    return {{"ok": 1.0}}

def cublas(config):
    raise RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`")
"""


def _python(tmp_path, name):
    return {"id": name, "kind": "python", "target": f"{tmp_path / 'gpu_t.py'}:{name}", "cwd": str(tmp_path),
            "metrics_regex": None, "config": {"fold": 0, "n_folds": 1, "seed": 0, "device": "cuda"}}


def _command(tmp_path, tid, script):
    write(tmp_path / f"{tid}.py", script)
    return {"id": tid, "kind": "command", "target": f"python {tid}.py", "cwd": str(tmp_path),
            "metrics_regex": None, "config": {"fold": 0, "n_folds": 1, "seed": 0, "device": "cuda"}}


def run_worker(tmp_path, trials):
    """A real worker process running `trials` in order; its protocol messages, by trial id."""
    write(tmp_path / "gpu_t.py", TRAINABLES)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(FAKE_TORCH), str(REPO)]), GRIDWATCH_SLOT="gpu0")
    lines = "".join(protocol.encode("run", trial=t).decode() for t in trials) + protocol.encode("shutdown").decode()
    r = subprocess.run([sys.executable, "-m", "gridwatch.worker"], input=lines, capture_output=True, text=True,
                       env=env, timeout=60, cwd=tmp_path)
    msgs = [json.loads(line) for line in r.stdout.splitlines()]
    ends = {m["trial_id"]: m for m in msgs if m["type"] in ("trial_finished", "trial_failed")}
    assert len(ends) == len(trials), r.stderr
    return ends


def test_the_fake_torch_is_the_one_the_worker_imports(tmp_path):
    ends = run_worker(tmp_path, [_python(tmp_path, "big"), _python(tmp_path, "state")])
    assert ends["state"]["metrics"]["inits"] == 1.0, "CUDA was initialised once, by the trial that used it"


def test_an_oom_gives_the_failed_trials_vram_back(tmp_path):
    """Finding 5: empty_cache() inside the `except` block ran while the traceback still held the failed
    trainable's frame and its tensors; the idle worker kept 4 GB reserved."""
    ends = run_worker(tmp_path, [_python(tmp_path, "big_then_oom"), _python(tmp_path, "state")])
    assert ends["big_then_oom"]["type"] == "trial_failed" and ends["big_then_oom"]["oom"] is True
    assert ends["state"]["metrics"]["initialized"] == 1.0, "precondition: CUDA is in use in this worker"
    assert ends["state"]["metrics"]["reserved"] == 0, "the failed trial's 4 GB were released, not kept cached"


def test_a_trials_peak_is_its_own_not_its_predecessors_cache(tmp_path):
    """Finding 7: reset_peak_memory_stats() resets the peak to what is reserved *now*; with the previous trial's
    4 GB still cached, a 1 GB trial was measured at 4 GB and the estimates kept it."""
    ends = run_worker(tmp_path, [_python(tmp_path, "big"), _python(tmp_path, "small")])
    assert ends["big"]["peak_vram"] == 4 * GB, "precondition: the first trial's peak is measured"
    assert ends["small"]["peak_vram"] == 1 * GB


def test_a_trial_that_never_touches_cuda_gets_no_context(tmp_path):
    """Finding 8: the peak meter must not initialise CUDA (a context costs VRAM) in a worker whose trials
    never used the GPU, and such a trial reports no VRAM figure at all."""
    ends = run_worker(tmp_path, [_python(tmp_path, "cpu_only"), _python(tmp_path, "state")])
    assert ends["cpu_only"]["type"] == "trial_finished" and "peak_vram" not in ends["cpu_only"]
    assert ends["state"]["metrics"]["initialized"] == 0.0 and ends["state"]["metrics"]["inits"] == 0.0


def test_a_command_trials_vram_is_unknown_not_zero(tmp_path):
    """Finding 8: a command's GPU memory is its script's; the worker's own CUDA figures (here a previous
    trial's) were stored as the command's peak VRAM (0.0 where unknown)."""
    ends = run_worker(tmp_path, [_python(tmp_path, "big"),
                                 _command(tmp_path, "cmd", "print('loss: 0.5')\n")])
    assert "peak_vram" in ends["big"], "precondition: this worker's CUDA is in use"
    assert ends["cmd"]["type"] == "trial_finished" and "peak_vram" not in ends["cmd"]


def test_command_out_of_memory_is_recognised(tmp_path):
    """Finding 11: a command that dies of a CUDA OOM counts as an OOM (retried with fewer at once)."""
    script = ("import sys\nprint('loss: 1.0')\n"
              "print('torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB', file=sys.stderr)\n"
              "sys.exit(1)\n")
    ends = run_worker(tmp_path, [_command(tmp_path, "oom", script), _command(tmp_path, "plain", "import sys\n"
                                                                               "sys.exit(3)\n")])
    assert ends["oom"]["type"] == "trial_failed" and ends["oom"]["oom"] is True, ends["oom"]
    assert ends["plain"]["oom"] is False, "an ordinary failure is not an OOM"


def test_cublas_allocation_failure_is_an_oom(tmp_path):
    ends = run_worker(tmp_path, [_python(tmp_path, "cublas")])
    assert ends["cublas"]["oom"] is True


@pytest.mark.parametrize("text", [
    "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
    "cuDNN error: CUDNN_STATUS_ALLOC_FAILED",
    "CUDA error: out of memory",
])
def test_oom_texts(text):
    assert is_oom(RuntimeError(text))
    assert not is_oom(RuntimeError("CUDA error: device-side assert triggered"))


def test_the_cgroups_oom_kill_count_is_read(tmp_path):
    from gridwatch.telemetry import pressure

    write(tmp_path / "v2" / "memory.events", "low 0\nhigh 0\nmax 2\noom 2\noom_kill 3\n")
    write(tmp_path / "v1" / "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
    assert pressure.oom_kills([str(tmp_path / "none"), str(tmp_path / "v2")]) == 3
    assert pressure.oom_kills([str(tmp_path / "v1")]) == 1
    assert pressure.oom_kills([str(tmp_path / "none")]) is None


@pytest.mark.parametrize("kills, oom", [((0, 1), True), ((0, 0), False)])
def test_a_command_the_oom_killer_took_is_an_oom(tmp_path, monkeypatch, kills, oom):
    """After the kill the memory is back, so 'RAM nearly full' missed it; the cgroup's count says it."""
    from gridwatch.telemetry import pressure
    from gridwatch.worker import commands

    counts = iter(kills)
    monkeypatch.setattr(pressure, "oom_kills", lambda dirs=None: next(counts))
    monkeypatch.setattr(pressure, "ram_nearly_full", lambda: False)
    trial = _command(tmp_path, "killed", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    sent = []
    with pytest.raises(commands.CommandError) as err:
        commands.run_command(trial, type("Chan", (), {"send": lambda self, *a, **k: sent.append(a)})())
    assert "killed by signal 9" in str(err.value) and err.value.oom is oom


def test_a_harmless_allocator_warning_is_not_an_oom():
    from gridwatch.worker.peak import says_oom

    warning = ("W tensorflow/core/common_runtime/bfc_allocator.cc:290] Allocator (GPU_0_bfc) ran out of memory "
               "trying to allocate 2.0GiB with freed_by_count=0. The caller indicates that this is not a failure")
    assert not says_oom(warning + "\nValueError: bad shape")
    assert says_oom("RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB")


def test_a_broken_cuda_context_ends_the_worker_after_its_trial_is_reported(tmp_path):
    """A sticky CUDA error makes every later CUDA call raise: the worker reports its trial, says why on
    stderr and exits, so the pool replaces it with a fresh one (the next trial never meets the broken context)."""
    write(tmp_path / "gpu_t.py", TRAINABLES)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(FAKE_TORCH), str(REPO)]), GRIDWATCH_SLOT="gpu0")
    trials = [_python(tmp_path, "breaks_cuda"), _python(tmp_path, "state")]
    lines = "".join(protocol.encode("run", trial=t).decode() for t in trials) + protocol.encode("shutdown").decode()
    r = subprocess.run([sys.executable, "-m", "gridwatch.worker"], input=lines, capture_output=True, text=True,
                       env=env, timeout=60, cwd=tmp_path)
    msgs = [json.loads(line) for line in r.stdout.splitlines()]
    ends = [m for m in msgs if m["type"] in ("trial_finished", "trial_failed")]
    assert [m["trial_id"] for m in ends] == ["breaks_cuda"] and ends[0]["type"] == "trial_finished"
    assert r.returncode == 70
    logs = " ".join(m.get("line", "") for m in msgs if m["type"] == "log")
    assert "CUDA context is broken" in logs + r.stderr
