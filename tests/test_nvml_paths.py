"""GPU detection and telemetry through the real pynvml, against a fake NVML driver library (fake_nvml.py):
pynvml's own wrappers, structs, error classes and version checks run; only the C functions are faked."""

import math
import subprocess
import sys
import threading

import psutil
import pynvml
import pytest
from fake_nvml import FakeGpu, FakeNvmlLib

from gridwatch.grid.spec import DeviceSpec
from gridwatch.run.devices import Machine, detect_gpus, plan_slots
from gridwatch.telemetry.nvml import NvmlReader
from gridwatch.telemetry.sampler import TelemetrySampler, pid_namespace_nested

from helpers import wait_for

ME = psutil.Process().pid


def uuid(i):
    return f"GPU-{i:08d}-aaaa-bbbb-cccc-000000000000"


def four_gpus(names=("NVIDIA Fake",) * 4):
    return [FakeGpu(name=names[i], uuid=uuid(i), util=10 * (i + 1)) for i in range(4)]


def reader(monkeypatch, lib, gpus=None):
    with lib.installed(monkeypatch):
        return NvmlReader(pynvml, gpus)


# -- readings -------------------------------------------------------------------------------------------


def test_fields_and_a_missing_one(monkeypatch):
    lib = FakeNvmlLib([FakeGpu(errors={"nvmlDeviceGetPowerUsage": pynvml.NVML_ERROR_NOT_SUPPORTED})])
    with lib.installed(monkeypatch):
        g = NvmlReader(pynvml).read(0)
    assert (g.util, g.mem_util, g.mem_used, g.temp_c, g.sm_clock_mhz) == (71, 30, 3 * 2**30, 64, 1410)
    assert math.isnan(g.power_w) and math.isnan(g.pcie_rx_kbs), "unsupported -> NaN, never 0"


def test_per_process_figures(monkeypatch):
    lib = FakeNvmlLib([FakeGpu(procs=((111, 2 * 2**30),), samples=((111, 63),))])
    with lib.installed(monkeypatch):
        procs, note = NvmlReader(pynvml).processes(0)
    assert note == "" and procs[111].memory == 2 * 2**30 and procs[111].sm == 63


def test_a_process_with_no_sample_ran_no_kernel_zero_not_a_gap(monkeypatch):
    """Finding 11: NVML's NOT_FOUND (no samples since the last read) means 0 %, a real reading."""
    lib = FakeNvmlLib([FakeGpu(procs=((111, 2 * 2**30), (222, 2**30)), samples=((222, 50),)),
                       FakeGpu(procs=((333, 2**30),), samples=())])
    with lib.installed(monkeypatch):
        r = NvmlReader(pynvml)
        procs, note = r.processes(0)
        idle, note1 = r.processes(1)
    assert note == note1 == ""
    assert procs[222].sm == 50 and procs[111].sm == 0.0 and idle[333].sm == 0.0


def test_mig_hides_processes_and_says_so(monkeypatch):
    lib = FakeNvmlLib([FakeGpu(mig=True, procs=((111, 2**30),))])
    with lib.installed(monkeypatch):
        procs, note = NvmlReader(pynvml).processes(0)
    assert procs == {} and "MIG" in note


def test_unavailable_process_memory_is_nan(monkeypatch):
    lib = FakeNvmlLib([FakeGpu(procs=((5, None),))])
    with lib.installed(monkeypatch):
        procs, _ = NvmlReader(pynvml).processes(0)
    assert math.isnan(procs[5].memory)


# -- finding 3: drivers before R510 ------------------------------------------------------------------------


def test_a_driver_without_the_v3_symbol_still_lists_processes(monkeypatch):
    """pynvml's nvmlDeviceGetComputeRunningProcesses calls _v3; without it pynvml raises
    NVMLLibraryMismatchError, a plain Exception that is no NVMLError."""
    lib = FakeNvmlLib([FakeGpu(procs=((ME, 2**30),), samples=((ME, 40),))],
                      missing={"nvmlDeviceGetComputeRunningProcesses_v3"})
    with lib.installed(monkeypatch):
        with pytest.raises(pynvml.NVMLLibraryMismatchError):  # precondition: the real pynvml raises it
            pynvml.nvmlInit()
            pynvml.nvmlDeviceGetComputeRunningProcesses(pynvml.nvmlDeviceGetHandleByIndex(0))
        sampler = TelemetrySampler(lambda s: None, gpu=NvmlReader(pynvml))
        sampler.watch({"gpu0": ME})
        snap = sampler.sample()
    assert snap.trials["gpu0"].gpu_mem == 2**30 and snap.trials["gpu0"].gpu_sm == 40
    assert snap.gpus[0].util == 71 and snap.gpu_process_note == ""


