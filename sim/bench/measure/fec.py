"""`make bench` figures for the erasure code: musings sent through a bursty channel.

`delivery_rows` sends 2,000 musings (150-280 random characters plus the 4-byte time and the
4-byte record check, so 158-288 bytes) through sim/channel/loss.py's seeded Gilbert–Elliott channel at 10, 30 and 50 % mean
loss in bursts of 4 frames, and reports the share delivered complete and the bytes on air
per delivered byte against the erasure bound 1/(1-p). Every musing is really encoded, and
really decoded from the shards that survived, and checked against what was sent.

- Each musing is cut as the link cuts it, sealed with its check: k = ceil(len/240) data shards (240 bytes at
  most, what a 255-byte frame leaves) plus m parity shards; every shard rides in its own
  frame with 15 bytes of header and CRC. (`shard_bytes`/`header_bytes` change that.)
- Interleaving: musings go out in groups of `depth`; each one's n fragments are spread evenly
  over the group's frames, so two fragments of one musing are about `depth` frames apart.
  A burst of 4 lost frames then takes about one fragment from each of 4 musings instead of
  4 from one, and the channel seen by one musing is nearly memoryless.
- m is planned for the channel the interleaved musing sees, `parity_for(k, p, target,
  burst=interleaved_burst(p, 4, depth))`; planning with burst=4 as if the fragments were
  back to back would pay for bursts the interleaver already broke up (2-4x the parity:
  at 30 % loss, 6.9x the bound on air instead of 2.7x).

No feedback: what a musing's n frames do not deliver is lost. That costs: with k of 1-2,
99 % delivery needs n of several k, far above 1/(1-p), because small blocks must cover the
unlucky tail of the loss count. `repair_rows` estimates what NACK repair adds: since any k
shards will do, the ground only reports how many it holds and every fresh parity shard
repairs any loss (an idealised uplink: every NACK arrives, at no airtime cost). It is an
estimate only and `make bench` no longer prints it: sim/bench/run/link.py's `protocol_rows`
run the real payload and ground code instead, with listen windows, signed NACKs and the
same loss on the uplink.
"""

from __future__ import annotations

import math
import random
import string
import struct
import time
from dataclasses import dataclass

from sim.channel.loss import GilbertElliott, LossSpec
from stratoecho.wire import fec
from stratoecho.wire.common import DEFAULT_MTU, Kind
from stratoecho.wire.records import CRC_BYTES, HEADER_BYTES, record_check, shard_capacity

# The real link's geometry: 255-byte frames, 15 bytes of header and CRC, 240 of shard.
LINK_SHARD_BYTES = shard_capacity(DEFAULT_MTU)
LINK_HEADER_BYTES = HEADER_BYTES + CRC_BYTES

MAX_CHUNK = 243  # MTU 255 minus the fragment framing
_ALPHABET = (string.ascii_letters + string.digits + " .,'-").encode()


@dataclass
class Outcome:
    musings: int = 0
    delivered: int = 0
    frames: int = 0
    frames_lost: int = 0
    bytes_on_air: int = 0
    bytes_delivered: int = 0
    predicted: float = 0.0  # sum over musings of the model's delivery probability (first pass)
    floor_bytes: int = 0  # on air had exactly k frames of each delivered musing arrived: headers + padding
    ks: tuple[int, ...] = ()
    ms: tuple[int, ...] = ()


def _musings(rng: random.Random, count: int) -> list[bytes]:
    out = []
    for i in range(count):
        text = bytes(rng.choice(_ALPHABET) for _ in range(rng.randint(150, 280)))
        body = struct.pack(">I", 1767225600 + 60 * i) + text
        out.append(body + struct.pack(">I", record_check(Kind.MUSING, 1, i, body)))
    return out


def _spread(ns: list[int]) -> list[tuple[int, int]]:
    """(musing, fragment) in air order: fragment j of musing g at fraction (j + phase_g) / n_g."""
    slots = [((j + (g + 0.5) / len(ns)) / n, g, j) for g, n in enumerate(ns) for j in range(n)]
    return [(g, j) for _, g, j in sorted(slots)]


