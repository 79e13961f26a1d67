"""`make pi-check`: the payload on the Pi's own architecture, under emulation (issue 42).

A Raspberry Pi OS Bookworm card is Debian bookworm for arm64 with the Pi's own packages on top,
so this builds that userland from Debian's packages (mmdebstrap), runs arm64 programs on this
machine with qemu-user (binfmt_misc, the F flag: the interpreter is opened once, so it works
inside the root), installs the project there as on a Pi, and then:

1. **Greedy tokens**: the persona's model, asked the same prompt at temperature 0 by llama.cpp's
   Arm code paths in the root and by its x86-64 ones here: the same tokens, or the first place
   they part.
2. **The flight**: `sim fly` with `config/payload.pi.toml` and the persona, every process of the
   bench arm64 Python under qemu, for `--minutes` flight minutes on the lockstep clock: the
   musings made by the Arm build and every `$$` line checked against a stock gateway's rules
   (the flight report's `gateway`).
3. **Memory**: the payload and its persona worker sampled while they fly (VmRSS and USS, the
   pages only they hold), against a Zero 2 W's 512 MB. qemu-user adds its own code cache and
   heap to every process, so these are an upper bound; the same flight flown natively here beside
   it gives the same code's and model's figure, the estimate for a Pi.

Time under emulation is not a Pi's: the musing times it prints are qemu's; the bench's board
table (`make bench`, "Pi" rows) predicts a Pi's. Needs root (chroot, mounts, binfmt_misc) and
Debian's and PyPI's registries; the root is kept in `build/pi-check/` and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

REPO = Path(__file__).resolve().parents[3]
SUITE, ARCH = "bookworm", "arm64"
# The Pi OS userland's base, what a venv and the payload's compiled dependencies need (spidev has no
# arm64 wheel), and systemd for the units (issue 42, item 4).
ROOT_PACKAGES = ("python3", "python3-venv", "python3-dev", "gcc", "libc6-dev", "libgomp1", "ca-certificates",
                 "systemd", "systemd-sysv", "dbus", "procps", "git")
BINFMT = Path("/proc/sys/fs/binfmt_misc")
QEMU_CONF = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")  # Debian's qemu-user-static: interpreter and F flag
ZERO_2W_MB = 512
PROMPT = "The balloon is twelve kilometres up and the sky"
TOKENS = 24
# The bench's hang limit (120 wall seconds holding its clock's turn) counts wall time, and under
# qemu-user every instruction is emulated: a fresh machine's check failed at it with two builds
# beside it. Ten times the limit, as emulation is roughly that much slower: a real hang still ends it.
EMULATED_HANG_S = 1200.0
PROJECT = "/opt/stratoecho"  # where docs/deploy.md puts the project on a Pi
GREEDY = """
import json, sys
from llama_cpp import Llama
m = Llama(model_path=sys.argv[1], n_ctx=256, seed=0, n_threads=1, verbose=False)
out = []
for t in m.generate(m.tokenize(sys.argv[2].encode(), add_bos=True), top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0):
    if t == m.token_eos() or len(out) == int(sys.argv[3]):
        break
    out.append(t)
print(json.dumps({"tokens": out, "text": m.detokenize(out).decode("utf-8", "replace")}))
"""


class PiCheckError(RuntimeError):
    """A step that could not be done, and what to do about it."""


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    log.debug("run", cmd=" ".join(map(str, cmd))[:300])
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


def in_root(root: Path, shell: str, **kw) -> subprocess.CompletedProcess:
    """A shell command inside the arm64 root, from the project's folder there."""
    return run(["chroot", root, "/bin/sh", "-c", f"cd {PROJECT} 2>/dev/null; {shell}"], **kw)


# ------------------------------------------------------------------ the root


# program -> the Debian package that has it. mmdebstrap builds a foreign root only when arch-test
# says this machine can run its programs (qemu-aarch64-static registered with binfmt_misc below).
HOST_PACKAGES = {"mmdebstrap": "mmdebstrap", "arch-test": "arch-test", "qemu-aarch64-static": "qemu-user-static",
                 "systemd-nspawn": "systemd-container", "git": "git"}  # tests/test_host_packages.py holds calls to it


