"""The slot worker: a long-lived child process that runs trial after trial.

Started as `python -P -m gridwatch.worker`. It imports no Qt (it must start fast) and imports torch only if a
trainable does. The protocol travels on a private duplicate of the original stdout; fd 1 is pointed at
stderr and sys.stdout/sys.stderr become log streams, so nothing a trainable prints can corrupt it.
"""

from __future__ import annotations

import ctypes
import inspect
import os
import re
import signal
import sys
import threading
import time
import traceback
from typing import IO, Any

from gridwatch.grid.locate import load_trainable
from gridwatch.worker import commands, prefetch, protocol, reaper, trialdir
from gridwatch.worker.commands import LINE_MAX
from gridwatch.worker.metrics import clean_metrics, split_step, split_values
from gridwatch.worker.peak import PeakMeter, is_oom, own_rss, release_gpu_memory

LEFTOVER_GRACE_S = 1.0  # a process a trial left running gets SIGTERM, then SIGKILL this much later

_current_trial: str | None = None


class Channel:
    """Writes whole protocol lines with one os.write each, so threads (and forked children) never interleave."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.lock = threading.Lock()
        self.log_file: IO[str] | None = None  # the running trial's whole output, in its folder
        self.log_room = 0  # bytes the log file may still take

    def send(self, type_: str, **fields: Any) -> None:
        data = protocol.encode(type_, t=time.time(), **fields)
        with self.lock:
            view = memoryview(data)
            while view:
                n = os.write(self.fd, view)
                view = view[n:]
            if type_ == "log" and self.log_file is not None:
                self._keep(str(fields.get("line", "")))

    def _keep(self, line: str) -> None:
        if self.log_room <= 0:
            return
        text = line + "\n"
        self.log_room -= len(text)
        if self.log_room <= 0:
            text = f"[gridwatch] this log stops here: {trialdir.LOG_MAX // 2**20} MB kept\n"
        try:
            self.log_file.write(text)  # type: ignore[union-attr]
        except (OSError, ValueError):
            self.log_room = 0

    def open_log(self, folder: str | None) -> None:
        self.close_log()
        if folder:
            try:
                fd = os.open(os.path.join(folder, trialdir.LOG_NAME),
                             os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
                self.log_file = os.fdopen(fd, "a", encoding="utf-8", errors="replace")
                self.log_room = trialdir.LOG_MAX
            except OSError:
                self.log_file = None

    def close_log(self) -> None:
        with self.lock:
            if self.log_file is not None:
                try:
                    self.log_file.close()
                except OSError:
                    pass
            self.log_file = None


class LogStream:
    """Replaces sys.stdout/sys.stderr in the worker: each printed line becomes a `log` message."""

    def __init__(self, chan: Channel, stream: str) -> None:
        self.chan, self.stream, self.buf = chan, stream, ""
        self.dropped = 0  # characters of the current over-long line not kept
        self.lock = threading.Lock()

    def write(self, text: str) -> int:
        """Whole lines become log messages, each cut at LINE_MAX characters: a 50 MB print costs no more."""
        with self.lock:
            *lines, rest = text.split("\n")
            out = [self._take(part) for part in lines]
            self._take(rest, keep=True)
        for line in out:
            self.chan.send("log", trial_id=_current_trial, stream=self.stream, line=line)
        return len(text)

    def _take(self, part: str, keep: bool = False) -> str:
        """Add `part` to the line being built; return the line (a complete one) and reset, unless `keep`."""
        room = LINE_MAX - len(self.buf)
        self.buf += part[:room]
        self.dropped += max(0, len(part) - room)
        if keep:
            return ""
        line = self.buf + (f" ... [{self.dropped:,} more characters of this line not kept]" if self.dropped else "")
        self.buf, self.dropped = "", 0
        return line

    def flush(self) -> None:
        with self.lock:
            line = self._take("") if self.buf or self.dropped else ""
        if line:
            self.chan.send("log", trial_id=_current_trial, stream=self.stream, line=line)

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return 2

    @property
    def encoding(self) -> str:
        return "utf-8"


def run_python(chan: Channel, trial: dict[str, Any]) -> dict[str, Any]:
    fn = load_trainable(trial["target"], trial.get("base") or trial["cwd"])
    _limit_torch_threads()
    step = 0

    def report(**metrics: Any) -> None:
        """`report(epoch=3, val_acc=...)`: an `epoch` (else `step`) is the x-axis, not a metric; without one,
        each call is the next step."""
        nonlocal step
        given, metrics = split_step(metrics)
        step = step + 1 if given is None else given
        values, _ = clean_metrics(metrics)
        chan.send("epoch", trial_id=trial["id"], step=step, metrics=values)

    config = dict(trial["config"])
    result = fn(config, report) if _wants_report(fn) else fn(config)
    if not isinstance(result, dict):
        raise TrialError(f"trainable returned {type(result).__name__}, expected a dict of metrics")
    return result


def _wants_report(fn: Any) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


def _limit_torch_threads() -> None:
    torch = sys.modules.get("torch")
    n = os.environ.get("GRIDWATCH_THREADS")
    if torch is not None and n and torch.get_num_threads() != int(n):
        torch.set_num_threads(int(n))


class TrialError(RuntimeError):
    """A trial failed for a reason that needs no traceback."""


def _data_wait_sink(chan: Channel, trial_id: str) -> prefetch.Sink:
    """Prefetch figures for this trial; each finished pass over the data counts as an epoch."""
    epochs = 0

    def sink(d: dict[str, Any]) -> None:
        nonlocal epochs
        if "epoch_data_wait" in d:
            epochs += 1
            d = {**d, "epoch": epochs}
        chan.send("telemetry", trial_id=trial_id, **d)

    return sink


def run_trial(chan: Channel, trial: dict[str, Any]) -> None:
    """Run one trial; end whatever it left running; then report how it ended (the parent reads that report
    as "ready for the next trial"), with this worker's RSS now, from which the parent decides to recycle it."""
    global _current_trial
    _current_trial = trial["id"]
    chan.send("trial_started", trial_id=trial["id"], pid=os.getpid())
    prefetch.set_sink(_data_wait_sink(chan, trial["id"]))
    home = os.getcwd()
    try:
        ended, fields = _attempt(chan, trial)
        _end_leftovers()
        _flush_logs()
        chan.send(ended, trial_id=trial["id"], **fields, worker_rss=own_rss())
    finally:
        _current_trial = None
        prefetch.set_sink(None)
        os.chdir(home)
        chan.close_log()
    try:
        release_gpu_memory()  # here, not in an except block, whose traceback still holds the trial's tensors
    except Exception as exc:  # noqa: BLE001 - a sticky CUDA error (illegal address, device assert)
        sys.stderr.write(f"[gridwatch] this worker's CUDA context is broken ({exc}); a fresh worker replaces it\n")
        _flush_logs()
        _exit_group(70)


