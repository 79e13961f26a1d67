"""`make bench`'s daemon memory rows: what a `payload run --sim` process holds, and how much of
it is the daemon's own.

USS (pages no other process maps) of the bench's payload process is not the daemon's memory on
a Pi, for three reasons, each measured here rather than guessed:

- the bench world runs inside it (`sim/world/hardware.py`): sim's modules, numpy for the world
  and the camera's renders, the flight model, the simulated GPS, I2C devices and pins. Its share
  is measured in a child process of its own: USS after the daemon's imports, then after the
  bench's imports, its world built as `open_bench` builds it and three camera frames rendered;
- structlog imports rich (and pygments, attrs) for its console renderer wherever rich is
  installed: the development venv has it (typer, import-linter), the Pi's `[payload]` install
  does not. Its share is the difference between two children importing the daemon, one with
  rich hidden;
- a shared library's pages count in USS only while no other process maps them: on a busy bench
  machine 3 to 22 MB of the figure comes and goes with what else runs. The anonymous part (heap,
  Python's objects, stacks) is the daemon's whatever runs beside it, so it is printed too.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
MB = 1e6

_HIDE_RICH = "import sys; sys.modules['rich'] = None  # as on the Pi, where it is not installed\n"

_CHILD = """
import json, sys, tempfile
from pathlib import Path

import payload.__main__  # the daemon's modules: what follows is the bench's
from payload.config import load_config

daemon = private_mb("self")
if sys.argv[1] == "bench":
    from payload.clock import flight_clock
    from sim.world.hardware import BenchHardware
    from sim.world.settings import BenchSettings
    from sim.world.scenarios import flight_for

    cfg, bench_settings = load_config(None), BenchSettings()
    with tempfile.TemporaryDirectory() as d:
        flight = flight_for(bench_settings.scenario, bench_settings.seed)
        clock = flight_clock(bench_settings.speedup, start_utc=flight.utc(0.0), name="payload")
        bench = BenchHardware(flight, clock, Path(d), seed=bench_settings.seed, state_path=Path(d) / "world.json",
                              heater_pin=cfg.outputs.heater_pin)
        camera = bench.camera.factory()
        for i in range(3):
            camera.capture(Path(d) / f"{i}.jpg")
        after = private_mb("self")
        bench.close()
else:
    after = daemon
print(json.dumps({"daemon": daemon, "after": after}))
"""


def private_mb(pid: int | str) -> tuple[float, float]:
    """(anonymous, file-backed) private memory of a process in MB, from /proc/PID/smaps; their sum
    is psutil's USS. File-backed: pages of mapped files (shared libraries) only this process maps."""
    anon = backed = 0
    from_file = False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if line[0] in "0123456789abcdef":  # a mapping's header: address range, ..., path
                parts = line.split(None, 5)
                from_file = len(parts) > 5 and parts[5].startswith("/")
            elif line.startswith(("Private_Clean:", "Private_Dirty:")):
                kb = int(line.split()[1])
                if from_file:
                    backed += kb
                else:
                    anon += kb
    return anon * 1024 / MB, backed * 1024 / MB  # smaps's kB are KiB


def _child(what: str, hide_rich: bool = False) -> dict:
    # private_mb's own source: importing sim to measure would count sim's package as the daemon's
    code = (_HIDE_RICH if hide_rich else "") + f"MB = {MB}\n" + inspect.getsource(private_mb) + _CHILD
    out = subprocess.run([sys.executable, "-c", code, what], cwd=ROOT, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"daemon memory bench: child {what} exited {out.returncode}: {out.stderr[-500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def shares() -> dict[str, tuple[float, float]]:
    """(anonymous, file-backed) MB that the bench world and rich add to a payload process, and
    the daemon's imports alone (module docstring)."""
    bench = _child("bench")
    with_rich, without = _child("daemon"), _child("daemon", hide_rich=True)

    def minus(a, b):
        return a[0] - b[0], a[1] - b[1]

    return {"bench": minus(bench["after"], bench["daemon"]), "rich": minus(with_rich["daemon"], without["daemon"]),
            "imports": tuple(without["daemon"])}


def fly(cmd: list[str]) -> dict:
    """Run a payload process to its end, sampling its memory every 0.2 s: the largest USS and its
    anonymous and file-backed parts, the largest RSS, and its children's (the persona worker's)."""
    import psutil

    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ps = psutil.Process(proc.pid)
    peak = {"uss": 0.0, "anon": 0.0, "file": 0.0, "rss": 0.0, "worker_rss": 0.0}
    stop = threading.Event()
    while proc.poll() is None:
        try:
            anon, backed = private_mb(proc.pid)
            if anon + backed > peak["uss"]:
                peak.update(uss=anon + backed, anon=anon, file=backed)
            peak["rss"] = max(peak["rss"], ps.memory_info().rss / MB)
            peak["worker_rss"] = max([peak["worker_rss"]] + [c.memory_info().rss / MB for c in ps.children()])
        except (psutil.Error, OSError):
            pass  # it ended between poll and sample
        stop.wait(0.2)
    err = proc.stderr.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"daemon memory bench: payload run exited {proc.returncode}: {err[-500:]}")
    return peak


def rows(bundle_dir: Path, minutes: float = 10.0, speedup: float = 60.0) -> list[tuple]:
    """The rows: per variant (--no-persona; the bundle's persona if built), the process's USS,
    the daemon's own share of it against the issue's goals, and RSS."""
    base = [sys.executable, "-m", "payload", "--log-level", "WARNING", "run", "--sim", "--udp", "127.0.0.1:9",
            "--drain-s", "0", "--minutes", f"{minutes:g}", "--speedup", f"{speedup:g}"]
    variants = [("--no-persona", ["--no-persona"])]
    if (bundle_dir / "persona.toml").is_file():
        variants.append((f"persona {bundle_dir}", ["--persona", str(bundle_dir)]))
    share = shares()
    out = []
    for what, extra in variants:
        with tempfile.TemporaryDirectory() as d:
            m = fly([*base, "--data", str(Path(d) / "p"), *extra])
        own_anon = m["anon"] - share["bench"][0] - share["rich"][0]
        own_file = m["file"] - share["bench"][1] - share["rich"][1]
        bench, rich, imports = (sum(share[k]) for k in ("bench", "rich", "imports"))
        worker = f"; worker (not counted) RSS {m['worker_rss']:,.0f} MB" if m["worker_rss"] else ""
        out += [
            (f"daemon memory: USS of the payload process, {what}", f"{m['uss']:,.1f}", "MB",
             f"{minutes:g} flight min at {speedup:g}x, largest of 0.2 s samples: {m['anon']:,.1f} MB anonymous, "
             f"{m['file']:,.1f} MB library pages no other process maps (moves with what else runs){worker}"),
            (f"daemon memory: the daemon's own, {what}", f"{own_anon + own_file:,.1f}", "MB",
             f"goal <= 60 MB, then 40; the USS above less the bench world ({bench:,.1f} MB: sim, numpy, the world, "
             f"its parts, camera renders) and rich ({rich:,.1f} MB: structlog imports it where installed, not on the "
             f"Pi): {own_anon:,.1f} MB anonymous, {own_file:,.1f} MB library pages; its imports alone {imports:,.1f} MB"),
            (f"daemon memory: RSS, {what}", f"{m['rss']:,.1f}", "MB", "shared libraries included"),
        ]  # fmt: skip
    return out
