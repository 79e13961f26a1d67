"""How far the units in systemd/ shut their services in (issue 31, "trust nothing"), and that
the shutting in leaves each service what it needs (docs/deploy.md, "What the units allow").

* `systemd-analyze security --offline=yes` scores every unit file at an exposure of 2.0 or
  less (skipped where systemd-analyze is not installed).
* The payload unit lets through every device the payload's code and configuration open, each
  by its driver's name (DeviceAllow=) and its group, and nothing as broad as char-misc.
* The dashboard runs as a user of its own with no way to the ground's uplink key, and cannot
  take the receiver's state folder from it.
* The payload's notify / watchdog / stop contract is exactly what it was.
* MemoryDenyWriteExecute= does not break llama-cpp-python's ctypes callbacks (skipped on a
  kernel without PR_SET_MDWE or without llama-cpp-python).

The unit files are parsed with tests/test_systemd_units.py's reader: no systemd needed except
for the score.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from tests.test_clean_stop import Payload
from tests.test_systemd_units import ROOT, UNITS, ground_unit_config, load, value, values

PAYLOAD = "stratoecho-payload.service"
GROUND = "stratoecho-ground.service"
DASHBOARD = "stratoecho-dashboard.service"
ALL_UNITS = [PAYLOAD, GROUND, DASHBOARD]
MAX_EXPOSURE = 2.0
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")

# Where the ground's secrets go (the ground unit's comment, docs/deploy.md).
KEY_DIR = "/etc/stratoecho"
KEY_FILE = KEY_DIR + "/uplink.key"
STATE_DIR = "/var/lib/stratoecho"

# Every device the payload opens on a Pi: the paths its code and configuration name (as a
# pattern), the DeviceAllow= entries any one of which admits it, and the group that opens it.
# A device path that appears in payload/ or stratoecho/ and matches none of these fails
# test_every_device_path_in_the_payload_code_is_known: add it here and to the unit.
DEVICES: dict[str, tuple[tuple[str, ...], str]] = {
    r"/dev/i2c-\d+": (("char-i2c",), "i2c"),                       # smbus2: BME280s, INA219
    r"/dev/spidev\d+\.\d+": (("char-spi",), "spi"),                # spidev: the LoRa chip
    r"/dev/gpiochip\d+": (("char-gpiochip",), "gpio"),             # gpiozero on lgpio
    r"/dev/ttyAMA\d+": (("char-ttyAMA",), "dialout"),              # /dev/serial0, the PL011
    r"/dev/ttyS\d+": (("char-ttyS",), "dialout"),                  # /dev/serial0, the mini UART
    r"/dev/ttyUSB\d+": (("char-ttyUSB",), "dialout"),              # USB radios
    r"/dev/ttyACM\d+": (("char-ttyACM",), "dialout"),              # KISS TNCs
    r"/dev/video\d+": (("char-video4linux",), "video"),            # libcamera
    r"/dev/v4l-subdev\d+": (("char-video4linux",), "video"),       # libcamera (the sensor)
    r"/dev/media\d+": (("char-media",), "video"),                  # libcamera
    r"/dev/dma_heap/[\w,-]+": (("char-dma_heap",), "video"),       # libcamera's buffers
    r"/dev/vchiq": (("/dev/vchiq", "char-vchiq"), "video"),        # firmware camera, vcgencmd
    r"/dev/vcio": (("/dev/vcio",), "video"),                       # vcgencmd (mailbox)
}
# Names the code uses for the above: a symlink to one of them.
ALIASES = {"/dev/serial0": ("/dev/ttyAMA0", "/dev/ttyS0"), "/dev/serial1": ("/dev/ttyAMA0", "/dev/ttyS0")}
# DevicePolicy=closed lets these through by itself.
PSEUDO = {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"}
# What the payload's libraries open without the code naming the path.
LIBRARY_DEVICES = {
    "smbus2": ["/dev/i2c-1"],
    "spidev": ["/dev/spidev0.1"],
    "gpiozero": ["/dev/gpiochip0"],
    "serial": ["/dev/ttyAMA0", "/dev/ttyS0", "/dev/ttyUSB0", "/dev/ttyACM0"],
    "picamera2": ["/dev/video0", "/dev/v4l-subdev0", "/dev/media0", "/dev/dma_heap/linux,cma", "/dev/vchiq"],
    "vcgencmd": ["/dev/vchiq", "/dev/vcio"],
}


def device_entries(unit: dict) -> dict[str, str]:
    """DeviceAllow= as {device or class: access}."""
    out = {}
    for v in values(unit, "Service", "DeviceAllow"):
        name, _, access = v.partition(" ")
        out[name] = access.strip() or "rwm"
    return out


def admitted(path: str, unit: dict) -> tuple[bool, str]:
    """Whether the payload unit lets `path` through (device list and group), and why not."""
    for pattern, (entries, group) in DEVICES.items():
        if re.fullmatch(pattern, path):
            allowed = device_entries(unit)
            hits = [e for e in entries if e in allowed]
            if not hits:
                return False, f"{path}: none of {entries} in DeviceAllow="
            if any("r" not in allowed[e] or "w" not in allowed[e] for e in hits):
                return False, f"{path}: {hits} not read-write"
            if group not in value(unit, "Service", "SupplementaryGroups").split():
                return False, f"{path}: group {group} not in SupplementaryGroups="
            return True, ""
    return False, f"{path}: not a device this test knows (DEVICES)"


def sources(*folders: str) -> dict[Path, str]:
    return {p: p.read_text(encoding="utf-8") for f in folders for p in sorted((ROOT / f).rglob("*.py"))}


# --------------------------------------------------------------------------- the score


def exposure(path: Path) -> float:
    proc = subprocess.run([SYSTEMD_ANALYZE, "security", "--offline=yes", "--no-pager", str(path)],
                          capture_output=True, text=True, timeout=120)
    found = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", proc.stdout + proc.stderr)
    assert found, f"no overall exposure in systemd-analyze's answer:\n{proc.stdout}{proc.stderr}"
    return float(found.group(1))


@pytest.mark.skipif(SYSTEMD_ANALYZE is None,
                    reason="systemd-analyze is not installed here (apt install systemd); exposure not scored")
@pytest.mark.parametrize("name", ALL_UNITS)
def test_exposure_is_at_most_2(name):
    score = exposure(UNITS / name)
    assert score <= MAX_EXPOSURE, f"{name}: systemd-analyze security exposure {score} > {MAX_EXPOSURE}"
    # systemd's own threshold check agrees (it counts in tenths).
    proc = subprocess.run([SYSTEMD_ANALYZE, "security", "--offline=yes", "--no-pager",
                           f"--threshold={round(MAX_EXPOSURE * 10)}", str(UNITS / name)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed here")
def test_the_score_notices_a_loosened_unit(tmp_path):
    # The check above can fail: the payload unit without its system-call filter and namespaces
    # scores well over the limit.
    text = (UNITS / PAYLOAD).read_text()
    loose = re.sub(r"(?m)^(SystemCallFilter|RestrictNamespaces|ProtectProc|MemoryDenyWriteExecute|"
                   r"DevicePolicy|DeviceAllow|IPAddressDeny|RestrictAddressFamilies)=.*$", "", text)
    assert loose != text
    path = tmp_path / PAYLOAD
    path.write_text(loose)
    assert exposure(path) > MAX_EXPOSURE


# --------------------------------------------------------------------------- the payload's devices


def test_payload_device_policy_is_closed_and_narrow():
    u = load(PAYLOAD)
    assert value(u, "Service", "DevicePolicy") == "closed"
    assert values(u, "Service", "PrivateDevices") in ([], ["no"])  # it would hide the real devices
    allowed = device_entries(u)
    # Nothing that admits a whole family of unrelated devices, or a node's creation.
    for entry, access in allowed.items():
        assert not entry.startswith("block-"), entry
        assert entry not in {"char-misc", "char-*", "char-mem", "/dev/mem", "/dev/watchdog", "/dev/watchdog0"}, entry
        assert "m" not in access, f"{entry} {access}: mknod is never needed"
    # Each entry is one this test knows the reason for.
    known = {e for entries, _ in DEVICES.values() for e in entries}
    assert set(allowed) <= known, f"DeviceAllow= entries without a reason in DEVICES: {set(allowed) - known}"


def test_every_device_path_in_the_payload_code_is_known():
    named = set()
    for path, text in sources("payload", "stratoecho").items():
        named |= {(m, path.name) for m in re.findall(r"/dev/[A-Za-z][\w.,/{}-]*[\w}]", text)}
    assert named, "no /dev/ path found in payload/: the search is broken"
    u = load(PAYLOAD)
    for dev, where in sorted(named):
        # f-string fields and docstring placeholders: /dev/spidev{bus}.{device}, /dev/spidevB.D, /dev/i2c-N
        dev = re.sub(r"\{[^}]*\}", "0", dev)
        dev = re.sub(r"(BUS|B)\.(DEVICE|D)$", "0.0", dev).replace("-N", "-1")
        if dev in PSEUDO:
            continue
        for real in ALIASES.get(dev, (dev,)):
            ok, why = admitted(real, u)
            assert ok, f"{where} names {dev}: {why}"


def test_the_pi_configuration_opens_only_admitted_devices():
    cfg = tomllib.loads((ROOT / "config" / "payload.pi.toml").read_text())
    u = load(PAYLOAD)
    wanted = []
    for name, table in cfg.get("devices", {}).items():
        if "bus" in table:
            wanted.append((name, f"/dev/i2c-{table['bus']}"))
        if "port" in table:
            wanted.append((name, table["port"]))
    radio = cfg["radio"]
    if radio["kind"] in ("sx127x", "sx126x"):
        wanted.append(("radio", f"/dev/spidev{radio.get('spi_bus', 0)}.{radio.get('spi_device', 0)}"))
    if "serial_port" in radio:
        wanted.append(("radio", radio["serial_port"]))
    if any(k.endswith("_pin") for k in list(radio) + list(cfg.get("outputs", {}))):
        wanted.append(("pins", "/dev/gpiochip0"))
    if "camera" in cfg.get("devices", {}):
        wanted += [("camera", d) for d in LIBRARY_DEVICES["picamera2"]]
    wanted += [("health", d) for d in LIBRARY_DEVICES["vcgencmd"]]
    assert len(wanted) >= 6, wanted
    for what, dev in wanted:
        for real in ALIASES.get(dev, (dev,)):
            ok, why = admitted(real, u)
            assert ok, f"[{what}] in config/payload.pi.toml: {why}"


@pytest.mark.parametrize("library", sorted(LIBRARY_DEVICES))
def test_what_each_library_opens_is_admitted(library):
    code = " ".join(sources("payload", "stratoecho").values())
    used = re.search(rf"(import|from) {library}\b", code) or f'"{library}"' in code
    if not used:
        pytest.skip(f"the payload does not use {library}")
    u = load(PAYLOAD)
    for dev in LIBRARY_DEVICES[library]:
        ok, why = admitted(dev, u)
        assert ok, f"{library}: {why}"


def test_payload_has_no_ip_network_and_its_pi_configuration_needs_none():
    u = load(PAYLOAD)
    families = value(u, "Service", "RestrictAddressFamilies").split()
    assert "AF_UNIX" in families  # sd_notify, the journal, the persona worker
    assert "AF_NETLINK" in families  # libcamera's udev hotplug monitor
    assert not {"AF_INET", "AF_INET6", "AF_PACKET"} & set(families)
    assert value(u, "Service", "IPAddressDeny") == "any" and values(u, "Service", "IPAddressAllow") == []
    # So the shipped flight configuration must not need IP: no udp radio, no socket:// port.
    cfg = tomllib.loads((ROOT / "config" / "payload.pi.toml").read_text())
    assert cfg["radio"]["kind"] != "udp"
    ports = [cfg["radio"].get("serial_port", "")] + [t.get("port", "") for t in cfg.get("devices", {}).values()]
    assert not [p for p in ports if "://" in str(p)], ports
    # The unit's comment says how to fly the udp radio anyway.
    assert "IPAddressAllow=" in (UNITS / PAYLOAD).read_text()


def test_payload_proc_view_keeps_what_the_health_record_reads():
    u = load(PAYLOAD)
    assert value(u, "Service", "ProtectProc") == "invisible"  # its worker is its own user: still visible
    system_wide = set()
    for text in sources("payload").values():
        system_wide |= {p for p in re.findall(r"/proc/(\w+)", text) if p not in {"self", "PID"}}
    assert {"meminfo", "uptime", "loadavg"} <= system_wide, system_wide  # payload/parts/pi_health.py
    # ProcSubset=pid would hide them.
    assert values(u, "Service", "ProcSubset") in ([], ["all"])


@pytest.mark.parametrize("name", [GROUND, DASHBOARD])
def test_ground_units_read_no_system_wide_proc_files(name):
    # They run with ProcSubset=pid: only /proc/PID/... is there.
    assert value(load(name), "Service", "ProcSubset") == "pid"
    for path, text in sources("groundstation").items():
        found = [p for p in re.findall(r"/proc/(\w+)", text) if p not in {"self", "PID", "thread-self"}]
        assert not found, f"{path}: reads /proc/{found[0]}, which ProcSubset=pid hides"


def test_payload_keeps_its_clock_through_the_system_call_filter():
    u = load(PAYLOAD)
    filters = values(u, "Service", "SystemCallFilter")
    assert filters[0] == "@system-service"
    # The last word on @clock allows it again (the GPS sets the clock: payload/parts/gps/system_time.py).
    assert [f for f in filters if "@clock" in f][-1] == "@clock"
    assert "CAP_SYS_TIME" in value(u, "Service", "CapabilityBoundingSet").split()
    assert "clock_settime" in (ROOT / "payload" / "parts" / "gps" / "system_time.py").read_text()


@pytest.mark.parametrize("name", [PAYLOAD, GROUND])
def test_lgpio_has_a_writable_working_directory(name):
    # Importing lgpio makes the FIFO for GPIO edge callbacks in $LG_WD (default: the working
    # directory, read-only under ProtectSystem=strict) and chdirs there.
    u = load(name)
    env = dict(w.split("=", 1) for v in values(u, "Service", "Environment") for w in v.split())
    runtime = "/run/" + value(u, "Service", "RuntimeDirectory")
    assert env.get("LG_WD") == runtime
    assert value(u, "Service", "ProtectSystem") == "strict"
    # After lgpio's chdir, a relative path would point elsewhere: the unit uses none.
    assert all(a.startswith(("/", "-")) or "/" not in a for a in value(u, "Service", "ExecStart").split()[1:])


# --------------------------------------------------------------------------- the contract


def test_payload_notify_watchdog_and_stop_contract_is_unchanged():
    # What payload/watchdog.py, the bench's supervisor (sim/bench/run/supervisor.py), docs/deploy.md and
    # the soak hold the daemon to. Hardening must not move any of it.
    u = load(PAYLOAD)
    expected_service = {
        "Type": "notify", "NotifyAccess": "main", "TimeoutStartSec": "300", "WatchdogSec": "30s",
        "Restart": "always", "RestartSec": "5s", "KillMode": "mixed", "KillSignal": "SIGTERM",
        "TimeoutStopSec": "20",
    }
    for key, want in expected_service.items():
        assert values(u, "Service", key) == [want], key
    for key, want in {"StartLimitIntervalSec": "15min", "StartLimitBurst": "5", "StartLimitAction": "reboot"}.items():
        assert values(u, "Unit", key) == [want], key
    for key in ("TimeoutSec", "TimeoutAbortSec", "WatchdogSignal", "RuntimeMaxSec", "FinalKillSignal"):
        assert values(u, "Service", key) == [], key

    from sim.bench.run.supervisor import parse_unit

    contract = parse_unit(UNITS / PAYLOAD)
    assert contract.watchdog_s == 30 and contract.timeout_start_s == 300 and contract.restart_s == 5


# --------------------------------------------------------------------------- users and the key


def test_dashboard_runs_as_its_own_user_in_the_receivers_group():
    ground, dash = load(GROUND), load(DASHBOARD)
    assert value(dash, "Service", "User") != value(ground, "Service", "User")
    assert value(dash, "Service", "User") not in {"root", "0", value(ground, "Service", "User")}
    assert values(dash, "Service", "DynamicUser") in ([], ["no"])  # a fixed user, made as documented
    # It shares the receiver's group, for the database.
    groups = [value(dash, "Service", "Group")] + " ".join(values(dash, "Service", "SupplementaryGroups")).split()
    assert value(ground, "Service", "Group") in groups
    # No StateDirectory= of the receiver's: systemd would chown the folder (and, when its owner
    # differs, all in it: the key's counter state too) to the dashboard's user at each start.
    assert values(dash, "Service", "StateDirectory") == []
    assert STATE_DIR in value(dash, "Service", "ReadWritePaths").split()
    # And the useradd line the comments give makes that user in that group.
    for name in (GROUND, DASHBOARD):
        text = (UNITS / name).read_text()
        assert re.search(r"useradd --system[^\n]*\n#?[^\n]*--gid stratoecho stratoecho-web", text), name
    assert "--gid stratoecho stratoecho-web" in (ROOT / "docs" / "deploy.md").read_text()


def _under(path: str, folders: list[str]) -> bool:
    return any(path == f or path.startswith(f.rstrip("/") + "/") for f in folders)


def test_dashboard_has_no_path_to_the_uplink_key():
    ground, dash = load(GROUND), load(DASHBOARD)
    hidden = [p.lstrip("-") for v in values(dash, "Service", "InaccessiblePaths") for p in v.split()]
    assert _under(KEY_FILE, hidden), hidden
    # Where the ground's unit says the key goes, and where its ExecStart points once it has one.
    ground_text = (UNITS / GROUND).read_text()
    assert KEY_FILE in ground_text
    key_args = re.findall(r"--(?:uplink-key|flight-key|downlink-key|mqtt-password-file)[= ](\S+)",
                          value(ground, "Service", "ExecStart"))
    config = ground_unit_config()  # and in the configuration file it names
    keys = [config.keys.flight_key, config.keys.downlink_key, config.network.password_file,
            *config.keys.relayers.values(), *config.keys.follow.values(), *config.keys.follow_flight_keys.values()]
    key_args += [str(k) for k in keys if k is not None]
    assert KEY_FILE in key_args, "the ground's configuration no longer names the flight key"
    for key in key_args:
        assert _under(key, hidden), f"the ground's {key} is visible to the dashboard"
        assert not _under(key, [STATE_DIR]), f"{key}: the dashboard's group may list {STATE_DIR}"
    # Nothing in the dashboard's unit reopens that folder, or gives it the key itself: the one file
    # it is handed from there is the station's configuration, which names the key but is not one.
    assert values(dash, "Service", "LoadCredential") == [f"ground.toml:{KEY_DIR}/ground.toml"]
    assert f"{KEY_DIR}/ground.toml" not in key_args
    for key in ("ReadWritePaths", "ReadOnlyPaths", "BindPaths", "BindReadOnlyPaths",
                "SetCredential", "EnvironmentFile", "WorkingDirectory"):
        for v in values(dash, "Service", key):
            for p in re.split(r"[\s:]", v):
                assert not _under(p.lstrip("-+"), [KEY_DIR]), f"{key}={v}"
    assert not re.search(r"uplink-key|flight-key|downlink-key", value(dash, "Service", "ExecStart"))
    assert value(dash, "Service", "PrivateUsers") == "yes"


def test_receivers_state_folder_cannot_be_taken_over_from_the_dashboard():
    ground = load(GROUND)
    mode = int(value(ground, "Service", "StateDirectoryMode"), 8)
    assert mode & 0o1000, "sticky: only a file's owner may delete or replace it (the counter state)"
    assert mode & 0o2000, "setgid: what either service makes there is in the shared group"
    assert mode & 0o070 == 0o070 and mode & 0o007 == 0, f"{mode:o}: the group's, no one else's"
    for name in (GROUND, DASHBOARD):  # what they make is their own (the lock files too) ...
        assert value(load(name), "Service", "UMask") == "0077", name
    # ... but for the database, made group-writable once the receiver has it open (SQLite never
    # creates it so): by name, so never the counter state (DB.uplink.json) or its lock.
    post = " ".join(values(ground, "Service", "ExecStartPost"))
    assert "g+rw" in post and STATE_DIR in post and "-user " + value(ground, "Service", "User") in post
    names = re.findall(r"-name (\S+)", post)
    assert sorted(names) == ["*.db", "*.db-shm", "*.db-wal"], names
    for state_file in ("ground.db.uplink.json", "ground.db.uplink.json.lock", "ground.db.uplink.json.x.tmp"):
        assert not any(fnmatch.fnmatchcase(state_file, n) for n in names), state_file
    assert "-maxdepth 1" in post and post.startswith("-")  # never fails the receiver


@pytest.mark.parametrize("name", ALL_UNITS)
def test_every_unit_is_filtered_and_namespaced(name):
    u = load(name)
    for key, want in {"NoNewPrivileges": "yes", "SystemCallArchitectures": "native", "RestrictNamespaces": "yes",
                      "ProtectHostname": "yes", "RestrictRealtime": "yes", "LockPersonality": "yes",
                      "PrivateMounts": "yes", "RemoveIPC": "yes", "MemoryDenyWriteExecute": "yes",
                      "ProtectProc": "invisible"}.items():
        assert value(u, "Service", key) == want, f"{name}: {key}"
    filters = values(u, "Service", "SystemCallFilter")
    assert filters[0] == "@system-service" and "~@privileged @resources" in filters, filters
    if name != PAYLOAD:  # the payload sets the clock
        assert value(u, "Service", "ProtectClock") == "yes"
        assert value(u, "Service", "CapabilityBoundingSet") == ""


# --------------------------------------------------------------------------- MemoryDenyWriteExecute


MDWE_PROBE = textwrap.dedent("""
    import ctypes, mmap, os, sys


    def main():
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN (Linux 6.3)
            print("NO-MDWE", os.strerror(ctypes.get_errno()))
            return
        try:  # the guard is on: a writable and executable page is refused
            mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
            sys.exit("W+X mapping allowed under PR_SET_MDWE")
        except OSError:
            pass
        import llama_cpp  # sets its log callback, a ctypes closure, at import
        llama_cpp.llama_log_set(llama_cpp.llama_log_callback(lambda level, text, data: None), ctypes.c_void_p(0))
        cmp = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int))
        arr = (ctypes.c_int * 4)(3, 1, 4, 2)
        libc.qsort(arr, 4, ctypes.sizeof(ctypes.c_int), cmp(lambda a, b: a[0] - b[0]))  # C calls Python
        assert list(arr) == [1, 2, 3, 4], list(arr)
        # The persona worker: a real model loaded and run in a child, which inherits MDWE.
        from payload.persona.worker import PersonaWorker
        from stratoecho.bundle import load_bundle
        bundle = load_bundle(sys.argv[1])
        worker = PersonaWorker(bundle, n_ctx=128, n_threads=1, timeout_s=60)
        try:
            gen = worker.generate(bundle.render_prompt([{"role": "user", "content": "Cold?"}]), max_tokens=4, seed=1)
            assert gen.tokens > 0
        finally:
            worker.close()
        print("MDWE-OK")


    if __name__ == "__main__":  # the worker is spawned: it imports this file again
        main()
