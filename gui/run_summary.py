"""Small read-only summaries of a run for the window: the status-bar line and the GPU spans to shade."""

from __future__ import annotations

from collections.abc import Mapping

from gridwatch.results.summary import summarize
from gridwatch.run.devices import Slot
from gridwatch.run.live import LiveTrial
from gridwatch.run.progress import format_seconds
from gridwatch.run.session import RunSession
from gridwatch.telemetry.starvation import Verdict


def status_text(live: Mapping[str, LiveTrial], session: RunSession | None) -> str:
    if not live:
        return "no run"
    wall = None
    extra = ""
    if session is not None:
        p = session.progress()
        wall = p.elapsed_s
        extra = f" · running {sum(p.running.values())}"
        if session.status is None:
            extra += f" · ETA {format_seconds(p.eta_s)}" + (" · paused" if p.paused else "")
    s = summarize(live.values(), [], 0, wall)
    text = f"{s.ended}/{s.total} done" + (f", {s.failed} failed" if s.failed else "") + extra
    if s.timed and s.wall_s > 0:
        text += f" · speedup {s.speedup:.2f}x"
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
