"""100,000 mutated frames through the ground's decoder: no exception, no false accept."""

from __future__ import annotations

import random

from groundstation.link.decoder import FrameDecoder
from stratoecho import wire
from stratoecho.wire import habpack, horus
from tests.fakes import AUTH

N_MUTATIONS = 100_000


def _originals() -> tuple[list[bytes], set[str]]:
    frames, truths = [], set()
    for seq in range(1, 6):
        t = wire.Telemetry("STRATO1", seq, "10:04:11", 52.7 + seq / 1000, -2.7, 12000 + seq, 9, -40.5, 180.2, 3890, 3)
        frames.append(wire.encode_sentence(t))
        truths.add(repr(sorted(wire.decode_frame(frames[-1], AUTH).as_dict().items())))  # as sent (5 decimals)
        rec = wire.Record(wire.Kind.MUSING, 3, seq, 1767225600, f"musing {seq}: the horizon is a blue wire " * (seq % 3 + 1))
        frames += wire.fragment_record(rec, mtu=64, parity=2, auth=AUTH)
        truths.add(repr(sorted(rec.as_dict().items())))
    return frames, truths


def _mutate(rng: random.Random, frame: bytes, pool: list[bytes]) -> bytes:
    b = bytearray(frame)
    op = rng.randrange(7)
    if op == 0:  # flip 1-3 bits
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(b) * 8)
            b[i // 8] ^= 1 << (i % 8)
    elif op == 1:  # truncate
        del b[rng.randrange(len(b)):]
    elif op == 2:  # overwrite a byte
        b[rng.randrange(len(b))] = rng.randrange(256)
    elif op == 3:  # insert garbage
        i = rng.randrange(len(b) + 1)
        b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    elif op == 4:  # back-to-back with another frame
        b += rng.choice(pool)
    elif op == 5:  # oversize
        b += bytes(rng.randrange(256) for _ in range(rng.randint(200, 400)))
    else:  # pure garbage with a plausible first byte
        b = bytearray([rng.choice([0x24, wire.MAGIC, 0x89, 0x00])]) + bytes(
            rng.randrange(256) for _ in range(rng.randint(0, 80)))
    return bytes(b)


def test_mutated_frames_never_raise_and_never_deliver_a_wrong_record():
    frames, truths = _originals()
    rng = random.Random(20261121)
    decoder = FrameDecoder(auth=AUTH)
    wrong = []
    for _ in range(N_MUTATIONS):
        result = decoder.feed(_mutate(rng, rng.choice(frames), frames))
        if result.record is not None and repr(sorted(result.record.as_dict().items())) not in truths:
            wrong.append(result.record)
        if rng.random() < 0.01:
            decoder = FrameDecoder(auth=AUTH)  # fresh state now and then, so good records can complete again
    assert wrong == []
    assert sum(decoder.errors.values()) > 0


def test_other_telemetry_decoders_only_raise_wire_errors():
    rng = random.Random(7)
    t = wire.Telemetry("STRATO1", 42, "10:04:11", 52.70123, -2.71234, 12345, 9, -40.5, 180.2, 3890, 3)
    for encode, decode in ((habpack.encode_habpack, habpack.decode_habpack),
                           (lambda x: horus.encode_horus(x, 256), horus.decode_horus)):
        good = encode(t)
        for _ in range(5_000):
            try:
                decode(_mutate(rng, good, [good]))
            except wire.WireError:
                pass
