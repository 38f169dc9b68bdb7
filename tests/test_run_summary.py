from gridwatch.grid.trials import Trial
from gridwatch.gui.run_summary import gpu_spans, status_text
from gridwatch.run.devices import Slot
from gridwatch.run.live import LiveTrial
from gridwatch.telemetry.starvation import Verdict


def test_gpu_spans_follow_the_trial_to_its_gpu():
    t = Trial("m-1-f0", "m", "m-1", {}, 0, "any", {})
    live = {t.id: LiveTrial(t, state="running", slot="gpu1", started=10.0)}
    slots = [Slot("cpu0", "cpu", 1), Slot("gpu1", "gpu", 1, gpu_index=1)]
    verdicts = [Verdict("input_bound", t.id, "high", "e", "f", 12.0, 15.0, active=True),
                Verdict("gpu_unused", "gpu0", "moderate", "e", "f", 1.0, 5.0, active=False)]
    assert gpu_spans(verdicts, live, slots) == {1: [(12.0, None)], 0: [(1.0, 5.0)]}


def test_status_text_of_a_finished_run():
    t = [Trial(f"m-1-f{i}", "m", "m-1", {}, i, "any", {}) for i in range(2)]
    live = {t[0].id: LiveTrial(t[0], state="finished", started=0.0, ended=4.0),
            t[1].id: LiveTrial(t[1], state="timeout", started=0.0, ended=4.0)}
    assert status_text(live, None) == "2/2 done, 1 failed · speedup 2.00x"


def test_a_config_with_folds_still_to_run_ranks_after_the_complete_ones_live_and_read_back():
    from gridwatch.results.summary import RunTally, summarize

    def trial(config, fold, state, acc=None):
        t = Trial(f"m-{config}-f{fold}", "m", f"m-{config}", {"c": config}, fold, "any", {})
        return LiveTrial(t, state=state, started=0.0, ended=1.0 if acc is not None else None,
                         metrics={"acc": acc} if acc is not None else {})

    live = [trial("a", f, "finished", 0.80) for f in range(3)]
    live += [trial("b", 0, "finished", 0.95), trial("b", 1, "running"), trial("b", 2, "queued")]
    models = [{"name": "m", "metric": "acc", "goal": "max"}]
    board = summarize(live, models, 3).board
    assert [c.config_key for c in board] == ["m-a", "m-b"], "one lucky fold does not beat three"
    tally = RunTally(live, models, 3)
    assert [c.config_key for c in tally.summary(None).board] == ["m-a", "m-b"]
