import numpy as np

from gridwatch.demo import data, train


def test_dataset_is_deterministic_cached_and_memory_mapped():
    a = data.load(n_per_class=40, frames=8, seed=3)
    b = data.load(n_per_class=40, frames=8, seed=3)
    assert isinstance(a.sequences, np.memmap) and isinstance(a.features, np.memmap)
    assert a.sequences.shape == (200, 8, 28) and a.features.shape == (200, 56)
    np.testing.assert_array_equal(a.sequences, b.sequences)
    np.testing.assert_array_equal(a.labels, b.labels)
    regenerated, labels = data.generate(40, 8, 3)
    np.testing.assert_array_equal(regenerated, a.sequences)
    assert np.bincount(labels).tolist() == [40] * 5


def test_stratified_folds_partition_and_balance():
    labels = np.repeat(np.arange(5), 30)
    seen = []
    for fold in range(3):
        tr, va = data.stratified_fold(labels, 3, fold, seed=0)
        assert not set(tr) & set(va) and len(tr) + len(va) == 150
        assert np.bincount(labels[va]).tolist() == [10] * 5
        seen += va.tolist()
    assert sorted(seen) == list(range(150))


def test_demo_trainables_learn_and_report_each_epoch():
    for fn in (train.mlp, train.lstm):
        reports: list[dict] = []
        cfg = {"fold": 0, "n_folds": 3, "seed": 0, "device": "cpu", "epochs": 2, "n_per_class": 60}
        out = fn(cfg, lambda _r=reports, **m: _r.append(m))
        assert len(reports) == 2 and list(reports[0]) == ["val_acc", "train_loss"]
        assert 0.0 <= out["val_acc"] <= 1.0 and out["train_loss"] > 0
