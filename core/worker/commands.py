"""Command trainables: an unmodified script, its arguments filled from the trial config, no shell.

Its output is parsed line by line (gridwatch.worker.parse): `key: value`, `key=value`, multi-word keys,
`| key value |` fields, JSON lines and tqdm postfixes, plus the model's metrics_regex patterns. Counters (step,
epoch, ...) are never metrics; an epoch counter is the x-axis of the curves, and per-batch values (a tqdm bar's
postfix) stay out of them (gridwatch.worker.epochs). Each key's last value is the final result. Lines are kept
up to LINE_MAX characters: a script that prints 50 MB on one line costs no more than a short one.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from collections import deque
from typing import IO, Any, Protocol

from gridwatch.telemetry.pressure import OomWatch
from gridwatch.worker.epochs import EpochSteps
from gridwatch.worker.parse import MetricParser
from gridwatch.worker.peak import says_oom

LAST_LINES = 30  # a failed command's last lines are searched for an out-of-memory report
LINE_MAX = 8192  # characters of one output line that are kept (logged, parsed)
FORMATS = "`key: value`, `key=value`, `| key value |` fields, JSON lines, tqdm postfixes"


class Sender(Protocol):
    def send(self, type_: str, **fields: Any) -> None: ...


class CommandError(RuntimeError):
    def __init__(self, message: str, oom: bool = False) -> None:
        super().__init__(message)
        self.oom = oom  # it ran out of memory (its output says so, or the OOM killer took it)


def build_args(template: str, config: dict[str, Any]) -> list[str]:
    """Split first, then fill each token: a value with spaces or `;` stays one argument, never a shell word."""
    return [token.format_map(config) for token in shlex.split(template)]


def read_lines(stream: IO[str]) -> Any:
    """Lines without their newline, each cut at LINE_MAX characters (the rest is read and dropped, so a
    huge line never sits in memory whole)."""
    while True:
        raw = stream.readline(LINE_MAX)
        if not raw:
            return
        if raw.endswith("\n"):
            yield raw[:-1]
            continue
        dropped = 0
        while True:  # the rest of an over-long line (or the last line, without a newline)
            more = stream.readline(LINE_MAX)
            if not more:
                break
            dropped += len(more) - more.endswith("\n")
            if more.endswith("\n"):
                break
        yield raw + (f" ... [{dropped:,} more characters of this line not kept]" if dropped else "")


def run_command(trial: dict[str, Any], chan: Sender) -> dict[str, float]:
    args = build_args(trial["target"], trial["config"])
    parser = MetricParser(trial.get("metrics_regex") or ())
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # "python" in a command means this environment's Python, as when the user typed it in an activated venv.
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    oom_watch = OomWatch()
    try:
        proc = subprocess.Popen(args, cwd=trial["cwd"], env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace", bufsize=1)
    except FileNotFoundError:
        if not os.path.isdir(trial["cwd"]):
            raise CommandError(f"working folder not found: {trial['cwd']}") from None
        raise CommandError(f"command not found: {args[0]}") from None
    except PermissionError:
        raise CommandError(f"command not executable: {args[0]}") from None
    steps = EpochSteps()
    last: deque[str] = deque(maxlen=LAST_LINES)
    assert proc.stdout is not None
    try:
        for line in read_lines(proc.stdout):
            last.append(line)
            chan.send("log", trial_id=trial["id"], stream="stdout", line=line)
            for key, step, value in steps.points(parser.parse(line)):
                total = {"epochs_total": steps.total} if steps.total else {}
                chan.send("metric", trial_id=trial["id"], key=key, value=value, step=step, **total)
    finally:
        code = proc.wait()
        proc.stdout.close()
    if code != 0:
        how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
        oom = says_oom("\n".join(last)) or (code == -signal.SIGKILL and oom_watch.struck())
        raise CommandError(f"command {how}" + (" (out of memory)" if oom else "") + _last_words(last), oom=oom)
    final = steps.final
    if not final:
        raise CommandError("no metric in its output" + _last_words(last) + f". Understood: {FORMATS}; or give "
                           "the model a metrics_regex with named groups, e.g. 'acc (?P<acc>[0-9.]+)'")
    return final


SAYS_WHY = re.compile(r"^(?:[\w.]+(?:Error|Exception|Interrupt|Exit)\b|\S+: error: )")


def _last_words(last: deque[str]) -> str:
    """Where a failing script says why: the last exception line (`_pickle.UnpicklingError: ...`, not the
    advice printed after it) or argparse's `prog: error: ...`; else its last non-empty line."""
    lines = [ln.strip() for ln in last if ln.strip()]
    line = next((ln for ln in reversed(lines) if SAYS_WHY.match(ln)), lines[-1] if lines else "")
    return f": {line[:300]}" if line else ""
