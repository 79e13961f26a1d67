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
   heap to every process, measured on an idle arm64 Python and shown beside: the figures are an
   upper bound of what a Pi holds.

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

REPO = Path(__file__).resolve().parents[2]
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


def ensure_binfmt() -> None:
    """arm64 programs run here: Debian's qemu-aarch64 registered with binfmt_misc (F: fixed)."""
    if not (BINFMT / "register").exists():
        run(["mount", "-t", "binfmt_misc", "binfmt_misc", BINFMT])
    if not (BINFMT / "qemu-aarch64").exists():
        if not QEMU_CONF.exists():
            raise PiCheckError(f"{QEMU_CONF} missing: apt-get install qemu-user-static")
        (BINFMT / "register").write_text(QEMU_CONF.read_text().strip())
    if "F" not in (BINFMT / "qemu-aarch64").read_text().split("flags:")[1].split("\n")[0]:
        raise PiCheckError("qemu-aarch64 is registered without the F flag: programs in the root would not find it")


def build_root(root: Path) -> None:
    """Debian bookworm arm64 from its registry (mmdebstrap), once: a tarball beside the root."""
    if (root / "usr/bin/python3").exists():
        log.info("root kept", root=str(root))
        return
    if shutil.which("mmdebstrap") is None:
        raise PiCheckError("mmdebstrap missing: apt-get install mmdebstrap qemu-user-static")
    tar = root.with_suffix(".tar")
    if not tar.exists():
        log.info("building the arm64 root", suite=SUITE, packages=len(ROOT_PACKAGES), expect="about 3 minutes")
        run(["mmdebstrap", f"--arch={ARCH}", "--variant=minbase", "--include=" + ",".join(ROOT_PACKAGES),
             SUITE, tar.with_suffix(".part")])
        tar.with_suffix(".part").rename(tar)
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
PIP_EXTRA = ".venv/bin/pip install --quiet -e '.[payload,ground]'"


def install(root: Path, wheel: Path, key: Path, persona: Path | None) -> None:
    """The project as docs/deploy.md installs it, by its script (`deploy/install-pi.sh --root`):
    the committed checkout in /opt/stratoecho, its venv, the wheel `make pi-wheel` built, the
    configuration, key and persona, the watchdog and the unit; then the payload's packages."""
    cmd = [REPO / "deploy" / "install-pi.sh", "--root", root, "--create-groups", "--wheel", wheel, "--key", key,
           "--only", SCRIPT_STEPS]
    if persona is not None:
        cmd += ["--persona", persona]
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


def _idle_python_rss_kb(cmd: list[str]) -> int:
    proc = subprocess.Popen([*cmd, "-c", "import time; time.sleep(6)"])
    try:
        time.sleep(4)
        return _memory_kb(proc.pid)[0]
    finally:
        proc.wait()


def emulator_overhead_kb(root: Path) -> int:
    """What qemu-user itself adds to a process: an idle arm64 Python under it, less an idle
    Python run natively here (the interpreter's own pages are much the same on either)."""
    return _idle_python_rss_kb(["chroot", str(root), "/usr/bin/python3"]) - _idle_python_rss_kb(["/usr/bin/python3"])


def fly(root: Path, persona: bool, minutes: float) -> dict:
    """The Pi configuration on the bench, in the root, with the persona the install script put
    where `[persona] bundle` points (/opt/stratoecho/persona)."""
    sampler = MemorySampler()
    sampler.start()
    t0 = time.monotonic()
    try:
        in_root(root, f"STRATOECHO_GATEWAY_STRICT=1 .venv/bin/python -m sim fly --out /tmp/flight --overwrite "
                      f"--config config/payload.pi.toml --minutes {minutes:g} --speedup max --quiet "
                      + ("--persona persona" if persona else "--no-persona"))
    finally:
        sampler.stop.set()
    report = json.loads((root / "tmp/flight/report.json").read_text())
    return {"wall_s": round(time.monotonic() - t0), "report": report, "peak_kb": sampler.peak}


# ------------------------------------------------------------------ the run


