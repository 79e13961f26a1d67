"""make bench's daemon memory rows (sim/memory_bench.py): the split of a payload process's USS."""

from __future__ import annotations

import os

import psutil

from sim import memory_bench


def test_private_memory_splits_uss_into_anonymous_and_library_pages():
    anon, backed = memory_bench.private_mb(os.getpid())
    uss = psutil.Process().memory_full_info().uss / 1e6
    assert anon > 1 and backed >= 0
    assert abs(anon + backed - uss) < 2  # sampled a moment apart


def test_the_bench_world_and_rich_are_measured_apart_from_the_daemon():
    share = memory_bench.shares()
    assert share["bench"] > 1  # sim's modules, numpy, the world and a few renders are never free
    assert share["rich"] >= 0
    assert 10 < share["imports"] < 60
