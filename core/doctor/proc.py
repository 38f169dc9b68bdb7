"""Every measurement runs in a child process with a time limit, so a hang or a crash costs one check only.

Probes are `python -P -m gridwatch.doctor.probes NAME ARGS-JSON`; each prints one JSON object as its last
line of output. torch and NVML's per-process queries are only ever loaded there, never in the doctor.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class ProbeError(RuntimeError):
    """A probe timed out, crashed or printed no result: the check says so and fails."""


@dataclass(frozen=True)
class Done:
    rc: int | None  # None: killed at its time limit
    out: str
    err: str
    wall_s: float

    @property
    def timed_out(self) -> bool:
        return self.rc is None

    def why(self) -> str:
        """The failure in one line: time limit, or exit code and its last line of error output."""
        if self.timed_out:
            return f"no answer within {self.wall_s:.0f} s (killed)"
        last = next((ln.strip() for ln in reversed(self.err.splitlines()) if ln.strip()), "")
        return f"exit code {self.rc}" + (f": {last[:240]}" if last else "")


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"})
    env.update(extra or {})
    return env


def start(cmd: list[str], env: dict[str, str] | None = None, cwd: str | None = None) -> subprocess.Popen[str]:
    """A child in its own process group, so a time limit ends it and whatever it started."""
    return subprocess.Popen(cmd, env=env or child_env(), cwd=cwd, text=True, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def finish(proc: subprocess.Popen[str], timeout: float, started: float) -> Done:
    try:
        out, err = proc.communicate(timeout=max(timeout, 0.1))
        return Done(proc.returncode, out, err, time.monotonic() - started)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out, err = proc.communicate()
        return Done(None, out, err, time.monotonic() - started)


def kill_group(proc: subprocess.Popen[str], sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run(cmd: list[str], timeout: float, env: dict[str, str] | None = None, cwd: str | None = None) -> Done:
    started = time.monotonic()
    return finish(start(cmd, env, cwd), timeout, started)


def run_until(cmd: list[str], done: Callable[[], bool], max_s: float, env: dict[str, str] | None = None,
              cwd: str | None = None, every_s: float = 0.5) -> Done:
    """Run until `done()` holds or max_s passes, then interrupt it as Ctrl-C would (killed 30 s later)."""
    started = time.monotonic()
    proc = start(cmd, env, cwd)
    while proc.poll() is None and time.monotonic() - started < max_s and not done():
        time.sleep(every_s)
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    return finish(proc, 30.0, started)


def probe_cmd(name: str, args: dict[str, Any]) -> list[str]:
    return [sys.executable, "-P", "-m", "gridwatch.doctor.probes", name, json.dumps(args)]


def probe(name: str, args: dict[str, Any], timeout: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run one probe and return its JSON answer (which may be {"skip": why})."""
    done = run(probe_cmd(name, args), timeout, child_env(env))
    if done.rc != 0:
        raise ProbeError(f"probe {name}: {done.why()}")
    return parse_answer(name, done.out)


def parse_answer(name: str, out: str) -> dict[str, Any]:
    last = next((ln for ln in reversed(out.splitlines()) if ln.startswith("{")), None)
    if last is None:
        raise ProbeError(f"probe {name} printed no result")
    answer = json.loads(last)
    if not isinstance(answer, dict):
        raise ProbeError(f"probe {name} printed {type(answer).__name__}, not an object")
    return answer


class Sampler:
    """NVML readings of some GPUs in a child process while something else runs; `stop()` returns the
    child's summary (lowest free memory, highest used, mean utilisation per UUID)."""

    def __init__(self, uuids: list[str], max_s: float, interval_s: float = 0.1) -> None:
        self.started = time.monotonic()
        self.proc = start(probe_cmd("sample", {"uuids": uuids, "max_s": max_s, "interval_s": interval_s}))

    def stop(self) -> dict[str, Any]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        done = finish(self.proc, 15.0, self.started)
        if done.rc != 0:
            raise ProbeError(f"NVML sampler: {done.why()}")
        return parse_answer("sample", done.out)