def simulate(
    loss: float,
    seed: int = 1,
    *,
    musings: int = 2000,
    burst: float = 4.0,
    shard_bytes: int = LINK_SHARD_BYTES,
    header_bytes: int = LINK_HEADER_BYTES,
    depth: int = 8,
    target: float = 0.999,
    plan_burst: float | None = None,
    repair_rounds: int = 0,
    repair_target: float = 0.9,
) -> Outcome:
    """Send `musings` random musings through a Gilbert–Elliott channel; see the module docstring.

    `plan_burst` is the burst given to `parity_for` (default: what interleaving leaves of `burst`).
    With `repair_rounds` > 0, after each pass over a group the ground reports how many fragments
    of each musing it holds (a perfect, free uplink: an optimistic assumption), and every musing
    still short of k gets fresh parity: its deficit d plus `parity_for(d, p, repair_target)`.
    """
    if not 1 <= shard_bytes <= MAX_CHUNK:
        raise ValueError(f"shard_bytes must be 1..{MAX_CHUNK}, got {shard_bytes}")
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    if plan_burst is None:
        plan_burst = fec.interleaved_burst(loss, burst, depth)
    rng = random.Random(seed)
    channel = GilbertElliott(LossSpec(loss, burst), seed=seed)
    texts = _musings(rng, musings)
    out = Outcome()
    ks, ms = set(), set()
    for start in range(0, len(texts), depth):
        group = texts[start:start + depth]
        kk = [math.ceil(len(data) / shard_bytes) for data in group]
        shards: list[list[bytes]] = [[] for _ in group]
        sent = [0] * len(group)
        heard: list[dict[int, bytes]] = [{} for _ in group]
        for rnd in range(1 + repair_rounds):
            want = []
            for g, k in enumerate(kk):
                if rnd == 0:
                    m = fec.parity_for(k, loss, target, burst=plan_burst)
                    out.predicted += fec.delivery_probability(k, k + m, loss, plan_burst)
                    ks.add(k)
                    ms.add(m)
                    want.append(k + m)
                elif (deficit := k - len(heard[g])) > 0:
                    m = fec.parity_for(deficit, loss, repair_target, burst=plan_burst)
                    want.append(min(deficit + m, fec.MAX_SHARDS - sent[g]))
                else:
                    want.append(0)
            for g, w in enumerate(want):
                if sent[g] + w > len(shards[g]):  # the (k, n) code's shards are a prefix of (k, n + x)'s
                    shards[g] = fec.encode(group[g], kk[g], sent[g] + w)
            for g, j in _spread(want):
                idx = sent[g] + j
                out.frames += 1
                out.bytes_on_air += header_bytes + len(shards[g][idx])
                if channel.drop():
                    out.frames_lost += 1
                else:
                    heard[g][idx] = shards[g][idx]
            sent = [s + w for s, w in zip(sent, want)]
        for data, k, got in zip(group, kk, heard):
            out.musings += 1
            if len(got) >= k:
                if fec.decode(got, k, fec.MAX_SHARDS, len(data)) != data:
                    raise AssertionError("erasure decoding returned the wrong bytes")
                out.delivered += 1
                out.bytes_delivered += len(data)
                out.floor_bytes += k * (header_bytes + len(got[next(iter(got))]))
    out.ks, out.ms = tuple(sorted(ks)), tuple(sorted(ms))
    return out


def _rows(label: str, seed: int, options: dict) -> list[tuple[str, str, str, str]]:
    rows = []
    for loss in (0.1, 0.3, 0.5):
        r = simulate(loss, seed, **options)
        pct = round(loss * 100)
        bound = 1.0 / (1.0 - loss)
        per_byte = r.bytes_on_air / r.bytes_delivered if r.bytes_delivered else math.inf
        floor = r.floor_bytes / r.bytes_delivered if r.bytes_delivered else math.inf
        if options.get("repair_rounds"):
            how = f"up to {options['repair_rounds']} NACK rounds (perfect uplink), depth {options['depth']}"
        else:
            how = (f"k={r.ks[0]}-{r.ks[-1]}, m={r.ms[0]}-{r.ms[-1]}, depth {options['depth']}, "
                   f"model {100 * r.predicted / r.musings:.1f}")
        rows.append((
            f"{label}: {pct} % burst loss, musings delivered",
            f"{100 * r.delivered / r.musings:.1f}", "%", f"target >= 99; {how}",
        ))
        rows.append((
            f"{label}: {pct} % burst loss, bytes on air per delivered byte",
            f"{per_byte / bound:.2f}", "x bound",
            f"bound 1/(1-p) = {bound:.2f}; headers+padding alone {floor:.2f}x; "
            f"channel lost {100 * r.frames_lost / r.frames:.1f} %",
        ))
    return rows


def delivery_rows(seed: int = 1, **options) -> list[tuple[str, str, str, str]]:
    """Rows for `make bench`: FEC alone (no feedback) at 10, 30 and 50 % burst loss.

    Per level: musings delivered complete, and bytes on air (headers included) per
    delivered byte relative to 1/(1-p). `options` go to `simulate`. Defaults: groups of 8
    musings, parity planned for 99.5 % per musing, the cheapest setting that kept delivery
    above 99 % at every level for seeds 1-5.
    """
    return _rows("fec", seed, {"depth": 8, "target": 0.995, **options})


def repair_rows(seed: int = 1, **options) -> list[tuple[str, str, str, str]]:
    """The same channel with NACK repair: what FEC plus feedback could reach (an idealised
    estimate; sim/bench/run/link.py's `protocol_rows` measure the real protocol).

    The first pass carries parity for 20 % per musing only; after each pass the ground's
    counts come back over a perfect, free uplink (optimistic) and each short musing gets its
    deficit plus parity for 50 %, for up to 6 rounds (6 round trips of latency).
    """
    return _rows("fec+nack", seed, {"depth": 8, "target": 0.2, "repair_rounds": 6, "repair_target": 0.5, **options})


def speed_rows() -> list[tuple[str, str, str, str]]:
    """Encode and decode speed for a 2 kB record as k=9, n=14, with 5 data shards lost."""
    data = random.Random(0).randbytes(2000)
    lost = {0, 2, 4, 6, 8}

    def rate(fn, min_s: float = 0.5) -> float:
        n, t0 = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - t0) < min_s:
            fn()
            n += 1
        return elapsed / n

    shards = fec.encode(data, 9, 14)
    kept = {i: s for i, s in enumerate(shards) if i not in lost}
    enc = rate(lambda: fec.encode(data, 9, 14))
    dec = rate(lambda: fec.decode(kept, 9, 14, len(data)))
    return [
        ("fec: encode 2 kB record, k=9 n=14", f"{enc * 1e3:.3f}", "ms", ""),
        ("fec: decode 2 kB record, 5 of 9 data shards lost", f"{dec * 1e3:.3f}", "ms", "inverse cached"),
    ]
