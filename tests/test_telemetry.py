"""Telemetry with the real psutil against real child processes, and NVML paths through a fake NVML module."""

import math
import subprocess
import sys
import time
from types import SimpleNamespace

import psutil
import pytest

from gridwatch.telemetry.nvml import NoGpu, NvmlReader
from gridwatch.telemetry.sampler import TelemetrySampler

ALLOC = """
import sys, time, subprocess
mb = int(sys.argv[1])
block = bytearray(mb * 1024 * 1024)
for i in range(0, len(block), 4096):
    block[i] = 1  # touch every page so it is resident
if len(sys.argv) > 2:
    child = subprocess.Popen([sys.executable, "-c", sys.argv[2], sys.argv[3]])
print("ready", flush=True)
time.sleep(60)
"""


def _spawn(*args):
    p = subprocess.Popen([sys.executable, "-c", ALLOC, *args], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    return p


def test_rss_of_a_200_mb_child_matches_psutil_within_5_percent():
    child = _spawn("200")
    try:
        sampler = TelemetrySampler(lambda s: None, gpu=NoGpu())
        sampler.watch({"cpu0": child.pid})
        snap = sampler.sample()
        ours = snap.trials["cpu0"].rss
        theirs = psutil.Process(child.pid).memory_info().rss
        assert ours >= 200 * 1024 * 1024
        assert abs(ours - theirs) / theirs < 0.05
        assert snap.trials["cpu0"].threads >= 1 and math.isnan(snap.trials["cpu0"].gpu_mem)
    finally:
        child.kill()
        child.wait()
        child.stdout.close()


def test_the_whole_process_tree_is_attributed():
    child = _spawn("50", ALLOC, "120")
    try:
        deadline = time.time() + 20
        sampler = TelemetrySampler(lambda s: None, gpu=NoGpu())
        sampler.watch({"cpu0": child.pid})
        while time.time() < deadline:
            snap = sampler.sample()
            if snap.trials["cpu0"].rss > 170 * 1024 * 1024:
                break
            time.sleep(0.2)
        assert snap.trials["cpu0"].rss > 170 * 1024 * 1024, "a DataLoader-like child counts for the trial"
    finally:
        for p in psutil.Process(child.pid).children(recursive=True):
            p.kill()
        child.kill()
        child.wait()
        child.stdout.close()


def test_host_readings_and_gone_processes():
    sampler = TelemetrySampler(lambda s: None, gpu=NoGpu())
    sampler.watch({"cpu0": 2**22 + 12345})  # no such process
    sampler.sample()
    snap = sampler.sample()
    assert len(snap.cpu_cores) == psutil.cpu_count() and 0 <= snap.cpu_total <= 100
    assert snap.ram_total > 0 and snap.swap_used >= 0 and snap.disk_read_bps >= 0
    assert math.isnan(snap.trials["cpu0"].rss), "a missing process is NaN, never 0"


# -- NVML through a fake module with pynvml's names -----------------------------------------------------


class NVMLError(Exception):
    pass


class NVMLError_NotFound(NVMLError):  # noqa: N801 - pynvml's name
    pass


class NVMLError_NotSupported(NVMLError):  # noqa: N801
    pass


def fake_nvml(mig=False, util_error=None, power_error=None, procs=((111, 2 * 2**30),), samples=((111, 63),)):
    def raise_(exc):
        raise exc

    return SimpleNamespace(
        NVMLError=NVMLError, NVMLError_NotFound=NVMLError_NotFound, NVML_TEMPERATURE_GPU=0, NVML_CLOCK_SM=1,
        NVML_PCIE_UTIL_RX_BYTES=1, NVML_PCIE_UTIL_TX_BYTES=0, NVML_DEVICE_MIG_ENABLE=1,
        nvmlInit=lambda: None, nvmlShutdown=lambda: None, nvmlDeviceGetCount=lambda: 1,
        nvmlDeviceGetHandleByIndex=lambda i: f"h{i}",
        nvmlDeviceGetUtilizationRates=lambda h: SimpleNamespace(gpu=71, memory=30),
        nvmlDeviceGetMemoryInfo=lambda h: SimpleNamespace(used=3 * 2**30, total=16 * 2**30, free=13 * 2**30),
        nvmlDeviceGetPowerUsage=lambda h: raise_(power_error) if power_error else 212_000,
        nvmlDeviceGetTemperature=lambda h, kind: 64,
        nvmlDeviceGetClockInfo=lambda h, kind: 1410,
        nvmlDeviceGetPcieThroughput=lambda h, kind: raise_(NVMLError_NotSupported()),
        nvmlDeviceGetMigMode=lambda h: (1, 1) if mig else (0, 0),
        nvmlDeviceGetComputeRunningProcesses=lambda h: [SimpleNamespace(pid=p, usedGpuMemory=m) for p, m in procs],
        nvmlDeviceGetProcessUtilization=lambda h, ts: raise_(util_error) if util_error else
        [SimpleNamespace(pid=p, smUtil=u, timeStamp=ts + 1) for p, u in samples],
    )


def test_nvml_fields_and_a_missing_one():
    r = NvmlReader(fake_nvml(power_error=NVMLError_NotSupported()))
    g = r.read(0)
    assert (g.util, g.mem_util, g.mem_used, g.temp_c, g.sm_clock_mhz) == (71, 30, 3 * 2**30, 64, 1410)
    assert math.isnan(g.power_w) and math.isnan(g.pcie_rx_kbs), "unsupported -> NaN, never 0"


def test_per_process_figures():
    procs, note = NvmlReader(fake_nvml()).processes(0)
    assert note == "" and procs[111].memory == 2 * 2**30 and procs[111].sm == 63


def test_not_found_means_no_samples_yet():
    procs, note = NvmlReader(fake_nvml(util_error=NVMLError_NotFound())).processes(0)
    assert note == "" and procs[111].memory == 2 * 2**30 and math.isnan(procs[111].sm)


def test_mig_hides_processes_and_says_so():
    procs, note = NvmlReader(fake_nvml(mig=True)).processes(0)
    assert procs == {} and "MIG" in note


def test_unavailable_process_memory_is_nan():
    procs, _ = NvmlReader(fake_nvml(procs=((5, None),), samples=())).processes(0)
    assert math.isnan(procs[5].memory)


def test_gpu_figures_attributed_to_the_workers_tree():
    me = psutil.Process()
    sampler = TelemetrySampler(lambda s: None, gpu=NvmlReader(fake_nvml(procs=((me.pid, 2**30),),
                                                                        samples=((me.pid, 40),))))
    sampler.watch({"gpu0": me.pid})
    snap = sampler.sample()
    assert snap.trials["gpu0"].gpu_mem == 2**30 and snap.trials["gpu0"].gpu_sm == 40
    assert snap.gpus[0].util == 71 and snap.gpu_process_note == ""


def test_mig_gives_nan_not_zero():
    sampler = TelemetrySampler(lambda s: None, gpu=NvmlReader(fake_nvml(mig=True)))
    sampler.watch({"gpu0": psutil.Process().pid})
    snap = sampler.sample()
    assert math.isnan(snap.trials["gpu0"].gpu_mem) and "MIG" in snap.gpu_process_note


def test_container_pid_namespace_gives_nan_not_zero():
    host_pid = 2**22 + 7  # a process id that does not exist here
    sampler = TelemetrySampler(lambda s: None, gpu=NvmlReader(fake_nvml(procs=((host_pid, 2**30),), samples=())))
    sampler.watch({"gpu0": psutil.Process().pid})
    snap = sampler.sample()
    assert math.isnan(snap.trials["gpu0"].gpu_mem) and "namespace" in snap.gpu_process_note


@pytest.mark.parametrize("reader", [NoGpu("no NVIDIA GPU (NVML: driver library not found)")])
def test_no_gpu_reader(reader):
    assert reader.count() == 0 and reader.processes(0) == ({}, reader.note)