def test_without_any_process_listing_the_rest_still_flows(monkeypatch):
    lib = FakeNvmlLib([FakeGpu(procs=((ME, 2**30),))], missing={"nvmlDeviceGetComputeRunningProcesses_v3",
                                                                "nvmlDeviceGetComputeRunningProcesses_v2"})
    with lib.installed(monkeypatch):
        sampler = TelemetrySampler(lambda s: None, gpu=NvmlReader(pynvml))
        sampler.watch({"gpu0": ME})
        snap = sampler.sample()
    assert snap.gpus[0].util == 71, "device readings go on"
    assert math.isnan(snap.trials["gpu0"].gpu_mem) and "cannot list the processes" in snap.gpu_process_note


def test_the_sampling_thread_survives_a_reading_that_raises():
    class Flaky:
        note = ""
        calls = 0

        def count(self):
            return 1

        def read(self, index):
            Flaky.calls += 1
            if Flaky.calls == 1:
                raise pynvml.NVMLLibraryMismatchError("Unversioned function called")
            from gridwatch.telemetry.nvml import GpuSample
            return GpuSample(index, util=5.0)

        def processes(self, index):
            return {}, ""

        def close(self):
            pass

    got = []
    arrived = threading.Event()
    sampler = TelemetrySampler(lambda s: (got.append(s), arrived.set()), interval_s=0.01, gpu=Flaky())
    sampler.start()
    try:
        assert arrived.wait(timeout=10), "snapshots keep coming after a failed reading"
    finally:
        sampler.stop()
    assert "NVMLLibraryMismatchError" in sampler.error and got[0].gpus[0].util == 5.0


# -- finding 6: one GPU without permission ---------------------------------------------------------------


def test_a_gpu_refusing_its_memory_size_hides_no_other(monkeypatch):
    gpus = four_gpus()[:2]
    gpus[0].errors["nvmlDeviceGetMemoryInfo"] = pynvml.NVML_ERROR_NO_PERMISSION
    with FakeNvmlLib(gpus).installed(monkeypatch):
        found, note = detect_gpus({}, pynvml)
    assert [g.nvml_index for g in found] == [0, 1]
    assert found[0].memory_total == 0 and found[1].memory_total == 16 * 2**30
    assert "GPU 0: memory size unknown (NVML: no permission)" in note


def test_a_gpu_that_cannot_be_opened_is_left_out_and_named(monkeypatch):
    gpus = four_gpus()[:2]
    gpus[0].errors["nvmlDeviceGetHandleByIndex_v2"] = pynvml.NVML_ERROR_NO_PERMISSION
    with FakeNvmlLib(gpus).installed(monkeypatch):
        found, note = detect_gpus({}, pynvml)
    assert [(g.index, g.nvml_index) for g in found] == [(0, 1)]
    assert "GPU 0 left out (NVML: no permission)" in note


def test_a_gpu_without_a_known_size_gets_no_vram_budget(monkeypatch):
    from gridwatch.run.devices import memory_budgets
    gpus = four_gpus()[:2]
    gpus[0].errors["nvmlDeviceGetMemoryInfo"] = pynvml.NVML_ERROR_NO_PERMISSION
    with FakeNvmlLib(gpus).installed(monkeypatch):
        found, _ = detect_gpus({}, pynvml)
    m = Machine("cpu", 2, 2, 8 * 2**30, tuple(found))
    budgets = memory_budgets(m, DeviceSpec(), plan_slots(m, DeviceSpec(cpu_slots=0)))
    assert "gpu0" not in budgets and budgets["gpu1"] > 0, "unknown is no limit, not a zero budget"


# -- finding 4: CUDA_VISIBLE_DEVICES ---------------------------------------------------------------------