def ensure_host_packages(packages: dict[str, str] | None = None) -> None:
    """What this machine needs (program -> package; HOST_PACKAGES unless told), from Debian's registry
    when missing (a fresh machine of ours)."""
    missing = sorted({pkg for prog, pkg in (packages or HOST_PACKAGES).items() if shutil.which(prog) is None})
    if missing:
        log.info("installing from Debian", packages=missing)
        run(["apt-get", "update", "-qq"])
        run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def ensure_binfmt() -> None:
    """arm64 programs run here: Debian's qemu-aarch64 registered with binfmt_misc (F: fixed)."""
    if not (BINFMT / "register").exists():
        run(["mount", "-t", "binfmt_misc", "binfmt_misc", BINFMT])
    if not (BINFMT / "qemu-aarch64").exists():
        if not QEMU_CONF.exists():
            raise PiCheckError(f"{QEMU_CONF} missing: Debian's qemu-user-static puts it there")
        (BINFMT / "register").write_text(QEMU_CONF.read_text().strip())
    if "F" not in (BINFMT / "qemu-aarch64").read_text().split("flags:")[1].split("\n")[0]:
        raise PiCheckError("qemu-aarch64 is registered without the F flag: programs in the root would not find it")


def build_root(root: Path) -> None:
    """Debian bookworm arm64 from its registry (mmdebstrap), once: a tarball beside the root."""
    if (root / "usr/bin/python3").exists():
        log.info("root kept", root=str(root))
        return
    tar = root.with_suffix(".tar")
    if not tar.exists():
        log.info("building the arm64 root", suite=SUITE, packages=len(ROOT_PACKAGES), expect="about 5 minutes")
        tar.parent.mkdir(parents=True, exist_ok=True)
        part = tar.with_name(tar.name + ".part")  # renamed once whole: a cut build is never taken for one
        run(["mmdebstrap", f"--arch={ARCH}", "--variant=minbase", "--format=tar",
             "--include=" + ",".join(ROOT_PACKAGES), SUITE, part])
        part.rename(tar)
    root.mkdir(parents=True, exist_ok=True)
    run(["tar", "-C", root, "-xf", tar])


def trust_this_machines_registries(root: Path) -> None:
    """pip in the root reaches PyPI the way this machine does: its CA bundle (an egress proxy's
    CA among them), its pip configuration and its resolver."""
    for path in ("/etc/ssl/certs/ca-certificates.crt", "/etc/pip.conf", "/etc/resolv.conf"):
        if Path(path).exists():
            shutil.copyfile(path, root / path.lstrip("/"))


@contextmanager
def mounted(root: Path):
    """/proc, /dev, /dev/pts (the bench's GPS is a pseudo-terminal) and a fresh /tmp in the root."""
    done = []
    try:
        for src, dst, extra in (("/proc", "proc", ["--bind"]), ("/dev", "dev", ["--bind"]),
                                ("/dev/pts", "dev/pts", ["--bind"]), ("tmpfs", "tmp", ["-t", "tmpfs"])):
            run(["mount", *extra, src, root / dst])
            done.append(root / dst)
        yield
    finally:
        for path in reversed(done):
            subprocess.run(["umount", "-l", str(path)], check=False)


# The install script's steps that a Debian root can take. Left to this check: `packages` (Raspberry
# Pi OS's python3-picamera2 and python3-lgpio are not Debian's) and `payload` (its import check
# imports picamera2); the payload's pip packages go in below instead, as `payload` would install them.
SCRIPT_STEPS = "data,user,project,venv,llama,config,persona,key,watchdog,units"
PIP_EXTRA = ".venv/bin/pip install --quiet -e '.[payload,ground]' psutil"  # psutil: the bench world at real time


