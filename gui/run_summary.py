"""Small read-only summaries of a run for the window: the status-bar line and the GPU spans to shade."""

from __future__ import annotations

from collections.abc import Mapping

from gridwatch.results.summary import RunTally, summarize
from gridwatch.run.devices import Slot
from gridwatch.run.live import LiveTrial
from gridwatch.run.progress import Progress, format_seconds
from gridwatch.run.session import RunSession
from gridwatch.telemetry.starvation import Verdict


def status_text(live: Mapping[str, LiveTrial], session: RunSession | None) -> str:
    """The status-bar line from every trial (O(trials): for a finished run; a live window uses `status_of`)."""
    if not live:
        return "no run"
    p = session.progress() if session is not None else None
    s = summarize(live.values(), [], 0, p.elapsed_s if p is not None else None)
    return _line(s.total, s.ended, s.failed, s.serial_s if s.timed else None, s.wall_s, p,
                 session is not None and session.status is None)


def status_of(tally: RunTally, p: Progress | None, live_run: bool, wall_s: float | None) -> str:
    """The status-bar line from running counts (O(1)); `p`, the session's last progress, for the ETA."""
    if not tally.total:
        return "no run"
    wall = wall_s if wall_s is not None else tally.wall()
    return _line(tally.total, tally.ended, tally.failed, tally.serial_s if tally.timed_count else None, wall, p,
                 live_run)


def _line(total: int, ended: int, failed: int, serial_s: float | None, wall_s: float, p: Progress | None,
          live_run: bool) -> str:
    extra = ""
    if p is not None:
        extra = f" · running {sum(p.running.values())}"
        if live_run:
            extra += f" · ETA {format_seconds(p.eta_s)}" + (" · paused" if p.paused else "")
    text = f"{ended}/{total} done" + (f", {failed} failed" if failed else "") + extra
    if serial_s is not None and wall_s > 0:
        text += f" · speedup {serial_s / wall_s:.2f}x"
    return text


def gpu_spans(verdicts: list[Verdict], live: Mapping[str, LiveTrial], slots: list[Slot]
              ) -> dict[int, list[tuple[float, float | None]]]:
    """GPU index -> spans (end None while ongoing) when a verdict concerned that GPU or a trial on it."""
    by_id = {s.id: s for s in slots}
    spans: dict[int, list[tuple[float, float | None]]] = {}
    for v in verdicts:
        gpu = v.gpu
        if gpu is None and v.subject in live and (live[v.subject].slot or "") in by_id:
            gpu = by_id[live[v.subject].slot or ""].gpu_index
        if gpu is not None:
            spans.setdefault(gpu, []).append((v.started, None if v.active else v.ended))
    return spans