def summary(tokens: dict, flight: dict, overhead_kb: int) -> list[str]:
    r, peak = flight["report"], flight["peak_kb"]
    m, t, g = r["musings"], r["telemetry"], r["gateway"]
    same = (f"the same {len(tokens['x86_64']['tokens'])} tokens" if tokens["same"] else
            f"parted at token {tokens['parted_at']}: {tokens['x86_64']['text']!r} / {tokens['aarch64']['text']!r}")
    rows = [f"greedy tokens, x86-64 and Arm: {same} ({tokens['aarch64_s']} s under qemu)",
            f"flight: {r['flight_s'] / 60:.0f} flight minutes in {flight['wall_s']} s; musings made {m['generated']}, "
            f"aired {m['sent']}, heard {m['delivered']}; sentences heard {t['received']}/{t['sent']}; "
            f"$$ lines {g['lines']}, gateway violations {g['violations']}"]
    for role in ("payload", "persona worker", "together"):
        rss, uss = peak.get(role, (0, 0))
        rows.append(f"memory, {role}: peak RSS {rss / 1024:.0f} MB, USS {uss / 1024:.0f} MB (under qemu)")
    processes = sum(1 for role in ("payload", "persona worker") if role in peak)
    rss = peak.get("together", (0, 0))[0] - processes * overhead_kb
    rows.append(f"qemu's own: ~{overhead_kb / 1024:.0f} MB a process; less it, payload and worker hold "
                f"~{rss / 1024:.0f} MB: {ZERO_2W_MB - rss / 1024:.0f} MB of a Zero 2 W's {ZERO_2W_MB} MB left "
                "for the kernel, systemd and the page cache")
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sim.bench.pi_check", description=__doc__.split("\n\n")[0],
                                epilog="As root. The root is built once (~3 min) and kept; delete it to start again.")
    p.add_argument("--root", type=Path, default=REPO / "build" / "pi-check" / "root", help="the arm64 root (kept)")
    p.add_argument("--wheel", type=Path, help="llama-cpp-python for aarch64 (default: the newest in build/pi-wheel/)")
    p.add_argument("--persona", type=Path, default=REPO / "build" / "persona", help="the bundle to fly (make persona)")
    p.add_argument("--minutes", type=float, default=30.0, help="flight minutes (default 30)")
    p.add_argument("--json", type=Path, default=REPO / "build" / "pi-check" / "report.json", help="the figures, as JSON")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wheel = args.wheel or max((REPO / "build" / "pi-wheel").glob("llama_cpp_python-*aarch64*.whl"),
                              key=lambda p: p.stat().st_mtime, default=None)
    if os.geteuid() != 0:
        print("error: pi-check needs root (chroot, mounts, binfmt_misc)", file=sys.stderr)
        return 2
    if wheel is None or not wheel.exists():
        print("error: no aarch64 llama-cpp-python wheel: run make pi-wheel first (or give --wheel)", file=sys.stderr)
        return 2
    if not (args.persona / "persona.toml").exists():
        print(f"error: no persona bundle at {args.persona}: run make persona first (or give --persona)", file=sys.stderr)
        return 2
    model = next(args.persona.glob("*.gguf"))
    key = args.root.parent / "flight.key"
    try:
        ensure_binfmt()
        build_root(args.root)
        trust_this_machines_registries(args.root)
        if not key.exists():
            run([sys.executable, "-m", "groundstation", "keygen", key])
        with mounted(args.root):
            install(args.root, wheel, key, args.persona)
            tokens = greedy_tokens(args.root, model)
            overhead = emulator_overhead_kb(args.root)
            flight = fly(args.root, True, args.minutes)
    except (PiCheckError, subprocess.CalledProcessError) as e:
        print(f"error: pi-check: {e}", file=sys.stderr)
        return 1
    rows = summary(tokens, flight, overhead)
    print(f"pi-check: Debian {SUITE} {ARCH} under qemu-user, {wheel.name}")
    for row in rows:
        print("  " + row)
    args.json.write_text(json.dumps({"tokens": tokens, "flight": {**flight, "report": {
        k: flight["report"][k] for k in ("musings", "telemetry", "gateway", "flight_s", "persona")}},
        "qemu_overhead_kb": overhead, "rows": rows}, indent=1))
    return 0 if tokens["same"] and flight["report"]["gateway"]["violations"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
