"""`sim fly` from start to report: the output folder, the flight's key, the processes, the
report, and the gateway rules that fail it."""

from __future__ import annotations

import hashlib
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from stratoecho.config import ConfigError
from stratoecho.wire.uplink_keys import write_key_file

from ...world.hardware import bench_dir, check_faults
from ...world.scenarios import flight_for, scenario
from .fleet import FLEET_OUTPUTS, fleet
from .fleet_report import fleet_section
from .flyer import Flyer
from .options import FlyError, FlyOptions
from .processes import stop
from .report import write_report

REPO = Path(__file__).resolve().parents[3]  # a scenario names its configuration from the checkout's root

# Set (as `make test` does, tests/conftest.py), a flight whose air breaks a stock LoRa gateway's
# rules fails, report written; unset, the report says so (`gateway`) and `sim report` shows it.
GATEWAY_STRICT_ENV = "STRATOECHO_GATEWAY_STRICT"

OUTPUTS = ("report.json", "air.hex", "air.times", "ground.db", "ground.db-wal", "ground.db-shm", "channel.json",
           "musings.txt", "payload.log", "channel.log", "ground.log", "uplink.hex", "uplink.key",
           "ground.json", "ground.db.uplink.json", "ground.db.uplink.json.lock", "world.json", "flight.svg")


def bench_key(seed: int) -> bytes:
    """The bench flight's key: from its seed, so the same seed flies the same frames, tags and all.
    Anyone can compute it — it is for the bench, never for a flight (keygen makes those)."""
    return hashlib.sha256(b"stratoecho bench flight key\0" + str(seed).encode()).digest()


def prepare_out(opts: FlyOptions) -> None:
    opts.out.mkdir(parents=True, exist_ok=True)
    # The payload's data folder and the bench's own beside it (its /proc, /sys and battery).
    folders = [opts.out / "payload", bench_dir(opts.out / "payload")]
    folders += [d for pattern in FLEET_OUTPUTS for d in opts.out.glob(pattern) if d.is_dir()]
    files = [*OUTPUTS, *(f.name for pattern in FLEET_OUTPUTS for f in opts.out.glob(pattern) if f.is_file())]
    existing = [n for n in files if (opts.out / n).exists()] + [f"{d.name}/" for d in folders if d.exists()]
    if existing and not opts.overwrite:
        raise FlyError(f"{opts.out} already holds a flight ({', '.join(existing)}); pass --overwrite or choose another --out")
    for n in files:
        (opts.out / n).unlink(missing_ok=True)
    for d in folders:
        if d.exists():
            import shutil

            shutil.rmtree(d)


def fly(opts: FlyOptions) -> dict:
    if opts.persona is not None and not (opts.persona / "persona.toml").is_file():
        raise FlyError(
            f"no persona bundle at {opts.persona} (persona.toml missing): run `make persona` to build the "
            "sample persona, pass --persona BUNDLE, or --no-persona to fly without one"
        )
    try:
        sc = scenario(opts.scenario)
        if opts.config is None and sc.config is not None:  # the configuration the scenario is planned for
            opts = replace(opts, config=REPO / sc.config)
        check_faults(opts.faults, opts.config)  # a maker's sensor's faults too, its simulator named there
    except (ValueError, ConfigError) as e:
        raise FlyError(str(e)) from e
    prepare_out(opts)
    flight = flight_for(sc.name, opts.seed)
    minutes = opts.minutes or sc.minutes
    flight_s = minutes * 60 if minutes else flight.duration_s + 300
    write_key_file(opts.out / "uplink.key", force=True, key=bench_key(opts.seed))  # mode 600; both ends read it
    flyer = Flyer(opts, sc, flight_s, fleet(opts, sc, bench_key))
    try:
        flyer.start_ground()
        channel_port = flyer.start_channel()
        if opts.speedup is None:
            pace = "as fast as this machine allows"
        else:
            wall = flight_s / opts.speedup
            pace = (f"{'at most ' if opts.speedup != 1 else ''}{opts.speedup:g}x "
                    f"(~{f'{wall:.0f} s' if wall < 90 else f'{wall / 60:.1f} min'})")
        print(
            f"sim fly: {sc.name}: {flight_s / 60:.0f} flight minutes, {pace}, "
            + (f"burst at {flight.burst_alt_m / 1000:.1f} km, " if hasattr(flight, "burst_alt_m") else "")
            + f"loss {opts.loss.mean_loss:.0%} in bursts of {opts.loss.burst:g}; logs in {opts.out}/",
            file=sys.stderr, flush=True,
        )
        flyer.start_payload(channel_port)
        flyer.start_balloons(flyer.balloon_ports)
        if flyer.tk is not None:
            wall_s = flyer.run_lockstep(channel_port)
            flyer.land_balloons()
            flyer.stop_lockstep("channel")
            flyer.stop_lockstep("ground")
        else:
            wall_s = flyer.run(channel_port)
            flyer.land_balloons()
            time.sleep(0.5)  # the last frames are still in flight through the channel
            stop(flyer.procs["channel"], "channel")
            stop(flyer.procs["ground"], "ground station")
        clock_stats = asdict(flyer.tk.stats) if flyer.tk is not None else None
    finally:
        flyer.stop_all()
    fleet_rows = fleet_section(opts.out, flyer.members, flyer.balloon_exits()) if flyer.members else None
    report = write_report(opts, wall_s, flight_s, sc, flyer, clock_stats, fleet_rows)
    # Every balloon's air, in a flight of several: a gateway hears the far one too.
    for gateway in [report["gateway"], *(b["gateway"] for b in report.get("fleet", [])[1:])]:
        if gateway["violations"] and os.environ.get(GATEWAY_STRICT_ENV):
            raise FlyError(f"{gateway['violations']} lines on air break a stock LoRa gateway's rules "
                           f"({opts.out / 'report.json'}): " + "; ".join(gateway["first"][:3]))
    return report