""")



def test_llama_cpp_callbacks_and_the_persona_worker_run_under_memory_deny_write_execute(tiny_bundle, tmp_path):
    pytest.importorskip("llama_cpp")
    probe = tmp_path / "mdwe_probe.py"
    probe.write_text(MDWE_PROBE)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(probe), str(tiny_bundle)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env=env)
    if "NO-MDWE" in proc.stdout:
        pytest.skip(f"this kernel has no PR_SET_MDWE: {proc.stdout.strip()}")
    assert proc.returncode == 0 and "MDWE-OK" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-4000:]


# --------------------------------------------------------------------------- the system-call filter

SECCOMP_RUN = textwrap.dedent("""
    # Runs argv[2:] under a unit's SystemCallFilter= allow list (names in argv[1], everything else
    # EPERM) and MemoryDenyWriteExecute='s rules, built with libseccomp as systemd 252 builds them.
    import ctypes, os, sys

    lib = ctypes.CDLL("libseccomp.so.2")
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]


    class Cmp(ctypes.Structure):
        _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("a", ctypes.c_uint64), ("b", ctypes.c_uint64)]


    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                           ctypes.POINTER(Cmp)]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    ALLOW, EPERM, MASKED_EQ = 0x7fff0000, 0x00050001, 7
    allow = lib.seccomp_init(EPERM)
    for name in open(sys.argv[1]).read().split():
        nr = lib.seccomp_syscall_resolve_name(name.encode())
        if nr >= 0:
            assert lib.seccomp_rule_add_array(allow, ALLOW, nr, 0, None) == 0, name
    mdwe = lib.seccomp_init(ALLOW)
    for name, mask in (("mmap", 0x6), ("mprotect", 0x4), ("pkey_mprotect", 0x4), ("shmat", 0o100000)):
        nr = lib.seccomp_syscall_resolve_name(name.encode())
        if nr >= 0:  # refused when (argument 2 & mask) == mask: W+X maps, making memory executable
            assert lib.seccomp_rule_add_array(mdwe, EPERM, nr, 1, (Cmp * 1)(Cmp(2, MASKED_EQ, mask, mask))) == 0
    assert ctypes.CDLL(None).prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS, as NoNewPrivileges=yes
    assert lib.seccomp_load(mdwe) == 0 and lib.seccomp_load(allow) == 0
    os.execv(sys.argv[2], sys.argv[2:])