def test_cuda_visible_devices_narrows_and_renumbers_the_gpus(monkeypatch):
    with FakeNvmlLib(four_gpus()).installed(monkeypatch):
        found, note = detect_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}, pynvml)
    assert note == "" and [(g.index, g.nvml_index, g.uuid) for g in found] == [(0, 2, uuid(2)), (1, 3, uuid(3))]
    m = Machine("cpu", 2, 2, 8 * 2**30, tuple(found))
    slots = plan_slots(m, DeviceSpec(cpu_slots=0), gpus=(0,), gpus_given=True)
    assert [s.id for s in slots] == ["gpu0"], "--gpus 0 is the first GPU the user allowed"
    assert slots[0].env()["CUDA_VISIBLE_DEVICES"] == uuid(2), "the worker gets physical GPU 2, by UUID"


def test_the_reader_reads_the_allowed_gpus_in_cudas_order(monkeypatch):
    lib = FakeNvmlLib(four_gpus())
    with lib.installed(monkeypatch):
        found, _ = detect_gpus({"CUDA_VISIBLE_DEVICES": f"{uuid(3)},1"}, pynvml)
        r = NvmlReader(pynvml, [(g.nvml_index, g.uuid) for g in found])
        samples = [r.read(i) for i in range(r.count())]
    assert [(s.index, s.util) for s in samples] == [(0, 40), (1, 20)], "GPU 0 is physical 3, GPU 1 is physical 1"


@pytest.mark.parametrize("value, expect, said", [
    ("", [], "no NVIDIA GPU allowed"),
    ("-1", [], "no NVIDIA GPU allowed"),
    ("1,7,2", [1], "'7' is no GPU here"),
    ("GPU-00000002", [2], ""),  # a unique UUID prefix, as CUDA accepts
    ("MIG-1234,0", [], "MIG"),
    ("0,0", [], "names a GPU twice"),  # CUDA uses no device at all then
])
def test_cuda_visible_devices_forms(monkeypatch, value, expect, said):
    with FakeNvmlLib(four_gpus()).installed(monkeypatch):
        found, note = detect_gpus({"CUDA_VISIBLE_DEVICES": value}, pynvml)
    assert [g.nvml_index for g in found] == expect and said in note


def test_without_a_restriction_every_gpu_and_each_worker_named_by_uuid(monkeypatch):
    with FakeNvmlLib(four_gpus()).installed(monkeypatch):
        found, note = detect_gpus({}, pynvml)
    m = Machine("cpu", 2, 2, 8 * 2**30, tuple(found))
    envs = [s.env()["CUDA_VISIBLE_DEVICES"] for s in plan_slots(m, DeviceSpec(cpu_slots=1))]
    assert note == "" and envs == ["-1", uuid(0), uuid(1), uuid(2), uuid(3)]


# -- finding 11: container process ids, and trees that cannot be read -------------------------------------


def test_in_a_child_pid_namespace_nvml_pids_are_never_trusted(monkeypatch):
    """The old check passed when one host pid happened to exist here; the namespace decides."""
    assert pid_namespace_nested("Name:\tpython\nNSpid:\t41\t90211\n")
    assert not pid_namespace_nested("Name:\tpython\nNSpid:\t90211\n")
    lib = FakeNvmlLib([FakeGpu(procs=((ME, 2**30),), samples=((ME, 40),))])  # a pid that exists here too
    with lib.installed(monkeypatch):
        sampler = TelemetrySampler(lambda s: None, gpu=NvmlReader(pynvml))
    sampler.nested_pids = True  # as pid_namespace_nested() finds inside a container
    sampler.watch({"gpu0": ME})
    snap = sampler.sample()
    assert math.isnan(snap.trials["gpu0"].gpu_mem) and "host's" in snap.gpu_process_note


def test_a_tree_none_of_whose_processes_can_be_read_is_nan_not_zero():
    p = subprocess.Popen([sys.executable, "-c", "pass"])  # left unreaped: a zombie, still listed
    try:
        wait_for(lambda: psutil.Process(p.pid).status() == psutil.STATUS_ZOMBIE, 30, "the child to exit")
        sampler = TelemetrySampler(lambda s: None, gpu=FakeReaderNone())
        sampler.watch({"cpu0": p.pid})
        got = sampler.sample().trials["cpu0"]
        assert math.isnan(got.cpu) and math.isnan(got.rss), got
    finally:
        p.wait()


