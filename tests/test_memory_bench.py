"""make bench's daemon memory rows (sim/bench/measure/memory.py): the split of a payload process's USS."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil

from sim.bench.measure import memory as memory_bench


def test_private_memory_splits_uss_into_anonymous_and_library_pages():
    # A process that does nothing: its memory holds still between the two readings.
    idle = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        time.sleep(0.5)
        anon, backed = memory_bench.private_mb(idle.pid)
        uss = psutil.Process(idle.pid).memory_full_info().uss / 1e6
    finally:
        idle.communicate(b"")
    assert anon > 1 and backed >= 0
    assert abs(anon + backed - uss) < 0.1


def test_the_bench_world_and_rich_are_measured_apart_from_the_daemon():
    share = {k: sum(v) for k, v in memory_bench.shares().items()}
    assert share["bench"] > 1  # sim's modules, numpy, the world and a few renders are never free
    assert share["rich"] >= 0
    assert 10 < share["imports"] < 60
