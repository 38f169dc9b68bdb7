"""Command trainables: an unmodified script, its arguments filled from the trial config, no shell.

`key: value` and `key=value` numeric scalars it prints become metrics (each value a step, the last one the
final result), or the named groups of the model's metrics_regex.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from collections import deque
from typing import Any, Protocol

from gridwatch.telemetry.pressure import OomWatch
from gridwatch.worker.peak import says_oom

LAST_LINES = 30  # a failed command's last lines are searched for an out-of-memory report

NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)"
SCALAR_RE = re.compile(rf"(?<![\w.])([A-Za-z_][\w./-]*)\s*[:=]\s*({NUMBER})(?![\w.:/])", re.IGNORECASE)


class Sender(Protocol):
    def send(self, type_: str, **fields: Any) -> None: ...


class CommandError(RuntimeError):
    def __init__(self, message: str, oom: bool = False) -> None:
        super().__init__(message)
        self.oom = oom  # it ran out of memory (its output says so, or the OOM killer took it)


def build_args(template: str, config: dict[str, Any]) -> list[str]:
    """Split first, then fill each token: a value with spaces or `;` stays one argument, never a shell word."""
    return [token.format_map(config) for token in shlex.split(template)]


def parse_metrics(line: str, regex: re.Pattern[str] | None = None) -> dict[str, float]:
    found: dict[str, float] = {}
    if regex is not None:
        for m in regex.finditer(line):
            for key, value in m.groupdict().items():
                if value is not None:
                    try:
                        found[key] = float(value)
                    except ValueError:
                        pass
        return found
    for key, value in SCALAR_RE.findall(line):
        found[key] = float(value)
    return found


def run_command(trial: dict[str, Any], chan: Sender) -> dict[str, float]:
    args = build_args(trial["target"], trial["config"])
    regex = re.compile(trial["metrics_regex"]) if trial.get("metrics_regex") else None
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # "python" in a command means this environment's Python, as when the user typed it in an activated venv.
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    oom_watch = OomWatch()
    try:
        proc = subprocess.Popen(args, cwd=trial["cwd"], env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace", bufsize=1)
    except FileNotFoundError:
        raise CommandError(f"command not found: {args[0]}") from None
    except PermissionError:
        raise CommandError(f"command not executable: {args[0]}") from None
    final: dict[str, float] = {}
    steps: dict[str, int] = {}
    last: deque[str] = deque(maxlen=LAST_LINES)
    assert proc.stdout is not None
    try:
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            last.append(line)
            chan.send("log", trial_id=trial["id"], stream="stdout", line=line)
            for key, value in parse_metrics(line, regex).items():
                steps[key] = steps.get(key, 0) + 1
                final[key] = value
                chan.send("metric", trial_id=trial["id"], key=key, value=value, step=steps[key])
    finally:
        code = proc.wait()
        proc.stdout.close()
    if code != 0:
        how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
        oom = says_oom("\n".join(last)) or (code == -signal.SIGKILL and oom_watch.struck())
        raise CommandError(f"command {how}" + (" (out of memory)" if oom else ""), oom=oom)
    return final
