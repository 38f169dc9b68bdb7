from gridwatch.grid import trials
from gridwatch.grid.spec import parse_grid
from gridwatch.run.scheduler import SlotView, TrialScheduler, unplaceable

from helpers import write

GRID = """
[run]
folds = 3
seed = 7
[[model]]
name = "a"
trainable = "t.py:fit"
device = "cpu"
[model.grid]
lr = [0.1, 0.01]
depth = [1, 2]
[model.fixed]
epochs = 3
[[model]]
name = "b"
trainable = "t.py:fit"
device = "gpu"
"""


def _grid(tmp_path, text=GRID):
    write(tmp_path / "t.py", "def fit(config):\n    return {}\n")
    return parse_grid(text, tmp_path / "g.toml")


def test_expand_product_times_folds(tmp_path):
    ts = trials.expand(_grid(tmp_path))
    assert len(ts) == 2 * 2 * 3 + 1 * 3 == trials.count(_grid(tmp_path))
    first = ts[0]
    assert first.config == {"epochs": 3, "lr": 0.1, "depth": 1, "fold": 0, "n_folds": 3, "seed": 7}
    assert [t.fold for t in ts[:3]] == [0, 1, 2], "folds of one config stay together"
    assert len({t.id for t in ts}) == len(ts)
    assert len({t.config_key for t in ts if t.model == "a"}) == 4


def test_ids_are_stable_and_ignore_axis_order(tmp_path):
    a = [t.id for t in trials.expand(_grid(tmp_path))]
    swapped = GRID.replace("lr = [0.1, 0.01]\ndepth = [1, 2]", "depth = [1, 2]\nlr = [0.1, 0.01]")
    b = [t.id for t in trials.expand(_grid(tmp_path, swapped))]
    assert a == [t.id for t in trials.expand(_grid(tmp_path))]
    assert set(a) == set(b)


CPU, GPU = SlotView("cpu0", "cpu", "host"), SlotView("gpu0", "gpu", "gpu0")


def test_scheduler_prefers_trials_only_this_device_can_run(tmp_path):
    ts = trials.expand(_grid(tmp_path))
    anyt = [t.__class__(**{**t.__dict__, "device_pref": "any", "id": t.id + "x"}) for t in ts[:2]]
    s = TrialScheduler(anyt + ts)

    def take(slot):
        return s.next_for(slot, [CPU, GPU], 0.0)

    assert take(GPU).model == "b"
    assert take(CPU).model == "a" and take(CPU).device_pref == "cpu"
    for _ in range(2):
        take(GPU)
    assert take(GPU).device_pref == "any", "a GPU slot takes `any` work once GPU-only work is gone"
    left = len(s)
    t = take(CPU)
    s.requeue(t)
    assert len(s) == left and take(CPU) is t


def test_unplaceable(tmp_path):
    ts = trials.expand(_grid(tmp_path))
    assert {t.model for t in unplaceable(ts, {"cpu"})} == {"b"}
    assert unplaceable(ts, {"cpu", "gpu"}) == []


def test_no_slot_left_can_run_nothing_even_a_trial_for_any_device(tmp_path):
    ts = trials.expand(_grid(tmp_path))
    anyt = [t.__class__(**{**t.__dict__, "device_pref": "any", "id": t.id + "x"}) for t in ts[:1]]
    s = TrialScheduler(anyt)
    assert s.runnable_on({"cpu"}) and s.runnable_on({"gpu"})
    assert not s.runnable_on(set())  # every slot given up: the run ends, saying what is left, instead of waiting
