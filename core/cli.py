"""`gridwatch` command line: run a grid headless, list devices, report a results file.

Exit codes: 0 all trials succeeded, 1 some failed, 2 bad input, 130 interrupted.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TextIO

from gridwatch import __version__
from gridwatch.grid.spec import DeviceSpec, GridSpec, SpecError
from gridwatch.grid.trials import RunStatus, TrialState
from gridwatch.resources import DEMO_GRID
from gridwatch.results import runs
from gridwatch.results.report import (
    LEADERBOARD_TOP,
    failures_text,
    leaderboard_text,
    params_text,
    render_trials,
    speedup_text,
    table,
    timing_text,
)
from gridwatch.results.store import ResultStore, StoreError, trial_dir
from gridwatch.results.summary import infer_goal, summarize
from gridwatch.run import devices
from gridwatch.run.devices import DeviceError
from gridwatch.run.headless import MAX_TRIALS, PlanError, plan_run, run_planned
from gridwatch.run.progress import Progress, format_seconds
from gridwatch.run.session import RunSession
from gridwatch.telemetry.starvation import Verdict
from gridwatch.worker.trialdir import LOG_NAME

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gridwatch", description="Run a grid of model trainings on every "
                                "CPU core and GPU of this machine, and watch it work.")
    p.add_argument("--version", action="version", version=f"gridwatch {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser("run", help="run a grid file headless, with a progress bar and a leaderboard")
    run.add_argument("grid", help='grid file (TOML), or "demo" for the built-in demo grid')
    run.add_argument("--db", help=f"results file (default: <name>-<time>.gridwatch.db in the runs folder, "
                     f"{runs.runs_dir()}; ${runs.ENV} changes it)")
    run.add_argument("--resume", action="store_true",
                     help="continue a results file (--db, or the newest for this grid): skip finished trials")
    run.add_argument("--force", action="store_true",
                     help="with --db: write into a results file that another grid file wrote")
    run.add_argument("--cpu-slots", type=int, metavar="N", help="CPU worker slots (default: the grid's)")
    run.add_argument("--gpus", metavar="LIST", help="'all', 'none' or GPU indices like 0,1")
    run.add_argument("--ray", metavar="ADDRESS",
                     help="run the slots on a Ray cluster: its head's address (host:port), 'auto' "
                     "(RAY_ADDRESS) or 'local' (a head on this machine, on loopback, for this run); needs "
                     "pip install 'gridwatch[ray]'")
    run.add_argument("--quiet", action="store_true",
                     help="no progress bar; at the end a few lines: the best configs, failures, the results file")
    run.add_argument("--timing", action="store_true", help="at the end, each trial's duration too")
    run.add_argument("--max-trials", type=int, default=MAX_TRIALS, metavar="N",
                     help=f"refuse grids with more trials than this (default {MAX_TRIALS:,})")
    sub.add_parser("devices", help="show this machine's CPUs, RAM and GPUs, and the default slots")
    sub.add_parser("runs", help="list the results files in the runs folder: name, started, state, done, best")
    doc = sub.add_parser("doctor", help="check gridwatch on this machine's NVIDIA GPUs (a few minutes): one table")
    doc.add_argument("--quick", action="store_true", help="skip or shorten the longest checks")
    doc.add_argument("--gpus", metavar="LIST", help="GPU indices like 0,1 (default: all)")
    doc.add_argument("--json", metavar="FILE", help="also save the table as JSON")
    rep = sub.add_parser("report", help="one row per trial of a results file")
    rep.add_argument("db", help="results file (*.gridwatch.db)")
    rep.add_argument("--format", choices=["table", "csv", "json"], default="table")
    logs = sub.add_parser("logs", help="one trial's output (its whole log from its trial folder)")
    logs.add_argument("db", help="results file (*.gridwatch.db)")
    logs.add_argument("trial", help="trial id (or the start of one), as `gridwatch report` lists them")
    exp = sub.add_parser("export", help="a results file's leaderboard or trials as CSV, each model's best config "
                         "as TOML for a grid file")
    exp.add_argument("db", help="results file (*.gridwatch.db)")
    exp.add_argument("--leaderboard", metavar="FILE", help="one row per config, best first, as CSV ('-': stdout)")
    exp.add_argument("--trials", metavar="FILE", help="one row per trial as CSV ('-': stdout)")
    exp.add_argument("--best", metavar="FILE", help="each model's best config as [[model]] TOML ('-': stdout)")
    desk = sub.add_parser("install-desktop", help="add the window to the desktop's app menu (entry and icon)")
    desk.add_argument("--uninstall", action="store_true", help="remove what install-desktop wrote")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "devices":
            return cmd_devices()
        if args.command == "report":
            return cmd_report(args)
        if args.command == "runs":
            return cmd_runs()
        if args.command == "logs":
            return cmd_logs(args)
        if args.command == "export":
            from gridwatch.results.export import export_files

            export_files(args.db, args.leaderboard, args.trials, args.best)
            return EXIT_OK
        if args.command == "doctor":
            from gridwatch.doctor import run_doctor  # its checks are needed only here

            return run_doctor(args.quick, args.gpus, args.json)
        if args.command == "install-desktop":
            from gridwatch.desktop import run_install_desktop

            return run_install_desktop(args.uninstall)
    except (SpecError, PlanError, DeviceError, StoreError) as exc:
        print(f"gridwatch: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    parser.print_help()
    return EXIT_OK


class ProgressPrinter:
    """A live one-line bar on a terminal; one line per ended trial when output is piped or logged."""

    def __init__(self, out: TextIO, quiet: bool = False) -> None:
        self.out, self.quiet = out, quiet
        self.tty = out.isatty()
        self.last_ended = -1

    def tick(self, session: RunSession) -> None:
        if self.quiet:
            return
        p = session.progress()
        if self.tty:
            self.out.write("\r" + bar_line(p) + "\033[K")
            self.out.flush()
        elif p.ended != self.last_ended:
            self.last_ended = p.ended
            print(bar_line(p), file=self.out, flush=True)

    def done(self) -> None:
        if self.tty and not self.quiet:
            self.out.write("\n")


def bar_line(p: Progress, width: int = 24) -> str:
    filled = int(width * p.ended / p.total) if p.total else width
    running = ", ".join(f"{n} {kind}" for kind, n in sorted(p.running.items())) or "none"
    failed = f" · {p.failed} failed" if p.failed else ""
    state = " · paused" if p.paused else ""
    if p.waiting:
        state += f" · {p.waiting} waiting (memory or a faster device)"
    return (f"[{'#' * filled}{'.' * (width - filled)}] {p.ended}/{p.total} done{failed} · running: {running}"
            f" · {format_seconds(p.elapsed_s)} elapsed · ETA {format_seconds(p.eta_s)}{state}")


def cmd_run(args: argparse.Namespace) -> int:
    if args.grid == "demo" and not Path(args.grid).exists():
        args.grid = str(DEMO_GRID)
    planned = plan_run(args.grid, args.db, args.resume, args.cpu_slots, args.gpus, max_trials=args.max_trials,
                       force=args.force, ray=args.ray)
    if planned.machine.gpu_note:
        only = "" if planned.machine.gpus else ": CPU only"
        print(f"gridwatch: {planned.machine.gpu_note}{only}", file=sys.stderr)
    slots = ", ".join(s.id for s in planned.slots)
    todo = len(planned.trials) - len(planned.done_ids)
    skipped = f" ({len(planned.done_ids)} already finished, skipped)" if planned.done_ids else ""
    where = f" of {planned.machine.cpu_name} ({args.ray})" if planned.cluster is not None else ""
    print(f"gridwatch: {planned.grid.name}: {todo} trials to run{skipped} on {len(planned.slots)} slots{where} "
          f"[{slots}] -> {planned.store.path}", file=sys.stderr)
    for line in [*planned.notes, *plan_notes(planned.grid)]:
        print(f"gridwatch: {line}", file=sys.stderr)
    printer = ProgressPrinter(sys.stderr, args.quiet)
    started = time.time()

    said: set[tuple[str, str, str]] = set()

    def on_verdict(v: Verdict) -> None:
        key = (v.kind, v.subject, v.severity)
        if v.active and key not in said:
            said.add(key)
            print(f"\ngridwatch: diagnosis: {v.title}: {v.evidence}.\n  fix: {v.fix}", file=sys.stderr)

    def listen(session: RunSession) -> None:
        session.notice.connect(lambda m: print(f"\ngridwatch: {m}", file=sys.stderr))
        session.verdict_changed.connect(on_verdict)

    session = run_planned(planned, on_tick=printer.tick, on_session=listen)
    printer.tick(session)
    printer.done()
    print_summary(planned.store, session, time.time() - started, args.quiet, args.timing)
    planned.store.close()
    if session.status == RunStatus.STOPPED:
        print(f"gridwatch: interrupted; finished trials are kept. Continue with: gridwatch run {args.grid} "
              f"--db {planned.store.path} --resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK if session.status == RunStatus.DONE else EXIT_FAILED


def plan_notes(grid: GridSpec) -> list[str]:
    """Said once at start: what each model is ranked by, and commands that cannot see the fold."""
    out = []
    for m in grid.models:
        if m.metric:
            goal = m.goal or infer_goal(m.metric)
            out.append(f"{m.name}: ranked by {m.metric} ({'higher' if goal == 'max' else 'lower'} is better)")
        else:
            out.append(f"{m.name}: ranked by the first metric it reports (set metric = \"...\" to choose)")
        if not m.sees_folds:
            runs = f"{m.repeats} runs (repeats)" if m.repeats else "one run"
            out.append(f"{m.name}: its command has no {{fold}}, so folds would be identical copies: {runs} per "
                       "config instead (add {fold} to the command to use folds, or repeats = N with {seed})")
    return out


def print_summary(store: ResultStore, session: RunSession, wall_s: float, quiet: bool = False,
                  timing: bool = False) -> None:
    """The leaderboard (top LEADERBOARD_TOP, or each model's best with --quiet), the speedup, the diagnosis,
    each failure with its last lines of output, and where the results are. Per-trial timing when asked."""
    info = store.run_info()
    ours = session.trials()
    rows = [r for r in store.trials() if r.id in ours]
    whole = summarize(rows, info["models"], info["folds"])
    if quiet:  # the best config of each model
        best = [c for i, c in enumerate(whole.board) if all(o.model != c.model for o in whole.board[:i])]
        print("\nLeaderboard: the best config of each model (cross-validation over folds)")
        print(leaderboard_text(best))
        if len(whole.board) > len(best):
            print(f"... and {len(whole.board) - len(best)} more configs")
    else:
        print("\nLeaderboard (cross-validation over folds; best first)")
        print(leaderboard_text(whole.board, LEADERBOARD_TOP))
    ran = summarize([r for r in rows if r.started is not None and r.started >= session.started_at - 1], [], 0,
                    wall_s)
    if timing and ran.timed:
        print("\nTiming (this session)")
        print(timing_text(ran))
    if ran.timed and any(r.state == TrialState.FINISHED for r in ran.timed):
        print(speedup_text(ran))
    verdicts = store.verdicts()
    if verdicts and not quiet:
        print("\nDiagnosis (what kept trials or GPUs waiting)")
        fixes: dict[str, list[str]] = {}
        params = {r.id: params_text(r.params) for r in rows}
        for v in verdicts:
            what = f" ({params[v.subject]})" if v.subject in params else ""
            fixes.setdefault(v.fix, []).append(f"- {v.title}{what}, for {v.ended - v.started:.0f} s: {v.evidence}")
        for fix, lines in fixes.items():
            print("\n".join(lines))
            print(f"  fix: {fix}")
    elif verdicts:
        print(f"diagnosis: {len(verdicts)} verdict(s) on what kept trials waiting (run without --quiet to see)")
    logs = {r.id: r.log_tail for r in rows}
    failures = failures_text(whole, 3 if quiet else 10, 0 if quiet else 3, logs)
    if failures:
        print("\nFailed")
        print("\n".join(failures))
        print(f"(each trial's output: gridwatch logs {store.path} TRIAL_ID; all: gridwatch report {store.path})")
    more = len(whole.board) > (len({c.model for c in whole.board}) if quiet else LEADERBOARD_TOP)
    print(f"results: {store.path}" + (f" (every config: gridwatch report {store.path})" if more else ""))


def cmd_devices() -> int:
    m = devices.detect()
    gib = 1024**3
    print(f"CPU: {m.cpu_name}: {m.physical_cores} physical cores, {m.logical_cores} logical")
    print(f"RAM: {m.ram_total / gib:.1f} GiB")
    if m.gpus:
        for g in m.gpus:
            size = f"{g.memory_total / gib:.1f} GiB" if g.memory_total else "memory size unknown"
            print(f"GPU {g.index}: {g.name}, {size}" + (f", {g.uuid}" if g.uuid else ""))
        if m.gpu_note:
            print(m.gpu_note)
    else:
        print(m.gpu_note)
    slots = devices.plan_slots(m, DeviceSpec())
    print(f"default slots: {', '.join(s.id for s in slots)} "
          f"({devices.default_cpu_slots(m.physical_cores)} CPU, one thread each)")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from gridwatch.results.follow import is_live

    store = ResultStore(Path(args.db), create=False)
    try:
        rows = store.trials()
        if not is_live(store):  # its run ended, or died under them: they run no more, as the window shows them
            rows = [replace(r, state=str(TrialState.STOPPED)) if r.state == TrialState.RUNNING else r for r in rows]
        print(render_trials(rows, args.format, store.path))
    finally:
        store.close()
    return EXIT_OK


def cmd_logs(args: argparse.Namespace) -> int:
    """The trial's whole output from its folder's log, else the tail the results file keeps."""
    store = ResultStore(Path(args.db), create=False)
    try:
        rows = store.trials()
    finally:
        store.close()
    match = [r for r in rows if r.id == args.trial] or [r for r in rows if r.id.startswith(args.trial)]
    if len(match) != 1:
        what = "no trial" if not match else f"{len(match)} trials ({', '.join(r.id for r in match[:3])}, ...)"
        raise StoreError(f"{args.db}: {what} matching {args.trial!r}; `gridwatch report {args.db}` lists them")
    row = match[0]
    log = trial_dir(store.path, row.id) / LOG_NAME
    if log.is_file():
        with open(log, encoding="utf-8", errors="replace") as f:
            for line in f:
                sys.stdout.write(line)
    else:
        print(row.log_tail)
    print(f"-- {row.id}: {row.state}" + (f": {row.reason}" if row.reason else ""), file=sys.stderr)
    return EXIT_OK


def cmd_runs() -> int:
    folder = runs.runs_dir()
    listed = runs.list_runs(folder)
    if not listed:
        print(f"no runs yet in {folder}")
        return EXIT_OK
    rows = [[r.name, time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started)) if r.started else "-",
             format_seconds(r.duration) if r.duration is not None else "-",
             r.state + (f" (pid {r.holder})" if r.holder else ""),
             f"{r.done}/{r.total}" if r.total >= 0 else "-", r.best or "-", r.path.name] for r in listed]
    print(table(["name", "started", "duration", "state", "done", "best", "file"], rows))
    print(f"({len(listed)} in {folder})")
    unreadable = [r for r in listed if r.state == runs.UNREADABLE]
    for r in unreadable:  # listed with the others, and said once more where errors go
        print(f"gridwatch: error: {r.path}: {r.best}", file=sys.stderr)
    return EXIT_BAD_INPUT if unreadable else EXIT_OK


class ReaderGoneOut(io.RawIOBase):
    """Standard output or error that outlives its reader: once the pipe is closed (`| head`), the rest goes to
    /dev/null instead of raising BrokenPipeError at whichever print comes next, so the command still finishes
    its work (every trial, the results file) and exits with its own code."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.fd

    def isatty(self) -> bool:
        return os.isatty(self.fd)

    def write(self, data: ReadableBuffer) -> int:
        try:
            return os.write(self.fd, data)
        except BrokenPipeError:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self.fd)  # later writes, children's and Qt's too, go nowhere without an error
            os.close(null)
            return memoryview(data).nbytes


def outlive_reader(stream: TextIO) -> TextIO:
    """`stream` (sys.stdout or sys.stderr) as it was, writing through a ReaderGoneOut."""
    try:
        stream.flush()
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # none (closed before the start), or no file: left as it is
        return stream
    raw = io.BufferedWriter(ReaderGoneOut(fd))
    return io.TextIOWrapper(raw, encoding=stream.encoding, errors=stream.errors,
                            line_buffering=bool(stream.line_buffering),
                            write_through=getattr(stream, "write_through", False))


def exit_after(argv: list[str] | None = None) -> NoReturn:
    """Run the command, then leave without the interpreter's teardown: everything is printed and every
    results file closed, and with Qt, psutil and sqlite loaded the teardown costs each run CPU for nothing
    (the slot workers end the same way)."""
    sys.stdout, sys.stderr = outlive_reader(sys.stdout), outlive_reader(sys.stderr)
    code = main(argv)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError):  # none (`>&-`), or a failing device: nothing more can reach anyone
            pass
    os._exit(code)


if __name__ == "__main__":
    exit_after()