def install(root: Path, wheel: Path, key: Path, persona: Path | None) -> None:
    """The project as docs/deploy.md installs it, by its script (`deploy/install-pi.sh --root`):
    the committed checkout in /opt/stratoecho, its venv, the wheel `make pi-wheel` built, the
    configuration, key and persona, the watchdog and the unit; then the payload's packages."""
    cmd = [REPO / "deploy" / "install-pi.sh", "--root", root, "--create-groups", "--wheel", wheel, "--key", key,
           "--only", SCRIPT_STEPS]
    if persona is not None:
        cmd += ["--persona", persona]
    clone = root / PROJECT.lstrip("/")
    if (clone / ".git").exists():  # the script leaves a copy alone; a check flies this checkout's commit,
        # fetched from here by path: the root may have been cloned from a checkout since moved or removed
        git = ["git", "-C", clone, "-c", "safe.directory=*"]
        run([*git, "fetch", "--quiet", REPO, "HEAD"])
        run([*git, "reset", "--quiet", "--hard", "FETCH_HEAD"])
    log.info("install script", steps=SCRIPT_STEPS)
    run(cmd)
    log.info("payload packages", expect="minutes under emulation (spidev compiles)")
    in_root(root, PIP_EXTRA)


# ------------------------------------------------------------------ the checks


def greedy_tokens(root: Path, model: Path) -> dict:
    """The same prompt at temperature 0 through llama.cpp here (x86-64) and in the root (Arm)."""
    inside = Path("/tmp") / model.name
    shutil.copyfile(model, root / inside.relative_to("/"))
    native = run([sys.executable, "-c", GREEDY, model, PROMPT, str(TOKENS)], capture_output=True, text=True)
    t0 = time.monotonic()
    arm = in_root(root, f".venv/bin/python -c '{GREEDY}' {inside} '{PROMPT}' {TOKENS}", capture_output=True, text=True)
    a, b = json.loads(native.stdout.splitlines()[-1]), json.loads(arm.stdout.splitlines()[-1])
    parted = next((i for i, (x, y) in enumerate(zip(a["tokens"], b["tokens"])) if x != y), None)
    return {"x86_64": a, "aarch64": b, "same": a["tokens"] == b["tokens"], "parted_at": parted,
            "aarch64_s": round(time.monotonic() - t0, 1)}


class MemorySampler(threading.Thread):
    """The payload's process and its children (the persona worker), every second: VmRSS and USS."""

    def __init__(self) -> None:
        super().__init__(daemon=True, name="pi-check-memory")
        self.stop, self.peak = threading.Event(), {}

    def run(self) -> None:
        while not self.stop.wait(1.0):
            total_rss = total_uss = 0
            for pid, role in _payload_processes():
                rss, uss = _memory_kb(pid)
                self._peak(role, rss, uss)
                total_rss, total_uss = total_rss + rss, total_uss + uss
            if total_rss:
                self._peak("together", total_rss, total_uss)

    def _peak(self, role: str, rss: int, uss: int) -> None:
        old = self.peak.get(role, (0, 0))
        self.peak[role] = (max(old[0], rss), max(old[1], uss))


