"""`sim fly`: a whole bench flight — payload, channel and ground station as separate
processes talking over loopback UDP — ending with a flight report.

    payload --UDP--> channel (bursty loss, writes air.hex) --UDP--> ground station (SQLite)
    payload <--UDP-- channel (bursty loss, writes uplink.hex) <--UDP-- ground station (signed NACKs)

Unless --no-uplink, a fresh key (uplink.key, mode 600) is shared by payload and
ground, and the ground asks for what it missed in the payload's listen windows.

The ground station's live output (musings as they complete, positions) is this
command's output; each process's log goes to a file in the output folder.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

from groundstation.uplink import generate_key_file

from .loss import LossSpec
from .world import Flight, FlightPlan

log = structlog.get_logger(__name__)

DEFAULT_PERSONA = Path("build/persona")
OUTPUTS = ("report.json", "air.hex", "ground.db", "ground.db-wal", "ground.db-shm", "channel.json",
           "musings.txt", "payload.log", "channel.log", "ground.log", "uplink.hex", "uplink.key",
           "ground.json", "ground.db.uplink.json", "ground.db.uplink.json.lock")


class FlyError(Exception):
    """A bench flight that could not start or finish; the message names the process and its log."""


@dataclass
class FlyOptions:
    out: Path
    persona: Path | None = DEFAULT_PERSONA
    minutes: float | None = None
    speedup: float = 60.0
    loss: LossSpec = LossSpec()
    seed: int = 1
    overwrite: bool = False
    config: Path | None = None
    quiet: bool = False
    uplink: bool = True  # ground asks for lost fragments over the reverse path


def wait_listening(log_path: Path, proc: subprocess.Popen, what: str, timeout_s: float = 60.0) -> int:
    """The UDP port `proc` bound, read from its `listening` log line.

    Each process binds port 0 and says which port it got, so no two can race for one.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if entry.get("event") == "listening":
                address = entry.get("address") or entry.get("source", "").split()[-1]
                return int(address.rsplit(":", 1)[1])
        if proc.poll() is not None:
            raise FlyError(f"{what} exited with code {proc.returncode} before it was ready; see {log_path}")
        time.sleep(0.05)
    raise FlyError(f"{what} did not report a listening port within {timeout_s:.0f} s; see {log_path}")


