"""The aggregator under a flood (issue 31): one station with a valid login publishes junk frames
as fast as the aggregator takes them, while two honest stations relay a flight; the figures
`make bench` prints. The aggregator is fed message by message (what its MQTT callback does), in
a process of its own so its memory is its own; the broker is not part of the measure.

Its storage under a flood through a real mosquitto (issue 41, `storage_rows`): many logins each
publish messages as long as the aggregator reads (a 255-byte frame and an origin of ~1.3 KB), and
the database stops at the byte quota; skipped, saying so, where mosquitto is not installed.

Both floods are sent and counted, each in a process of its own, by the one flood driver
(sim/bench/run/flood.py).

    python -m sim.bench.measure.aggregator_flood [--junk 100500] [--storage]
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from stratoecho.wire.downlink import DownlinkAuth
from stratoecho.wire.uplink_keys import new_key

from ..run.flood import database_row, db_bytes, drive, in_own_process, print_rows, taken_row

CALLSIGN, BOOT = "SE1", 7
# When the stations say they heard it: now, as the aggregator takes only times near its own clock.
AT = datetime.now(timezone.utc).isoformat(timespec="milliseconds")


# The flight's key, made afresh for each run: the aggregator checks the honest frames' tags with it.
AUTH = DownlinkAuth.from_flight_key(new_key())
COMMIT_EVERY = 4096  # messages the aggregator takes between two commits


def flight() -> list[bytes]:
    """60 telemetry sentences and 20 musings and events, each in fragments with 2 parity."""
    from stratoecho import wire
    from stratoecho.wire.events import event

    rng = random.Random(11)
    frames: list[bytes] = []
    seqs = {wire.Kind.EVENT: 0, wire.Kind.MUSING: 0}
    for i in range(60):
        frames.append(wire.encode_sentence(wire.Telemetry(
            CALLSIGN, i, f"10:{i // 6:02d}:{i % 6 * 10:02d}", 52.2 + i * 0.001, 0.12 + i * 0.002, 400 + i * 300, 9,
            14.0 - i * 0.8, 1000.0 - i * 15, 3950 - i, BOOT)))
        if i % 3 == 1:
            kind = wire.Kind.EVENT if i % 4 == 0 else wire.Kind.MUSING
            text = f"{kind.name.lower()} {seqs[kind]}: " + "the clouds below are a slow grey sea. " * rng.randint(6, 18)
            content = event("store_fault", detail=text) if kind is wire.Kind.EVENT else text
            frames += wire.fragment_record(wire.Record(kind, BOOT, seqs[kind], 1_700_000_000 + i * 30, content),
                                           parity=2, auth=AUTH)
            seqs[kind] += 1
    return frames


def _message(station: str, n: int, data: bytes) -> tuple[str, bytes]:
    body = {"v": 1, "id": f"{station}:{n}", "station": station, "received_at": AT, "hex": data.hex()}
    return f"stratoecho/{CALLSIGN}/frames/{station}", json.dumps(body).encode()


def _spread(honest: list, junk: list) -> list:
    """`junk` spread evenly through `honest`: each honest message, then its share of the junk."""
    per = len(junk) // len(honest) + 1
    return [m for n, message in enumerate(honest) for m in (message, *junk[n * per:(n + 1) * per])]


def measure(junk: int, db: Path) -> dict:
    """hill relays the flight, then harbour; `evil`'s junk is spread evenly through both."""
    import sqlite3
    import time

    from groundstation.network import Aggregator

    def hwm_kib() -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))

    frames = flight()
    honest = [(s, n, f) for s in ("hill", "harbour") for n, f in enumerate(frames)]
    rng = random.Random(31)
    junk_messages = [_message("evil", n, rng.randbytes(rng.randint(40, 120))) for n in range(junk)]
    honest_messages = [_message(s, n, f) for s, n, f in honest]
    before = hwm_kib()
    agg = Aggregator("127.0.0.1", 1, db, downlink=AUTH)  # never connects: fed directly, default limits

    def take(i: int, message: tuple[str, bytes]) -> None:
        agg._handle(*message)
        if (i + 1) % COMMIT_EVERY == 0:
            agg.store.commit()

    t0 = time.perf_counter()
    drive(_spread(honest_messages, junk_messages), take)
    agg.store.commit()
    elapsed = time.perf_counter() - t0
    peak = hwm_kib() - before
    s = agg.stats
    agg.store.close()
    with sqlite3.connect(db) as c:
        telemetry = c.execute("SELECT count(*) FROM telemetry").fetchone()[0]
        records = c.execute("SELECT count(*) FROM records").fetchone()[0]
        evil = c.execute("SELECT count(*), coalesce(sum(length(hex)), 0) FROM frames WHERE station = 'evil'").fetchone()
    return {"junk": junk, "honest": len(honest_messages), "elapsed_s": elapsed,
            "rate_dropped": s.rate_dropped, "over_quota": s.over_quota, "junk_stored": evil[0],
            "telemetry": telemetry, "records": records, "db_mb": db.stat().st_size / 1e6,
            "peak_mib": peak / 1024, "held": len(agg._held)}