class FakeReaderNone:
    note = "no NVIDIA GPU"

    def count(self):
        return 0

    def read(self, index):
        raise AssertionError

    def processes(self, index):
        return {}, self.note

    def close(self):
        pass


def test_indices_count_only_the_gpus_cuda_can_use(monkeypatch):
    """In a cgroup-limited job NVML counts GPUs it may not open; CUDA skips them, so index 0 is the first
    GPU this process can open."""
    gpus = four_gpus()
    gpus[0].errors["nvmlDeviceGetHandleByIndex_v2"] = pynvml.NVML_ERROR_NO_PERMISSION
    gpus[1].errors["nvmlDeviceGetHandleByIndex_v2"] = pynvml.NVML_ERROR_NO_PERMISSION
    with FakeNvmlLib(gpus).installed(monkeypatch):
        found, note = detect_gpus({"CUDA_VISIBLE_DEVICES": "0"}, pynvml)
    assert [(g.index, g.nvml_index) for g in found] == [(0, 2)] and "GPU 0 left out" in note


def test_indices_over_different_gpu_models_need_pci_order_or_uuids(monkeypatch):
    """CUDA numbers GPUs fastest first unless CUDA_DEVICE_ORDER=PCI_BUS_ID: over an A100 and a T4, '0' may be
    either, so it is refused (no GPU, and why) rather than guessed."""
    gpus = four_gpus(("NVIDIA T4", "NVIDIA A100", "NVIDIA T4", "NVIDIA T4"))
    with FakeNvmlLib(gpus).installed(monkeypatch):
        found, note = detect_gpus({"CUDA_VISIBLE_DEVICES": "0"}, pynvml)
        assert found == [] and "CUDA_DEVICE_ORDER=PCI_BUS_ID" in note and "UUID" in note
        found, note = detect_gpus({"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}, pynvml)
        assert [g.name for g in found] == ["NVIDIA A100"] and note == ""
        found, note = detect_gpus({"CUDA_VISIBLE_DEVICES": uuid(1)}, pynvml)
        assert [g.name for g in found] == ["NVIDIA A100"] and note == ""


def test_a_mig_enabled_gpu_is_left_out_with_a_note(monkeypatch):
    gpus = four_gpus()[:2]
    gpus[0].mig = True
    with FakeNvmlLib(gpus).installed(monkeypatch):
        found, note = detect_gpus({}, pynvml)
    assert [g.nvml_index for g in found] == [1] and "GPU 0 left out (MIG is enabled" in note


def test_without_per_process_utilisation_the_memory_is_still_attributed(monkeypatch):
    """Kepler cards and vGPU guests answer NOT_SUPPORTED for process utilisation; their process memory is
    still good, and a command trial learns its VRAM from it."""
    gpu = FakeGpu(procs=((ME, 2**30),), samples=((ME, 40),),
                  errors={"nvmlDeviceGetProcessUtilization": pynvml.NVML_ERROR_NOT_SUPPORTED})
    with FakeNvmlLib([gpu]).installed(monkeypatch):
        sampler = TelemetrySampler(lambda s: None, gpu=NvmlReader(pynvml))
        sampler.watch({"gpu0": ME})
        snap = sampler.sample()
    assert snap.trials["gpu0"].gpu_mem == 2**30 and math.isnan(snap.trials["gpu0"].gpu_sm)
    assert "no per-process utilisation" in snap.gpu_process_note


def test_each_read_asks_only_for_samples_newer_than_the_last(monkeypatch):
    gpu = FakeGpu(procs=((111, 2**30),), samples=((111, 63),))
    with FakeNvmlLib([gpu]).installed(monkeypatch):
        r = NvmlReader(pynvml)
        first, _ = r.processes(0)
        again, note = r.processes(0)
        gpu.samples = ((111, 63), (111, 20), (111, 40))  # two new samples since
        newest, _ = r.processes(0)
    assert first[111].sm == 63 and note == ""
    assert again[111].sm == 0.0, "nothing new since the last read: it ran no kernel"
    assert newest[111].sm == 30, "the mean of the new samples, not the last one"
