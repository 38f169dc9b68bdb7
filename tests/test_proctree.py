"""The cheap process-tree reader agrees with psutil's full scan."""

import subprocess
import sys

import psutil

from gridwatch.telemetry.proctree import descendants

from helpers import wait_for

TREE = ("import subprocess, time; subprocess.Popen(['sleep', '30']); subprocess.Popen(['sleep', '30']); "
        "time.sleep(30)")


def test_descendants_are_the_whole_tree_as_psutil_sees_it():
    child = subprocess.Popen([sys.executable, "-c", TREE])
    try:
        wait_for(lambda: len(psutil.Process(child.pid).children(recursive=True)) == 2, 10, "two grandchildren")
        mine = descendants(psutil.Process().pid)
        assert mine is not None
        expected = {child.pid} | {p.pid for p in psutil.Process(child.pid).children(recursive=True)}
        assert expected <= set(mine)
        assert set(descendants(child.pid) or []) == expected - {child.pid}
    finally:
        for p in psutil.Process(child.pid).children(recursive=True):
            p.kill()
        child.kill()
        child.wait()


def test_a_process_without_children_has_none_and_a_gone_one_is_unknown():
    lone = subprocess.Popen(["sleep", "30"])
    try:
        assert descendants(lone.pid) == []
    finally:
        lone.kill()
        lone.wait()
    assert descendants(lone.pid) is None
