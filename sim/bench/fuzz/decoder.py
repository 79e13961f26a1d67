"""Hostile frames against the ground's decoder: none may raise, none may make a wrong record.

`fuzz(frames, seed)` builds a flight's worth of real records (musings, events, health,
images, API requests, each cut with parity as the payload cuts them) and position
sentences, then feeds the ground's `FrameDecoder` a stream in which most frames are
damaged on purpose, the way a radio link and a careless or hostile sender damage them:

- bits flipped, bytes replaced, frames cut short or run long, bytes that are not a frame;
- **frames forged to pass the frame CRC**: a header field (kind, boot, seq, idx, k, n,
  length) or the shard changed and the CRC16 computed again, and headers spliced onto
  another record's shard. The CRC16 cannot catch these; the downlink tag (an HMAC under a
  key the forger lacks, docs/protocol.md) must, and the record check behind it (CRC-32
  over the rebuilt record) would catch what a tag ever let through.

A *wrong record* is a record delivered whose content is not what was sent under its kind,
boot and seq. Telemetry sentences are fuzzed too, but only for exceptions: a sentence
forged with a fresh checksum is a different sentence by design, and nothing can tell.

`make fuzz` runs 1,000,000 frames; `make test` runs a share of it.
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
from collections import Counter
from dataclasses import dataclass, field

from groundstation.link.decoder import FrameDecoder
from stratoecho import wire
from stratoecho.wire.events import event
from stratoecho.wire.records import HEADER_BYTES
from stratoecho.wire.uplink_keys import new_key

# This run's flight key: the fuzz forges frames without it, as an attacker must.
AUTH = wire.DownlinkAuth.from_flight_key(new_key())

_HEAD = struct.Struct(">BBHIBBBH")
_WORDS = "the horizon curves cold battery thin air blue black sun silence frost ballast".split()


@dataclass
class FuzzResult:
    frames: int = 0
    mutated: int = 0
    forged: int = 0  # mutated frames given a valid CRC16 again
    delivered: int = 0
    wrong: list[str] = field(default_factory=list)  # records delivered that were not what was sent
    exceptions: list[str] = field(default_factory=list)  # anything the decoder raised
    reasons: Counter = field(default_factory=Counter)  # why frames were refused

    @property
    def ok(self) -> bool:
        return not self.wrong and not self.exceptions


def _records(rng: random.Random, boots: int = 3, per_boot: int = 40) -> list[wire.Record]:
    out = []
    for boot in range(1, boots + 1):
        for seq in range(1, per_boot + 1):
            kind = rng.choice([wire.Kind.MUSING, wire.Kind.MUSING, wire.Kind.EVENT, wire.Kind.HEALTH,
                               wire.Kind.IMAGE, wire.Kind.API_REQUEST])
            created = 1_767_225_600 + 60 * seq
            if kind is wire.Kind.MUSING:
                content = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 60)))
            elif kind is wire.Kind.EVENT:
                content = event("phase", before="ascent", after="float", alt_m=rng.randint(0, 40_000))
            elif kind is wire.Kind.HEALTH:
                content = {"uptime_s": rng.randint(0, 10**6), "queue_depth": rng.randint(0, 500), "store": "ok"}
            elif kind is wire.Kind.IMAGE:
                content = b"\xff\xd8" + rng.randbytes(rng.randint(50, 900)) + b"\xff\xd9"
            else:
                content = {"api": "weather", "query": " ".join(rng.choice(_WORDS) for _ in range(3))}
            out.append(wire.Record(kind, boot, seq, created, content))
    return out


def _sentences(rng: random.Random, n: int = 60) -> list[bytes]:
    return [wire.encode_sentence(wire.Telemetry("STRATO1", i, "10:04:11", 52.7 + rng.random(), -2.7, rng.randint(-50, 40_000),
                                                9, -40.5, 180.2, 3890, 1)) for i in range(1, n + 1)]


def flight(rng: random.Random, auth: wire.DownlinkAuth = AUTH) -> tuple[list[wire.Record], list[bytes], list[bytes]]:
    """A flight's worth of real frames: its records, their fragments as the payload cuts and tags
    them (MTU 64 to 255, 0 to 3 parity), and position sentences (sim/bench/fuzz's corpus too)."""
    records = _records(rng)
    fragments = [f for r in records
                 for f in wire.fragment_record(r, rng.choice([64, 128, 255]), parity=rng.randint(0, 3), auth=auth)]
    return records, fragments, _sentences(rng)


def _recrc(frame: bytes) -> bytes:
    return frame[:-2] + struct.pack(">H", wire.crc16_ccitt(frame[:-2]))


def _forge(rng: random.Random, frame: bytes, others: list[bytes]) -> bytes:
    """A record fragment changed where the frame CRC cannot see it."""
    head = list(_HEAD.unpack_from(frame))
    how = rng.randrange(4)
    if how == 0:  # one header field changed: kind, boot, seq, idx, k, n or length
        i = rng.choice([1, 2, 3, 4, 5, 6, 7])
        limits = {1: 0xFF, 2: 0xFFFF, 3: 0xFFFFFFFF, 4: 0xFF, 5: 0xFF, 6: 0xFF, 7: 0xFFFF}
        head[i] = rng.choice([rng.randint(0, limits[i]), max(head[i] - 1, 0), min(head[i] + 1, limits[i])])
        if i == 1:
            head[1] = (head[1] & 0xF0) | (head[1] & 0x0F if rng.random() < 0.2 else rng.randint(1, 5))
        body = _HEAD.pack(*head) + frame[HEADER_BYTES:-2]
    elif how == 1:  # shard bytes changed
        shard = bytearray(frame[HEADER_BYTES:-2])
        for _ in range(rng.randint(1, 4)):
            shard[rng.randrange(len(shard))] ^= 1 << rng.randrange(8)
        body = frame[:HEADER_BYTES] + bytes(shard)
    elif how == 2:  # this header on another fragment's shard
        other = rng.choice(others)
        body = frame[:HEADER_BYTES] + other[HEADER_BYTES:-2]
    else:  # another record's identity (kind, boot, seq) on this fragment
        other = _HEAD.unpack_from(rng.choice(others))
        head[1:4] = other[1:4]
        body = _HEAD.pack(*head) + frame[HEADER_BYTES:-2]
    return _recrc(body + b"\0\0")


def _damage(rng: random.Random, frame: bytes) -> bytes:
    """What a link does to a frame the CRC should catch, or bytes that are no frame."""
    data = bytearray(frame)
    how = rng.randrange(5)
    if how == 0 and data:
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif how == 1 and data:
        data[rng.randrange(len(data))] = rng.randrange(256)
    elif how == 2:
        data = data[:rng.randrange(len(data) + 1)]
    elif how == 3:
        data += rng.randbytes(rng.randint(1, 20))
    else:
        data = bytearray(rng.randbytes(rng.randint(0, 255)))
        if data and rng.random() < 0.5:
            data[0] = rng.choice([0xEC, ord("$"), 0x80, 0xDE])
    return bytes(data)


def fuzz(frames: int = 100_000, seed: int = 1, mutate: float = 0.7, forge: float = 0.5) -> FuzzResult:
    """Feed `frames` frames, a share `mutate` of them damaged (of those, a share `forge`
    forged with a valid frame CRC), to a fresh `FrameDecoder`; what came out, checked."""
    rng = random.Random(seed)
    records, fragments, sentences = flight(rng)
    sent = {(int(r.kind), r.boot, r.seq): r for r in records}
    result = FuzzResult()
    decoder = FrameDecoder(auth=AUTH)
    while result.frames < frames:
        if result.frames and result.frames % (len(fragments) * 2) == 0:
            decoder = FrameDecoder(auth=AUTH)  # a new ground station: every record can be delivered again
        frame = rng.choice(fragments) if rng.random() < 0.85 else rng.choice(sentences)
        if rng.random() < mutate:
            result.mutated += 1
            if wire.classify(frame).kind is wire.FrameKind.FRAGMENT and rng.random() < forge:
                result.forged += 1
                frame = _forge(rng, frame, fragments)
            else:
                frame = _damage(rng, frame)
        result.frames += 1
        try:
            got = decoder.feed(frame)
        except Exception as e:  # noqa: BLE001 - the point: nothing may escape the decoder
            result.exceptions.append(f"{type(e).__name__}: {e} on {frame.hex()}")
            continue
        if got.error:
            result.reasons[got.error] += 1
        record = got.record
        if not isinstance(record, wire.Record):
            continue  # nothing completed, or a sentence
        result.delivered += 1
        key = (int(record.kind), record.boot, record.seq)
        if sent.get(key) != record:
            result.wrong.append(f"{key}: {record.text[:60]!r} from {frame.hex()}")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sim.bench.fuzz.decoder", description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=1_000_000, help="frames to feed (default 1,000,000)")
    p.add_argument("--seed", type=int, default=1, help="the fuzzer's seed; the same seed feeds the same frames")
    args = p.parse_args(argv)
    r = fuzz(args.frames, args.seed)
    print(f"{r.frames:,} frames, {r.mutated:,} damaged ({r.forged:,} forged with a valid frame CRC): "
          f"{r.delivered:,} records delivered, {len(r.wrong)} wrong, {len(r.exceptions)} exceptions")
    for reason, n in r.reasons.most_common():
        print(f"  refused {n:>9,}  {reason}")
    for line in (r.wrong + r.exceptions)[:20]:
        print(f"  ! {line}")
    return 0 if r.ok else 1


if __name__ == "__main__":
    sys.exit(main())
