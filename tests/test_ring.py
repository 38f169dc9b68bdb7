import numpy as np

from gridwatch.gui.ring import RingSeries


def test_ring_keeps_last_capacity_in_order_with_nan_for_missing():
    r = RingSeries(["a", "b"], capacity=5)
    for i in range(8):
        r.append(float(i), {"a": i * 10.0} if i % 2 else {"a": i * 10.0, "b": 1.0})
    t, v = r.window(None, now=7.0)
    assert t.tolist() == [3.0, 4.0, 5.0, 6.0, 7.0]
    assert v[0].tolist() == [30.0, 40.0, 50.0, 60.0, 70.0]
    assert np.isnan(v[1][0]) and v[1][1] == 1.0, "a missing reading is NaN, never 0"
    t, _ = r.window(2.0, now=7.0)
    assert t.tolist() == [5.0, 6.0, 7.0]
