"""How a Ray run's per-node telemetry becomes one snapshot (no Ray needed: the merge is plain data)."""

from dataclasses import replace
from types import SimpleNamespace

from gridwatch.cluster.pool import RayWorkerPool, slot_resources
from gridwatch.run.devices import Slot
from gridwatch.telemetry.nvml import GpuSample
from gridwatch.telemetry.sampler import ProcSample, Snapshot


def node_snap(cpu: float, cores: int, ram_used: float, gpus: tuple[GpuSample, ...], slot_rss: float) -> Snapshot:
    return Snapshot(1.0, cpu, (cpu,) * cores, ram_used, 100.0 - ram_used, 100.0, gpus,
                    {"slot": ProcSample(rss=slot_rss)}, 0.0, 1.0, 2.0)


def worker(node_id: str, slot_id: str, gpu_ids=()):
    return SimpleNamespace(node_id=node_id, gpu_ids=list(gpu_ids), slot=Slot(slot_id, "gpu", 1, gpu_index=0))


def test_each_node_counts_once_and_its_gpus_get_the_runs_numbers(qapp):
    pool = RayWorkerPool(None, [], [], "driver")
    a0, a1 = worker("A", "a/gpu0", ["1"]), worker("A", "a/cpu0")
    b0 = worker("B", "b/gpu0", ["1"])
    # the slots' GPUs are numbered when they say hello, before any sample: A's GPU 1 is 0, B's GPU 1 is 1
    assert pool.gpu_number(a0) == 0 and pool.gpu_number(b0) == 1 and pool.gpu_number(a1) is None
    snap_a = node_snap(50.0, 4, 30.0, (GpuSample(0, util=5.0), GpuSample(1, util=90.0)), 7.0)
    snap_b = node_snap(10.0, 2, 20.0, (GpuSample(1, util=40.0),), 9.0)
    merged = pool.merge([(a0, ("A", "hostA", snap_a)), (a1, ("A", "hostA", replace(snap_a, trials={
        "slot": ProcSample(rss=3.0)}))), (b0, ("B", "hostB", snap_b))])
    assert [n.name for n in merged.nodes] == ["hostA", "hostB"]  # node A once, though two of its slots answered
    assert merged.ram_used == 50.0 and merged.ram_total == 200.0 and len(merged.cpu_cores) == 6
    assert merged.cpu_total == (50.0 * 4 + 10.0 * 2) / 6
    by_number = {g.index: g.util for g in merged.gpus}
    assert by_number[0] == 90.0 and by_number[1] == 40.0  # each slot's GPU reads as its own node's GPU
    assert by_number[2] == 5.0  # A's GPU 0, no slot's: a number of its own, never another node's
    assert {k: p.rss for k, p in merged.trials.items()} == {"a/gpu0": 7.0, "a/cpu0": 3.0, "b/gpu0": 9.0}


def test_slot_resources_share_a_gpu_and_reserve_threads():
    slots = [Slot("cpu0", "cpu", 2), Slot("gpu0", "gpu", 1, gpu_index=0), Slot("gpu0.1", "gpu", 1, gpu_index=0),
             Slot("gpu1", "gpu", 1, gpu_index=1)]
    assert slot_resources(slots[0], slots) == {"num_cpus": 2.0, "num_gpus": 0.0}
    assert slot_resources(slots[1], slots)["num_gpus"] == 0.5 and slot_resources(slots[3], slots)["num_gpus"] == 1.0


def test_the_monitor_plots_a_ray_runs_gpus_though_this_machine_has_none(qtbot):
    import math

    from PySide6.QtWidgets import QLabel

    from gridwatch.gui.app import get_qapp
    from gridwatch.gui.monitor import MonitorView
    from gridwatch.telemetry.sampler import NodeLoad

    get_qapp()
    monitor = MonitorView(2, 0, "no NVIDIA GPU (NVML: driver library not found)")
    qtbot.addWidget(monitor)
    note = monitor.findChild(QLabel, "gpu_note")
    assert note is not None and not note.isHidden() and not monitor.util_plots

    def snap(t: float, utils: list[float]) -> Snapshot:
        gpus = tuple(GpuSample(i, util=u, mem_used=1.0, mem_total=4.0) for i, u in enumerate(utils))
        return replace(node_snap(50.0, 2, 30.0, gpus, 1.0), t=t, nodes=(NodeLoad("gpu-box", 50.0, 2, 30.0, 100.0),))

    monitor.on_snapshot(snap(1.0, [10.0, 20.0]))
    assert sorted(monitor.util_plots) == [0, 1] and note.isHidden()
    monitor.on_snapshot(snap(2.0, [11.0, 21.0, 31.0]))  # a third GPU: its node joined the run
    assert sorted(monitor.util_plots) == [0, 1, 2]
    t, values = monitor.gpu.window(None, 3.0)
    util0, util2 = values[monitor.gpu.index["util0"]], values[monitor.gpu.index["util2"]]
    assert list(util0) == [10.0, 11.0]  # GPU 0 kept its history when the plots grew
    assert math.isnan(util2[0]) and util2[1] == 31.0
    monitor.redraw(force=True)
    drawn = monitor.util_plots[0].listDataItems()[0].getData()[1]
    assert list(drawn) == [10.0, 11.0]  # GPU 0's line reads the grown ring, not the one it was made with
    assert monitor.nodes.names == ["cpu@gpu-box"]
