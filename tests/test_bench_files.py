"""The bench's own files — its simulated /proc and /sys, the battery — live beside the payload's
data folder, never inside it (sim/world/hardware.py, `bench_dir`): the simulated card holds only
the payload's data, and a full card stops the payload's writes, not the bench's hardware.

The card is made full as tests/test_full_card.py makes it: every new file or folder under the
data folder is refused with ENOSPC, and the card's size is cut to what the OS and the payload's
data already take, so the bench's own card accounting says it is full.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

import sim.world.hardware as bench_hardware
from payload.config import load_config
from sim.world.hardware import CARD_OS_BYTES, bench_dir, open_bench

STILL = 4096  # the payload's data on the card: one still


@pytest.fixture
def data(tmp_path) -> Path:
    d = tmp_path / "payload"
    (d / "stills").mkdir(parents=True)
    (d / "stills" / "0001.jpg").write_bytes(b"\xff" * STILL)
    return d


@pytest.fixture
def bench(data):
    hw = open_bench(load_config(None), data)
    yield hw
    hw.close()


@pytest.fixture
def full_card(data, monkeypatch):
    """No free block left on the card that holds `data`: new files and folders there are refused."""
    write_text, mkdir = Path.write_text, Path.mkdir

    def on_card(path: Path) -> bool:
        return Path(os.path.abspath(path)).is_relative_to(data)

    def refusing_write_text(self, *args, **kwargs):
        if on_card(self):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return write_text(self, *args, **kwargs)

    def refusing_mkdir(self, *args, **kwargs):
        if on_card(self) and not self.exists():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", refusing_write_text)
    monkeypatch.setattr(Path, "mkdir", refusing_mkdir)
    monkeypatch.setattr(bench_hardware, "CARD_BYTES", CARD_OS_BYTES + STILL)  # the still took the last byte


def test_the_bench_keeps_its_proc_and_sys_beside_the_data_folder_and_off_the_card(data, bench):
    own = data.parent / "payload.bench"
    assert bench.pi_health.root == own
    for f in ("proc/uptime", "proc/meminfo", "proc/loadavg", "sys/class/thermal/thermal_zone0/temp", "world.json"):
        assert (own / f).is_file(), f
    assert sorted(p.relative_to(data).as_posix() for p in data.rglob("*")) == ["stills", "stills/0001.jpg"]
    # The card holds the OS and the payload's still, nothing of the bench's.
    assert bench.card_usage(data).used == CARD_OS_BYTES + STILL


def test_a_full_card_stops_the_payload_not_the_benchs_proc_and_sys(data, full_card, bench):
    with pytest.raises(OSError) as refused:  # the payload's writes are refused ...
        (data / "stats.json").write_text("{}")
    assert refused.value.errno == errno.ENOSPC
    usage = bench.card_usage(data)
    assert usage.free == 0 and usage.used == CARD_OS_BYTES + STILL
    # ... while the Pi's own health still reads: CPU temperature and uptime from the bench's tree.
    first = bench.pi_health.read()
    assert first.cpu_temp_c is not None and first.uptime_s is not None, first.errors
    assert first.disk_free_kb == 0
    deadline = time.monotonic() + 30.0  # the world steps every few flight seconds, 60 a wall second
    while bench.pi_health.read().uptime_s <= first.uptime_s:
        assert time.monotonic() < deadline, "the bench's /proc/uptime stopped on a full card"
        time.sleep(0.05)


def test_a_payload_restarted_on_the_same_data_folder_finds_the_same_bench(data):
    open_bench(load_config(None), data).close()
    state = bench_dir(data) / "world.json"
    assert state.is_file()
    with capture_logs() as logs:
        again = open_bench(load_config(None), data)
    try:
        assert again.pi_health.root == bench_dir(data)
        assert {"event": "world_resumed", "path": str(state), "log_level": "info"} in logs  # the same battery
    finally:
        again.close()


@pytest.mark.parametrize("given, expected", [("payload", "payload.bench"), ("payload/", "payload.bench"),
                                             (".", None), ("a/../payload", "payload.bench")])
def test_bench_dir_is_a_sibling_of_the_data_folder_however_it_is_spelled(tmp_path, monkeypatch, given, expected):
    monkeypatch.chdir(tmp_path)
    got = bench_dir(Path(given))
    assert got.is_absolute()
    assert got == (tmp_path / expected if expected else tmp_path.with_name(tmp_path.name + ".bench"))
    assert not got.is_relative_to(tmp_path / "payload")