def rows(junk: int = 100_500) -> list[tuple]:
    with tempfile.TemporaryDirectory() as d:
        r = in_own_process("sim.bench.measure.aggregator_flood", "--child", "--junk", str(junk), "--db", str(Path(d) / "agg.db"))
    total = r["junk"] + r["honest"]
    return [
        ("aggregator under a flood: frames handled", f"{total / r['elapsed_s']:,.0f}", "frames/s",
         f"{r['junk']:,} junk from one login + {r['honest']} honest, in {r['elapsed_s']:.1f} s"),
        ("aggregator under a flood: honest flight stored", f"{r['telemetry']} + {r['records']}", "sent+records",
         "of 60 + 20 relayed by two untrusted stations"),
        ("aggregator under a flood: junk dropped over the rate", f"{r['rate_dropped']:,}", "frames",
         "20 a second after a burst of 20,000 (groundstation/station_limits.py)"),
        ("aggregator under a flood: junk stored", f"{r['junk_stored']:,}", "frames",
         f"quota 90 MB a station, 450 MB in all; database {r['db_mb']:.1f} MB in all"),
        ("aggregator under a flood: memory", f"{r['peak_mib']:.0f}", "MiB",
         f"peak RSS added; {r['held']:,} claims held (at most 20,000 a station)"),
    ]


MOSQUITTO = Path("/usr/sbin/mosquitto")
STORAGE_STATIONS, STORAGE_MESSAGES = 30, 1_000  # logins, and the messages each publishes
ORIGIN = "o" * 1_300  # a station's word for where it heard a frame: stored with the frame, counted


