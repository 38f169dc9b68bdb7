"""Telemetry with the real psutil against real child processes (NVML paths: test_nvml_paths.py)."""

import math
import subprocess
import sys
import time

import psutil
import pytest

from gridwatch.telemetry.nvml import NoGpu
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


@pytest.mark.parametrize("reader", [NoGpu("no NVIDIA GPU (NVML: driver library not found)")])
def test_no_gpu_reader(reader):
    assert reader.count() == 0 and reader.processes(0) == ({}, reader.note)


def test_a_spinning_thread_is_seen_as_the_busiest_thread():
    from helpers import wait_for

    child = subprocess.Popen([sys.executable, "-c", "import threading, time\n"
                              "threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
                              "while True: pass\n"])
    try:
        sampler = TelemetrySampler(lambda s: None, gpu=NoGpu())
        sampler.watch({"cpu0": child.pid})
        first = sampler.sample().trials["cpu0"]
        assert math.isnan(first.busiest_thread), "no interval yet on the first sample"
        got = wait_for(lambda: (s := sampler.sample().trials["cpu0"]).busiest_thread > 50 and s, 30,
                       "the spinning thread to show", interval=0.2)
        assert got.processes == 1 and got.threads >= 2
    finally:
        child.kill()
        child.wait()