def _payload_processes() -> list[tuple[int, str]]:
    found, parents = [], {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
            ppid = int(next(ln for ln in (entry / "status").read_text().splitlines() if ln.startswith("PPid:")).split()[1])
        except (OSError, StopIteration, ValueError):
            continue
        if b"payload" in cmd and b"run" in cmd and b"--sim" in cmd:
            found.append((int(entry.name), "payload"))
        parents[int(entry.name)] = (ppid, cmd)
    payloads = {pid for pid, _ in found}
    found += [(pid, "persona worker") for pid, (ppid, cmd) in parents.items()
              if ppid in payloads and any(b"multiprocessing" in part for part in cmd)]
    return found


def _memory_kb(pid: int) -> tuple[int, int]:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0, 0
    rss = int(next((ln.split()[1] for ln in status.splitlines() if ln.startswith("VmRSS:")), 0))
    uss = sum(int(ln.split()[1]) for ln in rollup.splitlines() if ln.startswith(("Private_Clean:", "Private_Dirty:")))
    return rss, uss


def fly(root: Path, persona: bool, minutes: float) -> dict:
    """The Pi configuration on the bench, in the root, with the persona the install script put
    where `[persona] bundle` points (/opt/stratoecho/persona)."""
    sampler = MemorySampler()
    sampler.start()
    t0 = time.monotonic()
    try:
        in_root(root, f"STRATOECHO_GATEWAY_STRICT=1 .venv/bin/python -m sim fly --out /tmp/flight --overwrite "
                      f"--config config/payload.pi.toml --minutes {minutes:g} --speedup max --quiet "
                      f"--hang-after {EMULATED_HANG_S:g} "
                      + ("--persona persona" if persona else "--no-persona"))
    finally:
        sampler.stop.set()
    report = json.loads((root / "tmp/flight/report.json").read_text())
    return {"wall_s": round(time.monotonic() - t0), "report": report, "peak_kb": sampler.peak}


def fly_natively(persona: Path, minutes: float, out: Path) -> dict:
    """The same flight here, x86-64 without emulation: the memory of the same Python and llama.cpp
    code over the same model, which is what a Pi holds give or take the instruction set's size."""
    sampler = MemorySampler()
    sampler.start()
    try:
        run([sys.executable, "-m", "sim", "fly", "--out", out, "--overwrite", "--config", REPO / "config/payload.pi.toml",
             "--minutes", f"{minutes:g}", "--speedup", "max", "--quiet", "--persona", persona], cwd=REPO)
    finally:
        sampler.stop.set()
    return sampler.peak


# ------------------------------------------------------------------ the units, booted


# What the shipped unit cannot have under qemu-user, each for a reason only emulation has; the rest
# of it stands. The bench's world stands in for the hardware the container has none of.
BOOT_DROPIN = """# pi-check only (sim/bench/run/pi_check.py): the payload's unit booted in an arm64 container under qemu-user.
[Unit]
# The data partition is a card's: the container has the folder, not the partition.
RequiresMountsFor=
[Service]
# The bench's world for the hardware (no SPI, GPS or I2C here); its radio sends UDP into nothing.
# Its data one level down: the bench keeps its world beside it (payload.bench), inside ReadWritePaths.
ExecStart=
ExecStart=/opt/stratoecho/.venv/bin/python -m payload run --sim --sim-config /etc/stratoecho/payload.toml \\
    --udp 127.0.0.1:7373 --data /var/lib/stratoecho/payload
RestrictAddressFamilies=AF_UNIX AF_NETLINK AF_INET
# qemu-user writes the code it runs (its JIT): W^X would stop every instruction.
MemoryDenyWriteExecute=no
# The emulator's own system calls are x86-64 ones; a filter for arm64's would refuse them all.
SystemCallArchitectures=
SystemCallFilter=
"""
PROBE = """#!/bin/sh
# pi-check: what the unit does when systemd runs it: READY, the watchdog, a kill, a stop.
out=/var/lib/pi-check.txt; : > $out
show() { systemctl show stratoecho-payload -p "$1" --value; }
say() { echo "$*" >> $out; }
i=0; while [ "$(show ActiveState)" != active ] && [ "$(show NRestarts)" = 0 ] && [ $i -lt 900 ]; do sleep 1; i=$((i+1)); done
say "ready: $(show ActiveState)/$(show SubState) after ${i} s, result $(show Result), restarts $(show NRestarts)"
if [ "$(show ActiveState)" != active ]; then
    journalctl -u stratoecho-payload --no-pager -n 20 -o cat >> $out 2>&1; systemctl poweroff; exit 0
fi
w1=$(show WatchdogTimestampMonotonic); sleep 45; w2=$(show WatchdogTimestampMonotonic)
say "watchdog: last ping ${w1} then ${w2} us, fed: $([ "$w2" != "$w1" ] && [ "$w2" != 0 ] && echo yes || echo no)"
pid=$(show MainPID); systemctl kill -s KILL stratoecho-payload
back() { [ "$(show MainPID)" != "$pid" ] && [ "$(show ActiveState)" = active ]; }
i=0; while ! back && [ $i -lt 900 ]; do sleep 1; i=$((i+1)); done
say "kill: restarts $(show NRestarts), active again after ${i} s as pid $(show MainPID) (was $pid)"
t0=$(date +%s); systemctl stop stratoecho-payload; t1=$(date +%s)
say "stop: result $(show Result), $(show ExecMainCode)/$(show ExecMainStatus), in $((t1 - t0)) s (TimeoutStopSec=20)"
journalctl -u stratoecho-payload --no-pager -n 12 -o cat >> $out 2>&1
systemctl poweroff
"""
PROBE_UNIT = """[Unit]
Description={what}
After={after}
[Service]
Type=oneshot
ExecStart=/usr/local/sbin/{name}
[Install]
WantedBy=multi-user.target
"""


def install_probe(root: Path, name: str, script: str, what: str, after: str) -> Path:
    """The shipped unit as a check boots it (BOOT_DROPIN), and a probe `name` run once at boot
    after `after`: `script` in /usr/local/sbin, its unit enabled. Returns the enabling link."""
    dropin = root / "etc/systemd/system/stratoecho-payload.service.d/pi-check.conf"
    dropin.parent.mkdir(parents=True, exist_ok=True)
    dropin.write_text(BOOT_DROPIN)
    probe = root / "usr/local/sbin" / name
    probe.parent.mkdir(parents=True, exist_ok=True)
    probe.write_text(script)
    probe.chmod(0o755)
    (root / f"etc/systemd/system/{name}.service").write_text(PROBE_UNIT.format(what=what, after=after, name=name))
    wants = root / f"etc/systemd/system/multi-user.target.wants/{name}.service"
    wants.parent.mkdir(parents=True, exist_ok=True)
    wants.unlink(missing_ok=True)
    wants.symlink_to(f"/etc/systemd/system/{name}.service")
    return wants


def boot_check(root: Path, timeout_s: float = 1800) -> list[str]:
    """Boot the root with systemd-nspawn and the shipped unit (the drop-in above), and let the
    probe inside tell: READY, the watchdog fed, a SIGKILL restarted, a stop clean."""
    wants = install_probe(root, "pi-check-probe", PROBE, "pi-check: the payload's unit under systemd",
                          "stratoecho-payload.service")
    dropin = root / "etc/systemd/system/stratoecho-payload.service.d/pi-check.conf"
    (root / "var/lib/pi-check.txt").unlink(missing_ok=True)
    log.info("booting the root", how="systemd-nspawn --boot", expect="minutes under emulation")
    with open(root.parent / "boot.log", "wb") as console:
        try:
            subprocess.run(["systemd-nspawn", "-D", str(root), "--boot", "--register=no", "--keep-unit", "--machine=pi-check",
                            "--console=read-only"], stdout=console, stderr=subprocess.STDOUT, timeout=timeout_s,
                           stdin=subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired:  # said below: the probe's report is what it got to
            timed_out = True
        else:
            timed_out = False
    wants.unlink(missing_ok=True)
    dropin.unlink()
    report = root / "var/lib/pi-check.txt"
    lines = report.read_text(errors="replace").splitlines()[:4] if report.exists() else []
    if timed_out:
        lines.append(f"the container was still up after {timeout_s:.0f} s and was killed")
    if not lines:
        lines = ["the probe wrote nothing"]
    return ["boot: " + line for line in lines] + ([f"boot: the console is in {root.parent / 'boot.log'}"]
                                                  if timed_out or len(lines) < 4 else [])


# ------------------------------------------------------------------ the run


def summary(tokens: dict, flight: dict, native_kb: dict) -> list[str]:
    r, peak = flight["report"], flight["peak_kb"]
    m, t, g = r["musings"], r["telemetry"], r["gateway"]
    same = (f"the same {len(tokens['x86_64']['tokens'])} tokens" if tokens["same"] else
            f"parted at token {tokens['parted_at']}: {tokens['x86_64']['text']!r} / {tokens['aarch64']['text']!r}")
    rows = [f"greedy tokens, x86-64 and Arm: {same} ({tokens['aarch64_s']} s under qemu)",
            f"flight: {r['flight_s'] / 60:.0f} flight minutes in {flight['wall_s']} s; musings made {m['generated']}, "
            f"aired {m['sent']}, heard {m['delivered']}; sentences heard {t['received']}/{t['sent']}; "
            f"$$ lines {g['lines']}, gateway violations {g['violations']}"]
    for role in ("payload", "persona worker", "together"):
        (rss, uss), (n_rss, n_uss) = peak.get(role, (0, 0)), native_kb.get(role, (0, 0))
        rows.append(f"memory, {role}: peak RSS {rss / 1024:.0f} MB, USS {uss / 1024:.0f} MB under qemu (an upper "
                    f"bound: the emulator's code cache is in it); {n_rss / 1024:.0f} / {n_uss / 1024:.0f} MB natively")
    together = native_kb.get("together", (0, 0))[0] / 1024
    rows.append(f"a Zero 2 W's {ZERO_2W_MB} MB less the native {together:.0f} MB: {ZERO_2W_MB - together:.0f} MB for the "
                "kernel, systemd and the page cache")
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sim.bench.run.pi_check", description=__doc__.split("\n\n")[0],
                                epilog="As root. The root is built once (~3 min) and kept; delete it to start again.")
    p.add_argument("--root", type=Path, default=REPO / "build" / "pi-check" / "root", help="the arm64 root (kept)")
    p.add_argument("--wheel", type=Path, help="llama-cpp-python for aarch64 (default: the newest in build/pi-wheel/)")
    p.add_argument("--persona", type=Path, default=REPO / "build" / "persona", help="the bundle to fly (make persona)")
    p.add_argument("--minutes", type=float, default=30.0, help="flight minutes (default 30)")
    p.add_argument("--boot", action="store_true", help="also boot the root with systemd-nspawn and the shipped unit")
    p.add_argument("--only-boot", action="store_true", help="only the boot check (the root installed already)")
    p.add_argument("--json", type=Path, default=REPO / "build" / "pi-check" / "report.json", help="the figures, as JSON")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wheel = args.wheel or max((REPO / "build" / "pi-wheel").glob("llama_cpp_python-*aarch64*.whl"),
                              key=lambda p: p.stat().st_mtime, default=None)
    if os.geteuid() != 0:
        print("error: pi-check needs root (chroot, mounts, binfmt_misc)", file=sys.stderr)
        return 2
    if args.only_boot:
        ensure_host_packages()
        ensure_binfmt()
        for row in boot_check(args.root):
            print("  " + row)
        return 0
    if wheel is None or not wheel.exists():
        print("error: no aarch64 llama-cpp-python wheel: run make pi-wheel first (or give --wheel)", file=sys.stderr)
        return 2
    if not (args.persona / "persona.toml").exists():
        print(f"error: no persona bundle at {args.persona}: run make persona first (or give --persona)", file=sys.stderr)
        return 2
    model = next(args.persona.glob("*.gguf"))
    key = args.root.parent / "flight.key"
    try:
        ensure_host_packages()
        ensure_binfmt()
        build_root(args.root)
        trust_this_machines_registries(args.root)
        if not key.exists():
            run([sys.executable, "-m", "groundstation", "keygen", key])
        with mounted(args.root):
            install(args.root, wheel, key, args.persona)
            tokens = greedy_tokens(args.root, model)
            flight = fly(args.root, True, args.minutes)
        native = fly_natively(args.persona, args.minutes, args.root.parent / "native-flight")
    except (PiCheckError, subprocess.CalledProcessError) as e:
        print(f"error: pi-check: {e}", file=sys.stderr)
        return 1
    rows = summary(tokens, flight, native) + (boot_check(args.root) if args.boot else [])
    print(f"pi-check: Debian {SUITE} {ARCH} under qemu-user, {wheel.name}")
    for row in rows:
        print("  " + row)
    args.json.write_text(json.dumps({"tokens": tokens, "flight": {**flight, "report": {
        k: flight["report"][k] for k in ("musings", "telemetry", "gateway", "flight_s", "persona")}},
        "native_peak_kb": native, "rows": rows}, indent=1))
    return 0 if tokens["same"] and flight["report"]["gateway"]["violations"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
