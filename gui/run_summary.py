"""Small read-only summaries of a run for the window: the status-bar line and the GPU spans to shade."""

from __future__ import annotations

from gridwatch.run.devices import Slot
from gridwatch.run.live import LiveTrial
from gridwatch.run.progress import format_seconds
from gridwatch.run.session import RunSession
from gridwatch.telemetry.starvation import Verdict


def status_text(live: dict[str, LiveTrial], session: RunSession | None) -> str:
    if not live:
        return "no run"
    states = [lt.state for lt in live.values()]
    done, failed = states.count("finished"), states.count("failed") + states.count("timeout")
    text = f"{done + failed}/{len(states)} done" + (f", {failed} failed" if failed else "")
    durations = [lt.ended - lt.started for lt in live.values()
                 if lt.started is not None and lt.ended is not None and lt.state in ("finished", "failed", "timeout")]
    if session is not None:
        p = session.progress()
        wall = p.elapsed_s
        text += f" · running {sum(p.running.values())} · ETA {format_seconds(p.eta_s)}"
        if p.paused:
            text += " · paused"
    else:
        starts = [lt.started for lt in live.values() if lt.started is not None]
        ends = [lt.ended for lt in live.values() if lt.ended is not None]
        wall = (max(ends) - min(starts)) if starts and ends else 0.0
    if wall > 0 and durations:
        text += f" · speedup {sum(durations) / wall:.2f}x"
    return text


def gpu_spans(verdicts: list[Verdict], live: dict[str, LiveTrial], slots: list[Slot]
              ) -> dict[int, list[tuple[float, float | None]]]:
    """GPU index -> spans (end None while ongoing) when a verdict concerned that GPU or a trial on it."""
    by_id = {s.id: s for s in slots}
    spans: dict[int, list[tuple[float, float | None]]] = {}
    for v in verdicts:
        gpu: int | None = None
        if v.subject.startswith("gpu") and v.subject[3:].isdigit():
            gpu = int(v.subject[3:])
        elif v.subject in live and (live[v.subject].slot or "") in by_id:
            gpu = by_id[live[v.subject].slot or ""].gpu_index
        if gpu is not None:
            spans.setdefault(gpu, []).append((v.started, None if v.active else v.ended))
    return spans
