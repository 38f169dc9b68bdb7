"""The window's per-event work does not grow with the grid: counted Qt model operations, the incremental
summary against the full recompute, sorting and filtering in the model, follow-running. No clocks."""

import random
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from gridwatch.grid.spec import parse_grid
from gridwatch.grid.trials import TrialState, expand
from gridwatch.gui.app import get_qapp
from gridwatch.gui.timeline import TimelineView
from gridwatch.gui.trials_model import COLUMNS
from gridwatch.gui.trials_panel import TrialsPanel
from gridwatch.results.summary import RunTally, summarize
from gridwatch.run.live import LiveTrial

from helpers import grid, write

MODELS = [{"name": "m", "metric": "score", "goal": "max"}, {"name": "n", "metric": None, "goal": None}]


def make_live(folder: Path, configs: int) -> dict[str, LiveTrial]:
    write(folder / "x.py", "def fit(config):\n    return {}\n")
    g = grid(folder, f"""
        [[model]]
        name = "m"
        trainable = "x.py:fit"
        metric = "score"
        [model.grid]
        a = {list(range(configs))}
        [model.fixed]
        epochs = 2
        [[model]]
        name = "n"
        trainable = "x.py:fit"
        [model.grid]
        b = [1, 2, 3]
        """)
    return {t.id: LiveTrial(t) for t in expand(parse_grid(g.read_text(), g))}


def step(lt: LiveTrial, state: TrialState, t: float, rng: random.Random) -> None:
    lt.state = state
    if state == TrialState.RUNNING:
        lt.slot, lt.started, lt.ended, lt.epoch = "cpu0", t, None, 0
    elif state == TrialState.QUEUED:
        lt.ended = None
    else:
        lt.ended = t + rng.random()
        if state == TrialState.FINISHED:
            lt.metrics = {"score": rng.random(), "loss": rng.random()}


class Counter:
    """Counts the Qt model signals and data() calls a panel's model makes."""

    def __init__(self, panel: TrialsPanel):
        self.n = 0
        model = panel.model
        for signal in (model.dataChanged, model.rowsMoved, model.rowsInserted, model.rowsRemoved,
                       model.layoutChanged, model.modelReset):
            signal.connect(self.bump)
        self.calls = {"key": 0}
        key = model._sort_key

        def counted(lt):
            self.calls["key"] += 1
            return key(lt)

        model._sort_key = counted

    def bump(self, *_):
        self.n += 1


def ops_per_event(qtbot, tmp_path: Path, configs: int, sort_col: int) -> tuple[int, int]:
    live = make_live(tmp_path / str(configs), configs)
    panel = TrialsPanel()
    qtbot.addWidget(panel)
    panel.show_trials(live, MODELS, 2)
    if sort_col >= 0:
        panel.table.sortByColumn(sort_col, Qt.SortOrder.DescendingOrder)
    counter = Counter(panel)
    assert counter.n == 0 and panel.model.rowCount() == len(live)
    rng = random.Random(0)
    ids = list(live)[:10]
    for i, tid in enumerate(ids):  # ten trials start, report an epoch and finish: 30 events
        for state in (TrialState.RUNNING, TrialState.RUNNING, TrialState.FINISHED):
            step(live[tid], state, float(i), rng)
            panel.trial_changed(live[tid])
        panel.flush()
    return counter.n, counter.calls["key"]


@pytest.mark.parametrize("sort_col", [-1, COLUMNS.index("metric"), COLUMNS.index("state")])
def test_model_operations_per_event_do_not_grow_with_the_trials(qtbot, tmp_path, sort_col):
    get_qapp()
    small = ops_per_event(qtbot, tmp_path, 50, sort_col)
    large = ops_per_event(qtbot, tmp_path, 2500, sort_col)
    assert small[0] > 0, "the changes reached the view"
    assert large == small, f"100 trials: {small}, 5,000 trials: {large} (signals, sort keys)"


def test_changes_are_coalesced_into_one_redraw_per_frame(qtbot, tmp_path):
    get_qapp()
    live = make_live(tmp_path, 100)
    panel = TrialsPanel()
    qtbot.addWidget(panel)
    panel.show_trials(live, MODELS, 2)
    ranges = []
    panel.model.dataChanged.connect(lambda a, b, *_: ranges.append((a.row(), b.row())))
    for tid in list(live)[3:9]:
        for _ in range(20):  # many events per trial before a frame
            panel.trial_changed(live[tid])
    assert not ranges, "nothing is redrawn per event"
    panel.flush()
    assert ranges == [(3, 8)], "one dataChanged over the adjacent rows"


