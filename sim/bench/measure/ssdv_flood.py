"""The receiver under strangers' pictures (issue 50): a real `python -m groundstation listen --udp`
with the flight key answers the balloon's window cues while SSDV packets under other callsigns
arrive at a steady rate. Once each packet had the whole picture decoded again: 10 packets a
second made a cue's answer 8 s late and the next one refused. Now a stranger's packet is a
lookup and a row (groundstation/pictures.py); `make bench` prints how many cues were answered
inside their window and how long the answers took, without the flood and with it. The flood is sent
and paced by the one flood driver (sim/bench/run/flood.py).

    python -m sim.bench.measure.ssdv_flood [--rate 100] [--seconds 40]
"""

from __future__ import annotations

import io
import itertools
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from ..run.flood import LoopbackSenders, Pace, drive, print_rows
from .listen_flood import ListenProcess

CALLSIGN, BOOT, LISTEN_S = "STRATO1", 3, 22  # the cue says the payload listens 22 s (config/payload.pi.toml)
CUE_EVERY_S = 4.0


def stranger_packets(n: int, seed: int = 50) -> list[bytes]:
    """`n` distinct SSDV LoRa frames under ten other callsigns: real pictures, real packets."""
    from PIL import Image

    from stratoecho.wire import ssdv

    rng = random.Random(seed)
    frames: list[bytes] = []
    picture = 0
    while len(frames) < n:
        img = Image.new("RGB", (320, 240))
        img.putdata([(rng.randrange(256), (i * 3) % 256, picture * 9 % 256) for i in range(320 * 240)])
        out = io.BytesIO()
        img.save(out, "JPEG", quality=70)
        frames += [p[1:] for p in ssdv.encode_image(ssdv.prepare_jpeg(out.getvalue()), f"X{picture % 10}",
                                                    picture % 256)]
        picture += 1
    return frames[:n]


def _flood(address, frames: list[bytes], rate: float, stop: threading.Event) -> int:
    """Send `frames` over and over at `rate` a second from 127.0.0.2 until `stop`; how many went."""
    with LoopbackSenders(["127.0.0.2"]) as out:
        return drive(itertools.cycle(frames), lambda i, frame: out.send(i, frame, address), Pace(rate), stop)


def measure(rate: float, seconds: float) -> dict:
    """A fresh keyed listener; cues every CUE_EVERY_S for `seconds`, with strangers' SSDV at `rate`
    a second (0: none); each cue's answer time at the uplink bridge, or None when unanswered."""
    from stratoecho import wire
    from stratoecho.wire.downlink import DownlinkAuth, Window, encode_window
    from stratoecho.wire.uplink import payload_hash
    from stratoecho.wire.uplink_keys import write_key_file

    with tempfile.TemporaryDirectory() as d:
        key_path = Path(d) / "flight.key"
        auth = DownlinkAuth.from_flight_key(write_key_file(key_path))
        bridge = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        bridge.bind(("127.0.0.1", 0))
        listen = ListenProcess(Path(d) / "ground.db", "--flight-key", str(key_path), "--callsign", CALLSIGN,
                               "--uplink-to", "%s:%d" % bridge.getsockname())
        air = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        stop = threading.Event()
        counted: list[int] = []
        flooder = threading.Thread(target=lambda: counted.append(_flood(listen.address, stranger_packets(2000), rate,
                                                                        stop)), daemon=True)
        if rate > 0:
            flooder.start()
        answers: list[float | None] = []
        try:
            for n in range(int(seconds / CUE_EVERY_S)):
                seq = 6 * (n + 1)
                now = datetime.now(timezone.utc)
                sentence = wire.encode_sentence(wire.Telemetry(CALLSIGN, seq, now.strftime("%H:%M:%S"), 52.1, -0.1,
                                                               1000 + seq, 9, 5.0, 900.0, 3900, BOOT), auth)
                cue = encode_window(Window(BOOT, seq, payload_hash(CALLSIGN), int(time.time()), LISTEN_S), auth)
                t0 = time.monotonic()
                air.sendto(sentence, listen.address)
                air.sendto(cue, listen.address)
                bridge.settimeout(LISTEN_S)
                try:
                    bridge.recvfrom(4096)
                    answers.append(time.monotonic() - t0)
                except TimeoutError:
                    answers.append(None)
                while True:  # the rest of this window's answer (the ack, repairs)
                    bridge.settimeout(0.3)
                    try:
                        bridge.recvfrom(4096)
                    except TimeoutError:
                        break
                time.sleep(max(0.0, t0 + CUE_EVERY_S - time.monotonic()))
        finally:
            stop.set()
            if rate > 0:
                flooder.join(timeout=10)
            air.close()
            bridge.close()
            listen.stop_clean()
        return {"answers": answers, "flood_sent": counted[0] if counted else 0}


def _row(label: str, r: dict, rate: float, seconds: float) -> tuple:
    done = [a for a in r["answers"] if a is not None]
    timing = f"median {statistics.median(done):.2f} s, longest {max(done):.2f} s" if done else "none answered"
    return (f"listen, cues with {label}: answered", f"{len(done)} of {len(r['answers'])}", "cues",
            f"inside their {LISTEN_S} s window: {timing}; "
            + (f"{r['flood_sent']:,} strangers' SSDV packets in {seconds:g} s ({rate:g} a second)" if rate else
               "no flood"))


def rows(rate: float = 100.0, seconds: float = 40.0) -> list[tuple]:
    quiet, flooded = measure(0.0, seconds), measure(rate, seconds)
    return [_row("no flood", quiet, 0.0, seconds), _row(f"{rate:g} SSDV packets a second from strangers", flooded,
                                                        rate, seconds)]


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m sim.bench.measure.ssdv_flood", description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=100.0, help="strangers' SSDV packets a second (default 100)")
    p.add_argument("--seconds", type=float, default=40.0, help="how long each run lasts (default 40)")
    args = p.parse_args(argv)
    print_rows(rows(args.rate, args.seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