def _broker(folder: Path) -> tuple[subprocess.Popen, int]:
    """mosquitto on a free loopback port, anonymous, its queue long enough to hold the flood."""
    import getpass
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = folder / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 200000\n"
                    f"user {getpass.getuser()}\n")
    proc = subprocess.Popen([str(MOSQUITTO), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("mosquitto did not start")


def _storage_flood(stations: int, messages: int, rng: random.Random) -> Iterator[tuple[str, str]]:
    """Each login's messages in turn, as long as the aggregator reads: a 255-byte frame and ORIGIN."""
    for n in range(messages):
        for k in range(stations):
            body = {"v": 1, "id": f"s{k}:{n}", "received_at": AT, "hex": rng.randbytes(255).hex(), "origin": ORIGIN}
            yield f"stratoecho/{CALLSIGN}/frames/s{k:02d}", json.dumps(body)


def measure_storage(folder: Path, quota_mb: float, total_mb: float, stations: int = STORAGE_STATIONS,
                    messages: int = STORAGE_MESSAGES) -> dict:
    """The flood through the broker into an aggregator with these quotas; sizes and counts."""
    import threading
    import time

    import paho.mqtt.client as mqtt

    from groundstation.network import Aggregator
    from groundstation.station_limits import StationLimits

    proc, port = _broker(folder)
    db = folder / "agg.db"
    try:
        limits = StationLimits(quota_bytes=round(quota_mb * 1e6), quota_total_bytes=round(total_mb * 1e6))
        agg, stop = Aggregator("127.0.0.1", port, db, downlink=AUTH, limits=limits), threading.Event()
        runner = threading.Thread(target=agg.run, args=(stop,), daemon=True)
        runner.start()
        while agg._net.connects == 0:
            time.sleep(0.05)
        time.sleep(0.5)  # its SUBSCRIBE on the way
        before, rng = db_bytes(db), random.Random(41)
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="flood")
        client.max_queued_messages_set(0)
        client.connect("127.0.0.1", port)
        client.loop_start()
        published = []
        t0 = time.perf_counter()
        sent = drive(_storage_flood(stations, messages, rng),
                     lambda i, message: published.append(client.publish(*message, qos=1)))
        published[-1].wait_for_publish(300)
        deadline = time.monotonic() + 300
        while agg.stats.messages < sent and time.monotonic() < deadline:
            time.sleep(0.1)
        elapsed = time.perf_counter() - t0
        client.disconnect()
        client.loop_stop()
        stop.set()
        runner.join(30)
    finally:
        proc.terminate()
        proc.wait(10)
    s = agg.stats
    return {"sent": sent, "stations": stations, "handled": s.messages, "stored": s.frames, "over_quota": s.over_quota,
            "elapsed_s": elapsed, "before": before, "after": db_bytes(db), "quota_mb": quota_mb, "total_mb": total_mb}


def storage_rows(quota_mb: float = 9.0, total_mb: float = 45.0, stations: int = STORAGE_STATIONS,
                 messages: int = STORAGE_MESSAGES) -> list[tuple]:
    """The aggregator's database under a flood through a real mosquitto, against its byte quotas
    (a tenth of the defaults, 90 and 450 MB, so that the flood takes seconds)."""
    name = "aggregator under a flood through mosquitto: database after"
    if not MOSQUITTO.exists():
        return [(name, "skipped", "", f"{MOSQUITTO} is not installed (Debian package mosquitto)")]
    with tempfile.TemporaryDirectory() as d:
        r = in_own_process("sim.bench.measure.aggregator_flood", "--storage-child", "--db", d,
                           "--quota-mb", str(quota_mb), "--total-mb", str(total_mb),
                           "--stations", str(stations), "--messages", str(messages))
    from groundstation.frame_quota import MB, row_bytes

    offered = r["sent"] * row_bytes(255, "mqtt " + ORIGIN, AT, "s00", "unknown first byte") / MB  # every row stored
    return [
        database_row(name, (r["before"], r["after"]), (r["total_mb"], r["quota_mb"], "station"), offered, "message"),
        taken_row("aggregator under a flood through mosquitto: messages", (r["handled"], "handled"),
                  (r["sent"], f"~2 KB sent from {r['stations']} logins"), r["elapsed_s"],
                  f"{r['stored']:,} stored, {r['over_quota']:,} past the quota"),
    ]


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m sim.bench.measure.aggregator_flood", description=__doc__.splitlines()[0])
    p.add_argument("--junk", type=int, default=100_500, help="junk frames the hostile station sends (default 100500)")
    p.add_argument("--storage", action="store_true", help="the storage flood through a real mosquitto instead")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--storage-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--quota-mb", type=float, default=9.0, help=argparse.SUPPRESS)
    p.add_argument("--total-mb", type=float, default=45.0, help=argparse.SUPPRESS)
    p.add_argument("--stations", type=int, default=STORAGE_STATIONS, help=argparse.SUPPRESS)
    p.add_argument("--messages", type=int, default=STORAGE_MESSAGES, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child or args.storage_child:
        from stratoecho.logs import setup_logging

        setup_logging("ERROR")  # the throttled warnings are the aggregator's, not the figure
        got = (measure_storage(args.db, args.quota_mb, args.total_mb, args.stations, args.messages)
               if args.storage_child else measure(args.junk, args.db))
        print(json.dumps(got))
        return 0
    print_rows(storage_rows() if args.storage else rows(args.junk))
    return 0


if __name__ == "__main__":
    sys.exit(main())