def test_incremental_summary_equals_the_full_recompute(tmp_path):
    live = make_live(tmp_path, 40)
    tally = RunTally(live.values(), MODELS, 2)
    rng = random.Random(1)
    ids = list(live)
    for t in range(600):  # random lifecycles, requeues and failures included
        lt = live[rng.choice(ids)]
        state = rng.choice([TrialState.RUNNING, TrialState.FINISHED, TrialState.FINISHED, TrialState.FAILED,
                            TrialState.QUEUED, TrialState.TIMEOUT])
        step(lt, state, float(t), rng)
        tally.update(lt)
        if t % 50 == 0:
            assert_same(tally.summary(123.0), summarize(live.values(), MODELS, 2, 123.0))
    assert_same(tally.summary(None), summarize(live.values(), MODELS, 2, None))
    assert tally.summary().board, "some configs ranked"


def assert_same(a, b):
    assert (a.total, a.counts, a.failures, a.wall_s, a.board) == (b.total, b.counts, b.failures, b.wall_s, b.board)
    assert [r.id for r in a.timed] == [r.id for r in b.timed]
    assert a.serial_s == pytest.approx(b.serial_s)


def test_sorted_and_filtered_rows_stay_right_as_trials_change(qtbot, tmp_path):
    get_qapp()
    live = make_live(tmp_path, 60)
    panel = TrialsPanel()
    qtbot.addWidget(panel)
    panel.show_trials(live, MODELS, 2)
    model = panel.model
    panel.table.sortByColumn(COLUMNS.index("metric"), Qt.SortOrder.DescendingOrder)
    panel.state_pick.setCurrentIndex(panel.state_pick.findText("finished"))
    assert model.rowCount() == 0
    rng = random.Random(2)
    for i, tid in enumerate(list(live)[:30]):
        step(live[tid], TrialState.FINISHED, float(i), rng)
        panel.trial_changed(live[tid])
        if i % 7 == 0:
            panel.flush()
    panel.flush()
    shown = [model.trial_at(r) for r in range(model.rowCount())]
    assert len(shown) == 30 and all(lt.state == TrialState.FINISHED for lt in shown)
    scores = [lt.metrics["score"] for lt in shown]
    assert scores == sorted(scores, reverse=True), "best first"
    assert all(model.rows[lt.id] == r for r, lt in enumerate(shown))


def test_follow_running_keeps_a_running_row_in_view(qtbot, tmp_path):
    get_qapp()
    live = make_live(tmp_path, 1000)
    panel = TrialsPanel()
    qtbot.addWidget(panel)
    panel.resize(900, 500)
    panel.show()
    panel.show_trials(live, MODELS, 2)
    tid = list(live)[1500]
    row = panel.model.rows[tid]
    table = panel.table

    def in_view(r):
        return table.rowAt(0) <= r <= table.rowAt(table.viewport().height() - 1)

    assert panel.follow.isChecked() and not in_view(row), "the row starts out of view"
    step(live[tid], TrialState.RUNNING, 0.0, random.Random(3))
    panel.trial_changed(live[tid])
    qtbot.waitUntil(lambda: in_view(row), timeout=5000)


def test_trial_ids_are_never_cut_short(qtbot, tmp_path):
    get_qapp()
    live = make_live(tmp_path, 10)
    panel = TrialsPanel()
    qtbot.addWidget(panel)
    panel.show_trials(live, MODELS, 2)
    longest = max(live, key=len)
    assert panel.table.columnWidth(0) > panel.table.fontMetrics().horizontalAdvance(longest)


def test_timeline_draws_thousands_of_short_trials(qtbot, tmp_path):
    get_qapp()
    view = TimelineView()
    qtbot.addWidget(view)
    view.reset(["cpu0", "cpu1"], 0.0)
    live = make_live(tmp_path, 1500)
    for i, lt in enumerate(live.values()):
        lt.state, lt.slot, lt.started, lt.ended = TrialState.FINISHED, f"cpu{i % 2}", i * 0.002, i * 0.002 + 0.002
        view.update_trial(lt)
    assert len(view.bars) == len(live)
    assert view.bars_item.dataBounds(0) == pytest.approx((0.0, len(live) * 0.002))
    view.resize(600, 200)
    view.show()
    image = view.grab().toImage()
    bar_colour = view.bars_item.state  # every bar is "finished": its colour must be on screen
    assert (bar_colour[: len(live)] == bar_colour[0]).all()
    finished = {image.pixelColor(x, y).name() for x in range(0, 600, 3) for y in range(0, 200, 3)}
    assert "#43a047" in finished, "the bars are visible, not hidden under their outlines"
