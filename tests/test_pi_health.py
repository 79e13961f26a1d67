"""PiHealth against a fake filesystem tree (tmp_path as root) and a fake vcgencmd runner."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from payload.parts.pi_health import (
    SOURCES,
    THROTTLE_BITS,
    HealthReading,
    PiHealth,
    decode_throttled,
    parse_throttled,
)
from stratoecho.wire.content import HEALTH_FIELDS

MEMINFO = """\
MemTotal:         944268 kB
MemFree:           61532 kB
MemAvailable:     512340 kB
Buffers:           40120 kB
"""


def fake_pi(root: Path, *, temp="48312\n", meminfo=MEMINFO, uptime="3723.45 7100.12\n",
            loadavg="0.52 0.31 0.20 1/123 4567\n") -> Path:
    """A Pi-shaped tree under root; a None argument leaves that file out."""
    files = {
        "sys/class/thermal/thermal_zone0/temp": temp,
        "proc/meminfo": meminfo,
        "proc/uptime": uptime,
        "proc/loadavg": loadavg,
    }
    for rel, text in files.items():
        if text is not None:
            p = root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
    (root / "data").mkdir(exist_ok=True)
    return root


def runner_saying(text: str):
    calls = []

    def run(argv):
        calls.append(tuple(argv))
        return text

    run.calls = calls
    return run


def disk(total_b=32 * 2**30, free_b=20 * 2**30):
    seen = []

    def usage(path):
        seen.append(Path(path))
        return (total_b, total_b - free_b, free_b)

    usage.seen = seen
    return usage


# ------------------------------------------------------------------ throttled decoding


@pytest.mark.parametrize(
    "text, value, flags",
    [
        ("throttled=0x0\n", 0, set()),
        ("throttled=0x50005\n", 0x50005,
         {"under_voltage", "throttled", "under_voltage_occurred", "throttled_occurred"}),
        ("throttled=0x50000", 0x50000, {"under_voltage_occurred", "throttled_occurred"}),
        ("throttled=0x80008", 0x80008, {"soft_temp_limit", "soft_temp_limit_occurred"}),
        ("throttled=0x20002", 0x20002, {"arm_freq_capped", "arm_freq_capped_occurred"}),
        ("throttled=0xF000F", 0xF000F, set(THROTTLE_BITS.values())),
        ("0x10000", 0x10000, {"under_voltage_occurred"}),  # bare hex
        ("5", 5, {"under_voltage", "throttled"}),  # bare decimal
    ],
)
def test_throttled_decoded_to_named_flags(text, value, flags):
    assert parse_throttled(text) == value
    assert decode_throttled(value) == flags


def test_undocumented_bits_ignored():
    assert decode_throttled(0x100000 | 0x10 | 0x1) == {"under_voltage"}


@pytest.mark.parametrize("text", ["", "throttled=", "throttled=zz", "temp=0x5", "error=1 error_msg=..."])
def test_garbage_throttled_text_raises_valueerror(text):
    with pytest.raises(ValueError):
        parse_throttled(text)


# ------------------------------------------------------------------ full reads


def test_full_read_on_a_fake_pi(tmp_path):
    run = runner_saying("throttled=0x50005\n")
    usage = disk()
    h = PiHealth(fake_pi(tmp_path), data_dir="data", runner=run, disk_usage=usage)
    r = h.read()
    assert r.status == "ok" and r.errors == {}
    assert r.cpu_temp_c == pytest.approx(48.312)
    assert r.throttled == 0x50005
    assert r.under_voltage is True
    assert r.mem_available_kb == 512340 and r.mem_total_kb == 944268
    assert r.disk_free_kb == 20 * 2**20 and r.disk_total_kb == 32 * 2**20
    assert r.uptime_s == pytest.approx(3723.45)
    assert r.load_avg == (0.52, 0.31, 0.20)
    assert run.calls == [("vcgencmd", "get_throttled")]
    assert usage.seen == [tmp_path / "data"]


def test_health_fields_use_declared_names_and_types(tmp_path):
    h = PiHealth(fake_pi(tmp_path), runner=runner_saying("throttled=0x0"), disk_usage=disk())
    fields = h.as_health_fields()
    declared = {name: typ for name, typ in HEALTH_FIELDS.values()}
    assert set(fields) == {"cpu_temp_c", "throttled", "mem_free_kb", "disk_free_kb", "uptime_s"}
    for name, value in fields.items():
        assert type(value) is declared[name], name
    assert fields == {"cpu_temp_c": 48.3, "throttled": 0, "mem_free_kb": 512340,
                      "disk_free_kb": 20 * 2**20, "uptime_s": 3723}


def test_health_fields_encode_as_a_health_record(tmp_path):
    from stratoecho.wire.common import Kind
    from stratoecho.wire.content import decode_content, encode_content

    fields = PiHealth(fake_pi(tmp_path), runner=runner_saying("throttled=0x50000"),
                      disk_usage=disk()).as_health_fields()
    assert decode_content(Kind.HEALTH, encode_content(Kind.HEALTH, fields)) == fields


def test_missing_files_give_none_and_a_status(tmp_path):
    root = fake_pi(tmp_path, temp=None, meminfo=None)
    h = PiHealth(root, runner=runner_saying("throttled=0x0"), disk_usage=disk())
    r = h.read()
    assert r.status == "partial"
    assert r.cpu_temp_c is None and r.mem_available_kb is None and r.mem_total_kb is None
    assert set(r.errors) == {"cpu_temp", "memory"}
    assert r.errors["cpu_temp"].startswith("missing")
    assert r.uptime_s is not None and r.throttled == 0
    assert "cpu_temp_c" not in r.as_health_fields() and "mem_free_kb" not in r.as_health_fields()
    h.read()
    assert h.reads == 2 and h.failures == {"cpu_temp": 2, "memory": 2}


@pytest.mark.parametrize(
    "kwargs, source",
    [
        ({"temp": "not a number\n"}, "cpu_temp"),
        ({"temp": "200000\n"}, "cpu_temp"),  # 200 degC: a broken sensor
        ({"meminfo": "MemTotal: 1 kB\n"}, "memory"),
        ({"uptime": ""}, "uptime"),
        ({"loadavg": "0.1\n"}, "load"),
    ],
)
def test_garbled_files_are_per_source_errors(tmp_path, kwargs, source):
    r = PiHealth(fake_pi(tmp_path, **kwargs), runner=runner_saying("throttled=0x0"), disk_usage=disk()).read()
    assert set(r.errors) == {source}
    assert r.status == "partial"


def _raise(exc):
    def run(argv):
        raise exc
    return run


@pytest.mark.parametrize(
    "runner, error",
    [
        (_raise(FileNotFoundError(2, "No such file", "vcgencmd")), "missing"),
        (_raise(subprocess.CalledProcessError(255, ["vcgencmd"])), "exit status 255"),
        (_raise(subprocess.TimeoutExpired(["vcgencmd"], 2)), "timeout"),
        (runner_saying("VCHI initialization failed\n"), "ValueError"),
    ],
)
def test_firmware_failures_leave_throttled_none(tmp_path, runner, error):
    r = PiHealth(fake_pi(tmp_path), runner=runner, disk_usage=disk()).read()
    assert r.throttled is None and r.throttle_flags is None and r.under_voltage is None
    assert error in r.errors["throttled"]
    assert "throttled" not in r.as_health_fields()


def test_empty_root_never_raises(tmp_path):
    """A bare host: nothing under root, no vcgencmd, no data dir."""
    r = PiHealth(tmp_path / "nothing", runner=_raise(FileNotFoundError(2, "x", "vcgencmd"))).read()
    assert r.status == "unavailable"
    assert set(r.errors) == set(SOURCES)
    assert r.as_health_fields() == {}


def test_real_host_never_raises():
    """Whatever this machine is (a laptop, CI, a Pi), read() answers with a status."""
    r = PiHealth("/", data_dir="/").read()
    assert isinstance(r, HealthReading)
    assert r.status in ("ok", "partial", "unavailable")
    assert r.disk_free_kb is not None  # every host has a root file system