def stop(proc: subprocess.Popen, what: str, timeout_s: float = 20.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("kill", process=what)
            proc.kill()
            proc.wait()
    return proc.returncode


def prepare_out(opts: FlyOptions) -> None:
    opts.out.mkdir(parents=True, exist_ok=True)
    existing = [n for n in OUTPUTS if (opts.out / n).exists()] + (["payload/"] if (opts.out / "payload").exists() else [])
    if existing and not opts.overwrite:
        raise FlyError(f"{opts.out} already holds a flight ({', '.join(existing)}); pass --overwrite or choose another --out")
    for n in OUTPUTS:
        (opts.out / n).unlink(missing_ok=True)
    if (opts.out / "payload").exists():
        import shutil

        shutil.rmtree(opts.out / "payload")


def ground_counts(db: Path) -> dict:
    if not db.exists():
        return {"frames": 0, "telemetry": 0, "musings": 0, "events": 0, "transcript": []}
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        one = lambda q: con.execute(q).fetchone()[0]  # noqa: E731
        return {
            "frames": one("SELECT COUNT(*) FROM frames WHERE ok = 1"),
            "telemetry": one("SELECT COUNT(*) FROM telemetry"),
            "musings": one("SELECT COUNT(*) FROM records WHERE kind = 'musing'"),
            "events": one("SELECT COUNT(*) FROM records WHERE kind = 'event'"),
            "max_alt": one("SELECT COALESCE(MAX(alt), 0) FROM telemetry"),
            "transcript": con.execute(
                "SELECT created, text FROM records WHERE kind = 'musing' ORDER BY boot, seq"
            ).fetchall(),
        }
    finally:
        con.close()


def fly(opts: FlyOptions) -> dict:
    if opts.persona is not None and not (opts.persona / "persona.toml").is_file():
        raise FlyError(
            f"no persona bundle at {opts.persona} (persona.toml missing): run `make persona` to build the "
            "sample persona, pass --persona BUNDLE, or --no-persona to fly without one"
        )
    prepare_out(opts)
    out = opts.out
    py = sys.executable
    env = dict(os.environ, STRATOECHO_LOG_JSON="1", PYTHONUNBUFFERED="1")
    flight = Flight(FlightPlan(seed=opts.seed))
    flight_s = opts.minutes * 60 if opts.minutes else flight.duration_s + 300

    key = out / "uplink.key"
    if opts.uplink:
        generate_key_file(key)  # mode 600; both ends read the same file
    logs = {n: open(out / f"{n}.log", "w") for n in ("ground", "channel", "payload")}
    procs: dict[str, subprocess.Popen] = {}
    try:
        procs["ground"] = subprocess.Popen(
            [py, "-m", "groundstation", "listen", "--udp", "127.0.0.1:0", "--db", str(out / "ground.db"),
             "--stats", str(out / "ground.json")]
            + (["--uplink-key", str(key)] if opts.uplink else [])
            + (["--quiet"] if opts.quiet else []),
            stdout=None if not opts.quiet else subprocess.DEVNULL, stderr=logs["ground"], env=env,
        )
        ground_port = wait_listening(out / "ground.log", procs["ground"], "ground station")
        procs["channel"] = subprocess.Popen(
            [py, "-m", "sim", "channel", "--listen", "127.0.0.1:0", "--forward",
             f"127.0.0.1:{ground_port}", "--loss", f"{opts.loss.mean_loss}:burst={opts.loss.burst}",
             "--seed", str(opts.seed), "--air-hex", str(out / "air.hex"), "--stats", str(out / "channel.json"),
             "--uplink-hex", str(out / "uplink.hex")],
            stdout=logs["channel"], stderr=logs["channel"], env=env,
        )
        channel_port = wait_listening(out / "channel.log", procs["channel"], "channel")
        payload_cmd = [py, "-m", "payload", "run", "--sim", "--udp", f"127.0.0.1:{channel_port}",
                       "--data", str(out / "payload"), "--speedup", str(opts.speedup), "--seed", str(opts.seed)]
        payload_cmd += ["--persona", str(opts.persona)] if opts.persona else ["--no-persona"]
        payload_cmd += ["--minutes", str(opts.minutes)] if opts.minutes else []
        payload_cmd += ["--sim-config", str(opts.config)] if opts.config else []
        payload_cmd += ["--uplink-key", str(key)] if opts.uplink else []
        wall = flight_s / opts.speedup
        print(
            f"sim fly: {flight_s / 60:.0f} flight minutes at {opts.speedup:g}x "
            f"(~{f'{wall:.0f} s' if wall < 90 else f'{wall / 60:.1f} min'}), "
            f"burst at {flight.burst_alt_m / 1000:.1f} km, loss {opts.loss.mean_loss:.0%} in bursts of "
            f"{opts.loss.burst:g}; logs in {out}/",
            file=sys.stderr, flush=True,
        )
        started = time.monotonic()
        procs["payload"] = subprocess.Popen(payload_cmd, stdout=logs["payload"], stderr=logs["payload"], env=env)
        # The payload drains its queue for up to 300 flight seconds after landing.
        budget = wall + 300 / opts.speedup + 120
        payload_rc = wait_flight(procs["payload"], budget, flight_s, opts)
        if payload_rc != 0:
            raise FlyError(f"payload exited with code {payload_rc}; see {out / 'payload.log'}")
        time.sleep(0.5)  # the last frames are still in flight through the channel
        stop(procs["channel"], "channel")
        stop(procs["ground"], "ground station")
        wall_s = time.monotonic() - started
    finally:
        for name, p in procs.items():
            stop(p, name)
        for f in logs.values():
            f.close()

    return write_report(opts, wall_s, flight_s)


def wait_flight(payload: subprocess.Popen, budget_s: float, flight_s: float, opts: FlyOptions) -> int:
    """Wait for the payload to finish its flight; a progress bar in flight minutes when the
    ground station's live output is not shown (--quiet)."""
    from tqdm import tqdm

    started = time.monotonic()
    total = round(flight_s / 60, 1)
    # Only on a terminal: in a log file a redrawn bar is a wall of text.
    show = opts.quiet and sys.stderr.isatty()
    with tqdm(total=total, unit="flight min", disable=not show, file=sys.stderr, leave=False) as bar:
        while (rc := payload.poll()) is None:
            elapsed = time.monotonic() - started
            if elapsed > budget_s:
                rc = stop(payload, "payload")
                raise FlyError(f"payload still running after {budget_s:.0f} s; stopped (code {rc})")
            bar.n = min(round(elapsed * opts.speedup / 60, 1), total)
            bar.refresh()
            time.sleep(0.25)
    return rc


def write_report(opts: FlyOptions, wall_s: float, flight_s: float) -> dict:
    out = opts.out
    stats = json.loads((out / "payload" / "stats.json").read_text())
    channel = json.loads((out / "channel.json").read_text())
    # Written by the ground station at exit; absent if it was killed rather than stopped.
    ground_stats = json.loads(g.read_text()) if (g := out / "ground.json").exists() else {}
    ground = ground_counts(out / "ground.db")
    link, daemon = stats["link"], stats["daemon"]
    report = {
        "musings": {
            "generated": daemon["musings_generated"],
            "queued": daemon["musings_queued"],
            "dropped_by_guard": daemon["musings_dropped_by_guard"],
            "sent": link["sent_by_stream"].get("musing", 0),
            "delivered": ground["musings"],
        },
        "telemetry": {
            "generated": daemon["telemetry_queued"],
            "sent": link["sent_by_stream"].get("telemetry", 0),
            "received": ground["telemetry"],
        },
        "events": {"sent": link["sent_by_stream"].get("event", 0), "received": ground["events"]},
        "frames": {
            "sent": link["frames_sent"],
            "on_air": channel["frames_in"],
            "dropped_by_channel": channel["frames_dropped"],
            "received": ground["frames"],
        },
        "repair": {
            "nacks_sent": ground_stats.get("nacks_sent", 0),
            "items_requested": ground_stats.get("items_requested", 0),
        },
        "uplink": {"sent": channel.get("uplink_in", 0), "received": channel.get("uplink_forwarded", 0)},
        "airtime_s": round(link["airtime_s"], 2),
        "energy_wh": round(stats["energy_wh"], 3),
        "max_alt_m": ground.get("max_alt", 0),
        "flight_s": round(stats["flight_s"], 1),
        "wall_s": round(wall_s, 1),
        "speedup": opts.speedup,
        "loss": {"mean": opts.loss.mean_loss, "burst": opts.loss.burst},
        "seed": opts.seed,
        "persona": str(opts.persona) if opts.persona else None,
        "tokens": daemon["tokens"],
        "persona_failures": daemon["persona_failures"],
        "queue_left": stats["queue_depth"],
    }
    tmp = out / "report.json.tmp"
    tmp.write_text(json.dumps(report, indent=2))
    os.replace(tmp, out / "report.json")
    (out / "musings.txt").write_text(
        "".join(f"{created}  {text}\n" for created, text in ground["transcript"]), encoding="utf-8"
    )
    return report
