"""The unit files in systemd/: systemd itself checks their syntax, and these tests check
the flight decisions written in them (docs/deploy.md explains each one).

`systemd-analyze verify` loads a unit the way PID 1 would, offline. It reports an unknown
directive or an unparsable value as a warning and still exits 0, so `verify` below counts
every message that names the unit as a failure; `test_verify_catches_planted_mistakes`
proves that a typo does fail. The copies verified point ExecStart at this interpreter
(verify rejects a command that does not exist here) and run as the current user and
group (systemd 252 does not look users up during verify, a later one might); nothing else
is changed, so what passes here is the file that ships.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "systemd"
PAYLOAD = "stratoecho-payload.service"
GROUND = "stratoecho-ground.service"
INSTALLED_PYTHON = "/opt/stratoecho/.venv/bin/python"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")

needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed here (apt install systemd); syntax unchecked")


# --------------------------------------------------------------------------- helpers


def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """Sections -> (key, value) in order; repeated keys (Environment=) stay repeated."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"directive outside a section: {line!r}"
        key, _, value = line.partition("=")
        current.append((key.strip(), value.strip()))
    return sections


def values(unit: dict, section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def value(unit: dict, section: str, key: str) -> str:
    found = values(unit, section, key)
    assert found, f"[{section}] has no {key}="
    return found[-1]  # systemd: the last assignment wins


def seconds(span: str) -> float:
    """A systemd time span ('30s', '15min', '300', '1min 30s') in seconds."""
    units = {"": 1, "s": 1, "sec": 1, "ms": 1e-3, "m": 60, "min": 60, "h": 3600, "hr": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", span)
    assert parts and "".join(n + u for n, u in parts) == span.replace(" ", ""), f"cannot read time span {span!r}"
    return sum(float(n) * units[u] for n, u in parts)


def load(name: str) -> dict:
    return parse_unit((UNITS / name).read_text())


def ground_unit_config():
    """The station configuration the shipped ground unit runs: its ExecStart parsed as `listen`
    parses it, the --config file it names being the shipped config/ground.toml, which the unit's
    comment installs there."""
    from groundstation.__main__ import build_parser
    from groundstation.config import ground_config

    text = (UNITS / GROUND).read_text()
    argv = value(parse_unit(text), "Service", "ExecStart").split("-m groundstation ", 1)[1].split()
    args = build_parser().parse_args(argv)
    assert args.config is not None, "the ground unit names no --config file"
    assert re.search(rf"install .*config/ground\.toml {re.escape(str(args.config))}$", text, re.M), \
        f"the unit's comment does not install config/ground.toml as {args.config}"
    args.config = ROOT / "config" / "ground.toml"
    return ground_config(args)


def verifiable_copy(name: str, directory: Path, edit=lambda text: text) -> Path:
    """The unit as shipped, made loadable on this machine (see the module docstring)."""
    text = (UNITS / name).read_text()
    assert INSTALLED_PYTHON in text, f"{name}: ExecStart no longer uses {INSTALLED_PYTHON}; update this test"
    text = text.replace(INSTALLED_PYTHON, sys.executable)
    text = re.sub(r"(?m)^User=.*$", f"User={pwd.getpwuid(os.getuid()).pw_name}", text)
    text = re.sub(r"(?m)^Group=.*$", f"Group={grp.getgrgid(os.getgid()).gr_name}", text)
    path = directory / name
    path.write_text(edit(text))
    return path


def verify(path: Path) -> tuple[int, list[str]]:
    """Exit status and every message about this unit (file:line warnings included)."""
    proc = subprocess.run([SYSTEMD_ANALYZE, "verify", "--man=no", str(path)],
                          capture_output=True, text=True, timeout=60)
    lines = (proc.stdout + proc.stderr).splitlines()
    return proc.returncode, [ln for ln in lines if path.name in ln]


# --------------------------------------------------------------------------- systemd's verdict


@needs_systemd_analyze
@pytest.mark.parametrize("name", [PAYLOAD, GROUND, "stratoecho-dashboard.service"])
def test_units_pass_systemd_analyze_verify(name, tmp_path):
    rc, complaints = verify(verifiable_copy(name, tmp_path))
    assert rc == 0 and complaints == [], complaints


@needs_systemd_analyze
@pytest.mark.parametrize("edit, expected", [
    (lambda t: t.replace("WatchdogSec=30s", "WatchdgSec=30s"), "Unknown key"),
    (lambda t: t.replace("ProtectSystem=strict", "ProtectSytem=strict"), "Unknown key"),
    (lambda t: t.replace("WatchdogSec=30s", "WatchdogSec=thirty"), "Failed to parse"),
    (lambda t: t.replace("Restart=always", "Restart=allways"), "Failed to parse"),
    (lambda t: t.replace("[Service]", "[Servce]"), "Unknown section"),
], ids=["misspelt-key", "misspelt-hardening", "bad-time-span", "bad-enum", "misspelt-section"])
def test_verify_catches_planted_mistakes(edit, expected, tmp_path):
    shipped = (UNITS / PAYLOAD).read_text()
    assert edit(shipped) != shipped, "the mistake was not planted: the unit changed under this test"
    planted = verifiable_copy(PAYLOAD, tmp_path, edit)
    rc, complaints = verify(planted)
    assert rc != 0 or complaints, "systemd-analyze accepted a unit with a planted mistake"
    assert any(expected.lower() in c.lower() for c in complaints), complaints


@needs_systemd_analyze
def test_verify_catches_a_missing_executable(tmp_path):
    # Why the copies are rewritten: the shipped path does not exist on this machine.
    path = tmp_path / PAYLOAD
    path.write_text((UNITS / PAYLOAD).read_text().replace(INSTALLED_PYTHON, "/nonexistent/python"))
    rc, complaints = verify(path)
    assert rc != 0 and any("not executable" in c for c in complaints), complaints


# --------------------------------------------------------------------------- flight decisions


def test_payload_is_a_watched_notify_service():
    u = load(PAYLOAD)
    assert value(u, "Service", "Type") == "notify"
    assert value(u, "Service", "NotifyAccess") == "main"  # not the persona worker
    watchdog_s = seconds(value(u, "Service", "WatchdogSec"))
    # Longer than one tick of the half-interval feed loop plus a slow fsync, short enough
    # that a hung daemon is back within a minute.
    assert 10 <= watchdog_s <= 60
    assert value(u, "Service", "Restart") == "always"
    assert seconds(value(u, "Service", "RestartSec")) > 0
    assert "faulthandler" in " ".join(values(u, "Service", "Environment")).lower()


def test_payload_start_timeout_covers_loading_the_model():
    persona_timeout = tomllib.loads((ROOT / "config" / "payload.pi.toml").read_text())["persona"]["timeout_s"]
    assert seconds(value(load(PAYLOAD), "Service", "TimeoutStartSec")) > persona_timeout


def test_payload_start_limit_reboots_instead_of_giving_up():
    u = load(PAYLOAD)
    # In [Unit]: systemd ignores (with a warning) the old [Service] spellings.
    interval = seconds(value(u, "Unit", "StartLimitIntervalSec"))
    burst = int(value(u, "Unit", "StartLimitBurst"))
    assert value(u, "Unit", "StartLimitAction") in {"reboot", "reboot-force"}
    # The limit can trip at all only if `burst` restarts fit in the interval.
    assert burst * seconds(value(u, "Service", "RestartSec")) < interval
    assert values(u, "Service", "StartLimitBurst") == [] and values(u, "Service", "StartLimitIntervalSec") == []


def test_payload_hardening():
    u = load(PAYLOAD)
    expected = {
        "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
        "ProtectKernelTunables": "yes", "ProtectControlGroups": "yes", "OOMPolicy": "continue",
    }
    for key, want in expected.items():
        assert value(u, "Service", key) == want, key
    # The one writable place is the data partition the unit waits for.
    assert value(u, "Service", "ReadWritePaths").split() == value(u, "Unit", "RequiresMountsFor").split() \
        == ["/var/lib/stratoecho"]
    families = value(u, "Service", "RestrictAddressFamilies").split()
    assert "AF_UNIX" in families  # sd_notify itself; no IP at all: tests/test_systemd_hardening.py
    assert value(u, "Service", "MemoryMax")
    assert int(value(u, "Service", "OOMScoreAdjust")) > -1000  # never unkillable


def test_payload_keeps_its_clock_and_its_devices():
    u = load(PAYLOAD)
    assert "CAP_SYS_TIME" in value(u, "Service", "AmbientCapabilities").split()
    assert "CAP_SYS_TIME" in value(u, "Service", "CapabilityBoundingSet").split()
    assert values(u, "Service", "ProtectClock") in ([], ["no"])  # would forbid setting the clock
    assert values(u, "Service", "PrivateDevices") in ([], ["no"])  # would hide /dev/serial0, i2c, camera
    # Closed to what is listed; that the list holds every device the code opens:
    # tests/test_systemd_hardening.py
    assert value(u, "Service", "DevicePolicy") == "closed" and values(u, "Service", "DeviceAllow")
    # spi: the Pi configuration's radio is an SX127x on /dev/spidev0.1
    assert {"dialout", "i2c", "spi", "gpio", "video"} <= set(value(u, "Service", "SupplementaryGroups").split())


def test_ground_unit_type_matches_what_the_ground_station_does():
    u = load(GROUND)
    ground_src = " ".join(p.read_text() for p in (ROOT / "groundstation").rglob("*.py"))
    speaks_notify = "NOTIFY_SOCKET" in ground_src or "SystemdNotifier" in ground_src
    # Type=notify without READY=1 would be killed at TimeoutStartSec, restart, forever.
    assert value(u, "Service", "Type") == ("notify" if speaks_notify else "simple")
    assert value(u, "Service", "Restart") == "always"
    assert value(u, "Unit", "StartLimitIntervalSec") == "0"
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "ProtectKernelTunables", "ProtectControlGroups"):
        assert value(u, "Service", key) == "yes", key
    assert value(u, "Service", "ProtectSystem") == "strict"
    db = str(ground_unit_config().database.path)  # in the file the unit names
    assert db.startswith("/var/lib/" + value(u, "Service", "StateDirectory") + "/")


def test_time_span_reader():
    assert seconds("30s") == 30 and seconds("15min") == 900 and seconds("300") == 300
    assert seconds("1min 30s") == 90
    with pytest.raises(AssertionError):
        seconds("thirty")


def test_ground_units_hold_what_their_caps_need():
    # The dashboard's caps (server.Limits) must fit inside the unit's limits with room to
    # spare: a connection is a thread and a socket, its request or event stream a reader of <= 3 files.
    from groundstation.web.limits import Limits

    limits = Limits()
    dashboard = load("stratoecho-dashboard.service")
    nofile = int(value(dashboard, "Service", "LimitNOFILE"))
    tasks = int(value(dashboard, "Service", "TasksMax"))
    most = limits.connections + limits.operator_reserve + limits.local_reserve  # the operator's and the station's past it
    assert nofile >= 1.5 * (most * (1 + 3) + 64)  # event streams are connections too
    assert tasks >= 1.5 * (most + 16)
    assert limits.client_connections < limits.connections and limits.client_streams < limits.streams
    ground = load(GROUND)
    assert int(value(ground, "Service", "LimitNOFILE")) > 1024
    assert 0 < int(value(ground, "Service", "TasksMax")) < 1000
