"""Targets over what comes off the air: the ground's receiver, the sentences it parses, the relay
envelope, the window cue, and the uplink frame as the payload reads it.

Contracts, from the parsers' own words:

- `FrameDecoder.feed` never raises: every `wire.WireError` becomes `Decoded.error` (its docstring,
  "Nothing a frame holds can make it raise"); with and without a downlink key.
- the sentence parsers (UKHAS, musing sentences, HABpack, the field-list reader) raise `WireError`.
- `relay.decode_relayed` and `dispatch.origin_of` raise `WireError`.
- `downlink.decode_window` raises `WireError`.
- `uplink.verify` raises `UplinkRejected` (a `WireError` whose reason is one of `REJECT_REASONS`).

The corpus is made by the project's encoders, under a fixed fuzzing key: the flight of
`sim.bench.fuzz.decoder.flight` (records cut and tagged as the payload cuts them, position
sentences), musing sentences, HABpack, SSDV packets, window cues, relay envelopes, signed commands.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import struct
from datetime import datetime, timezone
from functools import cache, partial

from groundstation.link.decoder import FrameDecoder
from stratoecho import wire
from stratoecho.wire import dispatch, horus, horus_v3, kiss, relay, ssdv, ukhas, uplink
from stratoecho.wire.downlink import Window, encode_window

from .decoder import flight
from .engine import Target, refusing

FLIGHT_KEY = hashlib.sha256(b"stratoecho fuzz: a flight key no balloon flies").digest()
AUTH = wire.DownlinkAuth.from_flight_key(FLIGHT_KEY)
OTHER = wire.DownlinkAuth.from_flight_key(hashlib.sha256(FLIGHT_KEY).digest())  # another flight's
CALLSIGN = "STRATO1"
RELAYER = "STRATO2"
RELAYERS = {uplink.payload_hash(RELAYER): OTHER}
ORIGINS = {CALLSIGN: AUTH, RELAYER: OTHER, "STRATO3": None}  # whose a heard frame may be
LAST_COUNTER = 5  # the payload's high-water mark: the corpus's commands are above it
PROBE_BYTES = 64 << 10  # far past any frame: what a serial line or a UDP port could still hand over
WHEN = datetime(2026, 1, 1, 10, 4, 11, tzinfo=timezone.utc)
FRAME_TOKENS = (b"$$", b"$$STRATO1,", b",", b"*", b"musing 1.2 1/2 ", b"10:04:11", b"\n", b"nan", b"-0", b"1e999",
                b"9" * 30, bytes([wire.MAGIC]), bytes([wire.CONTROL_MAGIC]), bytes([wire.RELAY_MAGIC]),
                bytes([uplink.MAGIC]), b"\x80", b"\xde\x00\x10", b"\xdc\xff\xff", b"\xc1", b"\x66", b"\xff\xd8")


@cache
def _flight() -> tuple[list[bytes], list[bytes]]:
    _, fragments, sentences = flight(random.Random(1), AUTH)
    return fragments[::8], sentences[:8]


def _open_sentences() -> list[bytes]:
    """Position sentences in UKHAS and HABpack, and a musing as text sentences."""
    out = list(_flight()[1])
    for seq in (1, 2, 40_000):
        t = wire.Telemetry(CALLSIGN, seq, "23:59:58", 52.70123, -2.71234, 30_123, 9, -40.5, 12.2, 3890, 3)
        out += [wire.encode_habpack(t), ukhas.with_field_list(wire.encode_sentence(t))]
    text = "the horizon curves, cold and blue; the battery holds. " * 6
    out += wire.encode_musing_sentences(CALLSIGN, 7, WHEN, 52.7, -2.7, 30_000, 3, 12, text, made=WHEN)
    out += wire.encode_musing_sentences(CALLSIGN, 8, WHEN, 52.7, -2.7, 30_000, 3, 13, "short, one part")
    return out


def _cues() -> list[bytes]:
    return [encode_window(Window(boot, seq, uplink.payload_hash(CALLSIGN), sent_s, listen_s), AUTH)
            for boot, seq, sent_s, listen_s in ((1, 1, 0, 1), (3, 4_000, 86_400, 12), (0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 255))]


@cache
def _pictures() -> list[bytes]:
    """Two SSDV packets of a small picture (Pillow makes the JPEG, as the payload's camera does)."""
    from PIL import Image

    image = Image.new("RGB", (32, 16), (200, 40, 40))
    return ssdv.encode_image(ssdv.prepare_jpeg(image), "STRAT1", 7)[:2]


def _envelopes() -> list[bytes]:
    fragments, sentences = _flight()
    hash_ = uplink.payload_hash(RELAYER)
    inner = fragments[:4] + sentences[:2] + _cues()[:1]
    return [relay.encode_relayed(f, hash_, hops, OTHER) for hops, f in enumerate(inner)]


def _received() -> list[bytes]:
    fragments, _ = _flight()
    return fragments + _open_sentences() + _cues() + _pictures() + _envelopes()


# --------------------------------------------------------------------------- re-sealing

def _crc(data: bytes) -> bytes:
    return data[:-2] + struct.pack(">H", wire.crc16_ccitt(data[:-2])) if len(data) > 2 else data


def _tag_crc(data: bytes, auth: wire.DownlinkAuth) -> bytes:
    """A fresh tag and CRC over whatever the body now is: the balloon's own frame, made wrong."""
    end = len(data) - 2 - auth.tag_len
    if end <= 0:
        return _crc(data)
    body = data[:end]
    return _crc(body + auth.tag(body) + b"\0\0")


def _checksum(data: bytes) -> bytes:
    """A UKHAS line with its checksum made right again, as anyone may send one."""
    star = data.rfind(b"*")
    if not data.startswith(b"$$") or star < 0:
        return data
    body = data[2:star]
    return b"$$" + body + b"*" + f"{wire.crc16_ccitt(body):04X}".encode() + b"\n"


def _reseal(data: bytes, keyed: bool = True) -> bytes:
    if data[:2] == b"$$":
        return _checksum(data)
    if data[:1] in (bytes([wire.MAGIC]), bytes([wire.CONTROL_MAGIC])):
        return _tag_crc(data, AUTH) if keyed and len(data) % 2 else _crc(data)
    if data[:1] == bytes([wire.RELAY_MAGIC]):
        return _tag_crc(data, OTHER) if len(data) % 2 else _crc(data)
    return data


# --------------------------------------------------------------------------- runners

def _receiver(auth: wire.DownlinkAuth | None):
    @contextlib.contextmanager
    def open_(scratch):
        decoder = FrameDecoder(auth=auth, max_pending=64, relayers=dict(RELAYERS) if auth else {})

        def run(data: bytes) -> str:
            return decoder.feed(data, WHEN).error or "ok"  # never raises: its contract
        yield run
    return open_


def _sentence(data: bytes) -> None:
    """A sentence read by the parser its first bytes choose (UKHAS also by the field-list reader)."""
    if data[:1] and data[0] in wire.HABPACK_FIRST_BYTES:
        wire.decode_habpack(data)
    elif wire.is_musing_sentence(data):
        wire.decode_musing_sentence(data)
    else:
        wire.decode_sentence(data)
        ukhas.parse_sentence_with_fields(data)


@contextlib.contextmanager
def _window(scratch):
    def run(data: bytes) -> str:
        reasons = []
        for auth in (AUTH, None):
            try:
                wire.decode_window(data, auth)
                reasons.append("ok")
            except wire.WireError as e:
                reasons.append(e.reason)
        return reasons[0]
    yield run


@contextlib.contextmanager
def _kiss(scratch):
    """A serial line from a KISS TNC, in 17-byte reads: frames out, errors counted, never raised."""
    decoder = kiss.KissDecoder(port=0)

    def run(data: bytes) -> str:
        before = sum(decoder.errors.values())
        for i in range(0, len(data), 17):
            decoder.feed(data[i:i + 17])
        return "ok" if sum(decoder.errors.values()) == before else "error counted"
    yield run


def _kissed() -> list[bytes]:
    fragments, sentences = _flight()
    return [b"".join(kiss.kiss_encode(f) for f in fragments[:3]), kiss.kiss_encode(sentences[0], port=0),
            b"junk before" + kiss.kiss_encode(b"\xc0\xdb\xc0")]


def _horus_frames() -> list[bytes]:
    return [horus.encode_horus(wire.Telemetry(CALLSIGN, seq, "10:04:11", 52.7, -2.7, alt, 9, -40.5, 180.2, 3890, 3),
                               256) for seq, alt in ((1, 12_000), (65_535, 0))]


def _horus_crc(data: bytes) -> bytes:
    return data[:-2] + struct.pack("<H", wire.crc16_ccitt(data[:-2])) if len(data) > 2 else data


def _horus_v3_frames() -> list[bytes]:
    return [horus_v3.encode_horus_v3(wire.Telemetry(CALLSIGN, seq, "10:04:11", 52.7, -2.7, alt, 9, -40.5, 180.2, 3890,
                                                    3), via=via)
            for seq, alt, via in ((1, 12_000, None), (65_535, 0, "nohub"))]


def _horus_v3_crc(data: bytes) -> bytes:
    return struct.pack("<H", wire.crc16_ccitt(data[2:])) + data[2:] if len(data) > 2 else data


# --------------------------------------------------------------------------- the uplink

def _commands() -> list[bytes]:
    commands = [
        uplink.Ping(0xBEEF), uplink.SetMode(uplink.PowerMode.SURVIVAL), uplink.SetIntervals(30, 600),
        uplink.Resend((uplink.ResendItem(int(wire.Kind.MUSING), 3, 12, (0, 2)), uplink.ResendItem(2, 3, 13))),
        uplink.MemoryNote("the hill crew waves; the wind backs west"), uplink.ApiAnswer(9, 0, "12 C, light wind"),
        uplink.LinkReport(3, 4_000, 3_700), uplink.Ack((uplink.AckRange(1, 3, 1, 40), uplink.AckRange(2, 3, 5, 9))),
    ]
    return [uplink.sign(FLIGHT_KEY, LAST_COUNTER + i, CALLSIGN, c) for i, c in enumerate(commands, start=1)]


def _resign(data: bytes) -> bytes:
    """The ground's own command, its arguments made wrong before it signed them."""
    tag_len = uplink.DEFAULT_TAG_LEN
    if len(data) < uplink.HEADER_BYTES + tag_len:
        return data
    body = bytearray(data[:-tag_len])
    body[0] = uplink.MAGIC
    body[1] = (uplink.VERSION << 4) | (body[1] & 0x0F)
    struct.pack_into(">IH", body, 2, LAST_COUNTER + 1 + body[2] % 8, uplink.payload_hash(CALLSIGN))
    return bytes(body) + uplink._tag(FLIGHT_KEY, bytes(body), tag_len)


TARGETS = [
    Target("receiver", "FrameDecoder.feed with the downlink key (and a relayer's): never raises",
           _received, _receiver(AUTH), FRAME_TOKENS, _reseal, max_bytes=600, fresh_every=300,
           probe_bytes=PROBE_BYTES),
    Target("receiver_open", "FrameDecoder.feed without a key: never raises",
           _received, _receiver(None), FRAME_TOKENS, partial(_reseal, keyed=False), max_bytes=600, fresh_every=300,
           probe_bytes=PROBE_BYTES),
    Target("classify", "wire.classify, what a heard frame is: never raises", _received,
           lambda scratch: contextlib.nullcontext(lambda data: getattr(wire.classify(data).error, "reason", "ok")),
           FRAME_TOKENS, _reseal),
    Target("sentence", "UKHAS, musing and HABpack sentences, the field-list reader: WireError",
           _open_sentences, refusing(_sentence, wire.WireError), FRAME_TOKENS, _checksum, max_bytes=600,
           probe_bytes=PROBE_BYTES),
    Target("relay", "relay.decode_relayed, the envelope: WireError",
           _envelopes, refusing(lambda data: relay.decode_relayed(data, RELAYERS, AUTH.tag_len), wire.WireError),
           FRAME_TOKENS, _reseal, max_bytes=600),
    Target("relay_origin", "dispatch.origin_of, whose a heard frame is (the payload's relay): WireError",
           lambda: _flight()[0][:8] + _flight()[1][:4] + _cues() + _commands()[:2],
           refusing(lambda data: dispatch.origin_of(data, ORIGINS), wire.WireError), FRAME_TOKENS, _reseal,
           max_bytes=600),
    Target("window", "downlink.decode_window, with and without the key: WireError",
           _cues, _window, FRAME_TOKENS, _reseal, max_bytes=64),
    Target("kiss", "KissDecoder.feed, a KISS TNC's serial line in pieces: never raises",
           _kissed, _kiss, (b"\xc0", b"\xdb", b"\xdb\xdc", b"\xdb\xdd", b"\x00", b"\x10"), max_bytes=1200,
           fresh_every=50),
    Target("horus", "horus.decode_horus, Horus Binary v2: WireError",
           _horus_frames, refusing(horus.decode_horus, wire.WireError), (), _horus_crc, max_bytes=40),
    Target("horus_v3", "horus_v3.decode_horus_v3, Horus Binary v3 (UPER, CRC in front): WireError",
           _horus_v3_frames, refusing(horus_v3.decode_horus_v3, wire.WireError), (), _horus_v3_crc, max_bytes=140),
    Target("uplink", "uplink.verify, a command as the payload reads it: UplinkRejected",
           _commands, refusing(lambda data: uplink.verify(FLIGHT_KEY, data, CALLSIGN, LAST_COUNTER),
                               uplink.UplinkRejected),
           (bytes([uplink.MAGIC]), b"\x11", b"\xff" * 4, b"\xc3\x28"), _resign, max_bytes=300),
]
