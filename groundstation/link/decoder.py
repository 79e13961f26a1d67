"""Frames in, complete records out: pure logic over `stratoecho.wire`, no I/O.

`FrameDecoder.feed` decodes one frame, as bytes or as the `wire.HeardFrame` that `wire.classify`
made of it (routing among flights classifies it first and hands it on), feeds
fragments to a `wire.Reassembler`, drops repeated telemetry (the same claim: callsign, number
and position; another claim under the number comes out beside it), and
returns what happened as a `Decoded`: complete records are the wire's own types (a position
the payload sent late, as a record, comes out as the `wire.Telemetry` it carries),
`wire.Telemetry` and `wire.Record`, read by attribute everywhere after. A musing's text
sentences (`wire.musing_sentence`, for stock gateways) give the musing record once all its
parts are heard, folded text and all, unless the record itself came first; the record
heard later still comes out, and the database keeps its exact text (`Store.add_record`). Nothing a
frame holds can make it raise: every `WireError` is counted in `errors` under a
short, stable reason so the summary (and the `frames.error` column) can group them.

A relaying balloon sends a position it proved twice: in its envelope, then as the bare line it
heard (payload/link/relay.py), which a stock gateway takes. The bare line is the same bytes as
the envelope's: heard after it, it comes out `relayed_by` that envelope's relayer (`echoes`
remembers the last lines envelopes carried). A line heard only bare is taken as heard directly.

Trust: our fragments and the window cue are decoded only when their downlink tag checks
under `auth` (`wire.downlink`); without the key, or with a tag that fails, the frame is an
error ("unauthenticated", "bad tag") and stays a claim in the frames table, never a record.
A position or musing sentence is read whoever sent it, and is the balloon's only when it
carries the flight's tag and that checks under `auth` (`wire.sentence_tag`): `Decoded.signed`.
`Decoded.authentic` says whether what came out rests on a tag (records, late positions, the cue,
signed sentences) or is a claim anyone can make (unsigned sentences, HABpack, SSDV); a musing's
parts are gathered apart by that, so a forger's part never completes the balloon's musing.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

from stratoecho import wire
from stratoecho.wire.downlink import DEFAULT_TAG_LEN
from stratoecho.wire.relay import check_envelope

from .heard import WireRecord, kind_name

INVALID = "invalid frame"
MAX_CLAIMS_KEPT = 200_000  # sentences remembered to count repeats: a day of flight heard by a busy gateway
ECHOES_KEPT = 64  # sentences carried in envelopes, remembered to know their bare echo: minutes of a network


def error_reason(err: wire.WireError) -> str:
    """The short reason a wire error is counted under."""
    return getattr(err, "reason", None) or INVALID


@dataclass(frozen=True)
class Decoded:
    """What one frame gave: a complete record, an error reason, or neither (a fragment
    of a record still incomplete, or a repeat of something already delivered)."""

    record: WireRecord | None = None
    error: str | None = None
    detail: str | None = None  # wire's own message, for the debug log
    frame: wire.Telemetry | wire.MusingSentence | wire.Fragment | wire.SsdvPacket | wire.Window | None = None  # what
    # the bytes decoded to (for repair)
    relayed_by: int | None = None  # the relaying payload's callsign hash, for a frame heard in its envelope
    signed: bool = False  # a sentence carrying the flight's tag, checked under the key

    @property
    def authentic(self) -> bool:
        """What this frame gave carries the balloon's tag: a fragment, the cue, a signed sentence."""
        return self.signed or isinstance(self.frame, (wire.Fragment, wire.Window))

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class FrameDecoder:
    auth: wire.DownlinkAuth | None = None  # checks our frames' tags; None: every fragment stays a claim
    max_pending: int = 4096
    frames: int = 0
    records: Counter = field(default_factory=Counter)  # complete records by kind
    duplicates: int = 0  # telemetry sentences heard again
    ssdv_packets: int = 0  # picture packets (SSDV): kept as frames heard; pictures are not records
    musing_sentences: int = 0  # musing text sentences heard (their musings count as "musing_sentence")
    errors: Counter = field(default_factory=Counter)
    relayed: int = 0  # frames heard in another payload's envelope (docs/network.md)
    relayers: dict = field(default_factory=dict)  # callsign hash -> DownlinkAuth: relayers whose envelopes we check
    _reassembler: wire.Reassembler = field(init=False)
    _seen_telemetry: dict[tuple, bool] = field(default_factory=dict)  # claim -> heard tagged, oldest first
    _tagged_numbers: set[tuple[str, int, int]] = field(default_factory=set)  # (callsign, boot, seq) the balloon tagged
    _musing_parts: OrderedDict = field(default_factory=OrderedDict)  # (boot, seq) -> {part: MusingSentence}
    _musings_done: set[tuple[int, int]] = field(default_factory=set)  # whole, from fragments or sentences
    _echoes: OrderedDict = field(default_factory=OrderedDict)  # a sentence an envelope carried -> its relayer

    def __post_init__(self) -> None:
        self._reassembler = wire.Reassembler(max_pending=self.max_pending)

    @property
    def tag_len(self) -> int:
        """The downlink tag's length this decoder reads: its key's, else the default."""
        return self.auth.tag_len if self.auth is not None else DEFAULT_TAG_LEN

    def feed(self, frame: bytes | wire.HeardFrame, received: datetime | None = None) -> Decoded:
        """`received` (UTC; default now) dates a musing rebuilt from sentences, which carry a time of day.
        A frame another payload relayed is taken out of its envelope and decoded as if heard
        directly, so what is heard both ways is one record; it is believed no more than its own
        tag allows (an envelope vouches only for who relayed it)."""
        heard = frame if isinstance(frame, wire.HeardFrame) else wire.classify(frame, self.tag_len)
        self.frames += 1
        if heard.kind is not wire.FrameKind.RELAYED:
            relayer = self._echoes.get(heard.data) if heard.kind is wire.FrameKind.SENTENCE else None
            if relayer is not None:  # a relayer's bare echo of a line its envelope carried
                self.relayed += 1
                return replace(self._decode(heard, received), relayed_by=relayer)
            return self._decode(heard, received)
        error = heard.error  # a damaged envelope
        if error is None:
            try:
                check_envelope(heard.envelope, self.relayers)
            except wire.WireError as e:
                error = e
        if error is not None:
            self.errors[error_reason(error)] += 1
            return Decoded(error=error_reason(error), detail=str(error))
        self.relayed += 1
        if heard.inner.kind is wire.FrameKind.SENTENCE:
            self._echoes[heard.inner.data] = heard.envelope.relayer
            self._echoes.move_to_end(heard.inner.data)
            while len(self._echoes) > ECHOES_KEPT:
                self._echoes.popitem(last=False)
        return replace(self._decode(heard.inner, received), relayed_by=heard.envelope.relayer)

    def _decode(self, heard: wire.HeardFrame, received: datetime | None) -> Decoded:
        try:
            decoded = wire.decode_heard(heard, self.auth)
            if isinstance(decoded, wire.Window):
                return Decoded(frame=decoded)
            if isinstance(decoded, wire.Telemetry):
                return self._telemetry(decoded, signed=heard.signed_by(self.auth))
            if isinstance(decoded, wire.MusingSentence):
                return self._musing_part(decoded, received or datetime.now(timezone.utc), heard.signed_by(self.auth))
            if isinstance(decoded, wire.SsdvPacket):
                self.ssdv_packets += 1
                return Decoded(frame=decoded)
            record = self._reassembler.add(decoded)
        except wire.WireError as e:
            reason = error_reason(e)
            self.errors[reason] += 1
            return Decoded(error=reason, detail=str(e))
        if record is None:
            return Decoded(frame=decoded)
        if record.kind is wire.Kind.TELEMETRY:
            return self._late_position(record, decoded)
        return self._deliver(record, decoded)

    def position(self, t: wire.Telemetry) -> Decoded:
        """A position another receiver decoded and passed on as values (a Horus PAYLOAD_SUMMARY):
        no frame, but counted and deduplicated as a sentence is."""
        return self._telemetry(t)

    def _telemetry(self, t: wire.Telemetry, frame: wire.Telemetry | wire.Fragment | None = None,
                   signed: bool = False) -> Decoded:
        """A position, once per claim: from its sentence (`signed`: the balloon's), or (`frame`)
        from a late record."""
        number, tagged = (t.callsign, t.boot, t.seq), signed or isinstance(frame, wire.Fragment)
        claim = (*number, t.time, t.lat, t.lon, t.alt)
        # An open sentence is a claim of its own callsign: another callsign's, or another position
        # under the same number, comes out beside it (a forger's sentence under a future number must
        # not hide the real one). The balloon's tagged copy comes out after any open claim, and after
        # it nothing open under that number does.
        if number in self._tagged_numbers or (claim in self._seen_telemetry and not tagged):
            self.duplicates += 1
            return Decoded(frame=frame or t, signed=signed)
        self._seen_telemetry[claim] = tagged
        if tagged:
            self._tagged_numbers.add(number)
        while len(self._seen_telemetry) > MAX_CLAIMS_KEPT:  # a forger's flood of distinct claims: oldest go
            self._seen_telemetry.pop(next(iter(self._seen_telemetry)))
        return replace(self._deliver(t, frame or t), signed=signed)

    def _late_position(self, record: wire.Record, fragment: wire.Fragment) -> Decoded:
        """A position the payload sent after a newer one, as a record: the sentence it carries, under
        the record's own number (a record filed under another number is not that position)."""
        t = wire.decode_position(record.content)
        if (t.seq, t.boot) != (record.seq, record.boot):
            self.errors["bad content"] += 1
            return Decoded(error="bad content", detail=f"telemetry record {record.boot}.{record.seq} carries "
                                                       f"position {t.boot}.{t.seq}", frame=fragment)
        return self._telemetry(t, fragment)

    def _musing_part(self, s: wire.MusingSentence, received: datetime, signed: bool) -> Decoded:
        """A musing's part; the balloon's signed parts and anyone's unsigned ones are gathered apart."""
        self.musing_sentences += 1
        key = (s.boot, s.seq) if signed else (s.boot, s.seq, "claim")
        if key in self._musings_done or (s.boot, s.seq) in self._musings_done:
            return Decoded(frame=s, signed=signed)
        parts = self._musing_parts.setdefault(key, {})
        if any(p.parts != s.parts for p in parts.values()):
            parts.clear()  # another musing under this number (a new boot reusing it): start again
        parts[s.part] = s
        if len(parts) < s.parts:
            while len(self._musing_parts) > self.max_pending:
                self._musing_parts.popitem(last=False)
            return Decoded(frame=s, signed=signed)
        del self._musing_parts[key]
        self._musings_done.add(key)
        first = parts[1]
        # Made when its tag says (the line's own time is when it went on air); older lines: that.
        created = wire.telemetry_datetime(first.made or first.time, received)
        text = " ".join(parts[i].text for i in range(1, s.parts + 1))
        record = wire.Record(wire.Kind.MUSING, s.boot, s.seq, int(created.timestamp()), text)
        self.records["musing_sentence"] += 1
        return Decoded(record=record, frame=s, signed=signed)

    def _deliver(self, record: WireRecord, frame: wire.Telemetry | wire.Fragment) -> Decoded:
        if isinstance(record, wire.Record) and record.kind is wire.Kind.MUSING:
            self._musings_done.add((record.boot, record.seq))
            self._musing_parts.pop((record.boot, record.seq), None)
        self.records[kind_name(record)] += 1
        return Decoded(record=record, frame=frame)

    def incomplete(self) -> int:
        """Records of which some fragments arrived but not all (what a NACK would ask for)."""
        return len(self._reassembler.missing())

    def missing(self) -> dict[tuple[int, int, int], tuple[int, list[int]]]:
        """`Reassembler.missing()`: per incomplete record, fragments still needed and indices never heard."""
        return self._reassembler.missing()