def _attempt(chan: Channel, trial: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The trial itself: ("trial_finished" or "trial_failed", the message's fields)."""
    own_vram = trial["kind"] != "command"  # a command's VRAM is its script's: NVML sees it, we do not
    meter = PeakMeter(lambda rss, vram: chan.send("memory_probe", trial_id=trial["id"], rss=rss,
                                                  vram=vram if own_vram else None))
    meter.start()
    try:
        _enter_trial_dir(chan, trial)
        if trial["kind"] == "command":
            raw = commands.run_command(trial, chan)
        else:
            raw = run_python(chan, trial)
        _say_unkept(raw)
        metrics, problem = clean_metrics(raw, strict=True)
        if problem:
            raise TrialError(problem)
        _check_metric(trial, metrics)
    except TrialError as exc:
        return "trial_failed", {"reason": str(exc), **meter.stop(own_vram)}
    except commands.CommandError as exc:
        return "trial_failed", {"reason": str(exc), **meter.stop(own_vram), "oom": exc.oom}
    except BaseException as exc:  # noqa: BLE001 - the trainable may raise anything, even SystemExit
        tb = traceback.format_exc()
        sys.stderr.write(tb)
        sys.stderr.flush()
        reason = f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:500]
        return "trial_failed", {"reason": reason, **meter.stop(own_vram), "oom": is_oom(exc)}
    return "trial_finished", {"metrics": metrics, **meter.stop(own_vram)}


def _end_leftovers() -> None:
    """Nothing a trial starts outlives it: a forgotten Popen, a server, a daemon that setsid()s or double-forks
    (this worker is a subreaper, so they all stay below it). Said in the trial's log."""
    ended = reaper.end_descendants(LEFTOVER_GRACE_S)
    if ended:
        sys.stderr.write(f"[gridwatch] ended {len(ended)} process(es) this trial left running\n")


def _enter_trial_dir(chan: Channel, trial: dict[str, Any]) -> None:
    """Make the trial's own folder, name it in the environment and the config, and (workdir = "trial") run
    the trial there: `cwd` below is where a command starts, and a Python trainable's working folder."""
    folder = trial.get("trial_dir")
    if not folder:
        return
    mirror = trial.get("workdir", "trial") == "trial"
    trialdir.prepare(folder, trial["cwd"], mirror)
    chan.open_log(folder)
    os.environ["GRIDWATCH_TRIAL_DIR"] = folder
    os.environ["GRIDWATCH_TRIAL_ID"] = trial["id"]
    trial["config"] = {**trial["config"], "trial_dir": folder, "trial_id": trial["id"]}
    if mirror:
        trial["cwd"] = folder
    os.chdir(trial["cwd"])


def _say_unkept(raw: dict[str, Any]) -> None:
    """Values a trainable returned that are not metrics: in its log, one line each, never dropped silently."""
    _, other = split_values(raw)
    for key, why in other.items():
        sys.stderr.write(f"[gridwatch] returned {key} = {why}\n")
    if other:
        sys.stderr.flush()


def _check_metric(trial: dict[str, Any], metrics: dict[str, float]) -> None:
    """No metric, no success; and the model's `metric` must be among them."""
    wanted = trial.get("metric")
    if not metrics:
        raise TrialError("returned no metrics" if trial["kind"] == "python" else "no metric in its output")
    if wanted and wanted not in metrics:
        raise TrialError(f"metric {wanted!r} never appeared; saw: {', '.join(metrics)}")


def _flush_logs() -> None:
    for s in (sys.stdout, sys.stderr):
        s.flush()


def _die_with_parent(parent: int) -> None:
    """If the app dies, even by kill -9, take this worker and every process below it down too."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                _exit_group(0)
            time.sleep(1.0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    if os.getppid() != parent:
        _exit_group(0)


def _exit_group(code: int) -> None:
    """Exit, and kill every process below this worker first: its process group is not enough (a trial's
    child may have left it with setsid), its descendants are (this worker is their subreaper)."""
    try:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # no second round of this from a second SIGTERM
    except ValueError:  # not the main thread (the parent watch): it cannot set handlers
        pass
    try:
        reaper.end_descendants(0.0)
    except Exception:  # noqa: BLE001, S110 - exiting whatever happens
        pass
    if os.getpgid(0) == os.getpid():  # we lead our own group: what may still be forking in it goes too
        os.killpg(0, signal.SIGKILL)
    os._exit(code)


def _preload() -> None:
    """Import the run's trainables (and so torch) before saying hello: every worker pays the import at
    once, in parallel, instead of inside its first trial, where it would also skew that trial's timing."""
    import json

    for target, cwd in json.loads(os.environ.get("GRIDWATCH_PRELOAD", "[]")):
        try:
            fn = load_trainable(target, cwd)
            _import_torch_if_used(fn)
        except Exception:  # noqa: BLE001, S110 - the trial that uses it will report the error properly
            pass
    _limit_torch_threads()


def _import_torch_if_used(fn: Any) -> None:
    """Trainables often import torch inside the function; import it now if their module mentions it."""
    if "torch" in sys.modules:
        return
    try:
        source = inspect.getsource(sys.modules[fn.__module__])
    except (OSError, TypeError, KeyError):
        return
    if re.search(r"^\s*(import torch|from torch\b)", source, re.MULTILINE):
        import torch  # noqa: F401


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C belongs to the app, which stops us cleanly
    signal.signal(signal.SIGTERM, lambda *_: _exit_group(143))
    reaper.become_subreaper()  # orphans of a trial's processes stay below us, where _end_leftovers finds them
    parent = int(os.environ.get("GRIDWATCH_PARENT_PID", os.getppid()))
    _die_with_parent(parent)
    chan = Channel(os.dup(1))
    os.dup2(2, 1)
    sys.stdout = LogStream(chan, "stdout")
    sys.stderr = LogStream(chan, "stderr")
    _preload()
    reaper.OrphanReaper().start()
    # baseline_rss: what this worker holds before its first trial; the parent recycles it if it grows too far.
    # torch/cuda: the versions this worker loaded (None when its trainables did not load torch; never imported
    # here just to ask).
    torch = sys.modules.get("torch")
    torch_version, cuda = getattr(torch, "__version__", None), getattr(getattr(torch, "version", None), "cuda", None)
    chan.send("hello", pid=os.getpid(), slot=os.environ.get("GRIDWATCH_SLOT", ""),
              device=os.environ.get("GRIDWATCH_DEVICE", "cpu"), python=sys.version.split()[0],
              baseline_rss=own_rss(), torch=None if torch_version is None else str(torch_version),
              cuda=None if cuda is None else str(cuda))
    for line in sys.stdin:
        if not line.strip():
            continue
        msg = protocol.decode(line)
        if msg["type"] == "shutdown":
            break
        if msg["type"] == "run":
            run_trial(chan, msg["trial"])
    _flush_logs()
    reaper.end_descendants(LEFTOVER_GRACE_S)  # none should be left; a preloaded module's may be
    # Results live in the parent; skip interpreter teardown, which takes ~1 s once torch is loaded.
    os._exit(0)


if __name__ == "__main__":
    main()