""")


def syscall_group(name: str, seen: frozenset = frozenset()) -> set[str]:
    """The system calls of `@group` as this systemd-analyze lists them, nested groups expanded."""
    if not name.startswith("@"):
        return {name}
    out = subprocess.run([SYSTEMD_ANALYZE, "syscall-filter", "--no-pager", name], capture_output=True, text=True,
                         timeout=60).stdout
    calls = set()
    for line in out.splitlines()[1:]:
        word = line.strip().split(" ")[0] if line.strip() else ""
        if word and not word.startswith("#") and word not in seen:
            calls |= syscall_group(word, seen | {name})
    return calls


def allowed_syscalls(unit: dict) -> set[str]:
    """What the unit's SystemCallFilter= lines allow, applied in order as systemd does (an allow
    list starts from @default)."""
    lines = values(unit, "Service", "SystemCallFilter")
    assert lines and not lines[0].startswith("~"), "not an allow list"
    allowed = syscall_group("@default")
    for line in lines:
        deny = line.startswith("~")
        for word in line.lstrip("~").split():
            allowed = allowed - syscall_group(word) if deny else allowed | syscall_group(word)
    return allowed


def _libseccomp() -> bool:
    try:
        import ctypes

        ctypes.CDLL("libseccomp.so.2")
        return True
    except OSError:
        return False


@pytest.mark.skipif(SYSTEMD_ANALYZE is None or not _libseccomp(),
                    reason="needs systemd-analyze (the groups) and libseccomp (apt install libseccomp2)")
def test_a_bench_flight_with_its_persona_runs_under_the_payload_units_filter(tiny_bundle, tmp_path):
    # The payload's own code under the unit's system-call allow list and MemoryDenyWriteExecute:
    # store, queue, persona worker (llama-cpp-python), radio, clean stop. Not the Pi's drivers
    # (no I2C, SPI or camera here), and the bench's UDP radio stands in for the real one.
    u = load(PAYLOAD)
    allowed = allowed_syscalls(u)
    assert {"clock_settime", "ioctl", "memfd_create"} <= allowed and not {"setuid", "mount", "reboot"} & allowed
    names = tmp_path / "allowed.txt"
    names.write_text("\n".join(sorted(allowed)))
    runner = tmp_path / "seccomp_run.py"
    runner.write_text(SECCOMP_RUN)
    # Musings every flight minute, and the test waits for one however slowly this machine
    # generates it: what is tested is the filter, not how fast the CPU keeps up with 60x.
    config = tmp_path / "payload.toml"
    config.write_text("[schedule]\nfirst_musing_s = 30.0\nmusing_s = 60.0\n")
    payload = Payload(tmp_path, tiny_bundle, config, speedup=60.0, under=(sys.executable, str(runner), str(names)))
    try:
        payload.wait_for("musing", timeout_s=240.0)
    finally:
        rc, _ = payload.stop()
    log = "".join(payload.lines)
    assert rc == 0, log[-4000:]
    assert "stopped" in payload.events(), log[-4000:]
    assert "Operation not permitted" not in log, log[-4000:]
