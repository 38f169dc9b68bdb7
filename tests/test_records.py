"""Telemetry rows in the results file: one encoder, one decoder, a replay equal to what was sampled."""

import math
from dataclasses import fields

from gridwatch.telemetry.nvml import GpuSample
from gridwatch.telemetry.records import GPU, SLOT, Key, decode, encode
from gridwatch.telemetry.sampler import ProcSample, Snapshot

NAN = math.nan


def snap(t):
    gpu = GpuSample(0, util=80.0, mem_used=2e9, mem_total=8e9, power_w=NAN, temp_c=60.0)
    procs = {"cpu0": ProcSample(cpu=99.0, rss=1e9), "gpu0.1": ProcSample(cpu=50.0)}
    return Snapshot(t, 50.0, (40.0, 60.0), 3e9, 5e9, 8e9, (gpu,), procs, swap_used=0.0)


def test_a_snapshot_survives_the_file():
    (back,) = decode(encode(snap(1.0)))
    assert back.t == 1.0 and back.cpu_total == 50.0 and back.cpu_cores == (40.0, 60.0)
    assert back.ram_used == 3e9 and back.ram_available == 5e9 and back.ram_total == 8e9 and back.swap_used == 0.0
    g = back.gpus[0]
    assert (g.index, g.util, g.mem_used, g.mem_total, g.temp_c) == (0, 80.0, 2e9, 8e9, 60.0)
    assert math.isnan(g.power_w), "NaN is not stored: a gap, not a 0"
    assert back.trials["cpu0"].rss == 1e9 and back.trials["cpu0"].cpu == 99.0
    assert back.trials["gpu0.1"].cpu == 50.0 and math.isnan(back.trials["gpu0.1"].rss)


def test_keys_read_back_as_what_they_are_and_unknown_ones_are_skipped():
    assert Key.parse("slot.gpu0.1.rss") == Key("slot", "rss", slot="gpu0.1")
    assert Key.parse("gpu3.temp") == Key("gpu", "temp", 3)
    assert Key.parse("core12") == Key("core", "util", 12)
    for k in (Key("host", "ram_used"), Key("core", "util", 2), Key("gpu", "power", 1), Key("slot", "cpu", slot="x.y")):
        assert Key.parse(k.text) == k
    assert Key.parse("gpu0.fan") is None and Key.parse("something_new") is None
    assert len(decode([(1.0, "something_new", 3.0), (1.0, "cpu_total", 7.0)])) == 1


def test_snapshots_come_back_in_time_order():
    rows = encode(snap(2.0)) + encode(snap(1.0))
    assert [s.t for s in decode(rows)] == [1.0, 2.0]


def test_the_stored_fields_are_fields_of_the_samples():
    assert set(GPU.values()) <= {f.name for f in fields(GpuSample)}
    assert set(SLOT) <= {f.name for f in fields(ProcSample)}
