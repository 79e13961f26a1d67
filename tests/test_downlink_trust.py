"""The authenticated downlink against the attacks of issue 31: a forged position sentence, a
forged musing, a forged "unconfirmed" event, colluding stations. Each forgery is made as an
attacker can make it — right format, right CRC, any key but the flight's — and each test shows
the ground acting on the real frame too, so it cannot pass by the ground doing nothing.

The ground is driven as `listen` drives it (`run_listen` over a file of frames, with the
`WindowAnswerer` that answers windows), its sends collected instead of put on air.
"""

from __future__ import annotations

import json
import struct
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest

from groundstation.link.decoder import FrameDecoder
from groundstation.link.listen import run_listen
from groundstation.link.windows import WindowAnswerer
from groundstation.network import Aggregator
from groundstation.sources import ReplaySource
from groundstation.store import GroundReader, Store, utc_now
from stratoecho import wire
from stratoecho.wire import uplink
from stratoecho.wire.musing_sentence import encode_musing_sentences
from stratoecho.wire.uplink_keys import new_key
from tests.fakes import AUTH, live_sentence, write_flight_key

CALL = "STRATO1"
BOOT = 3
FORGER = wire.DownlinkAuth.from_flight_key(new_key())  # the right format, any key but the flight's
UPLINK_TO = ("192.0.2.7", 7374)  # the configured bridge


def position(seq: int) -> bytes:
    """A position sentence anyone can send: unsigned."""
    return wire.encode_sentence(wire.Telemetry(CALL, seq, "10:04:11", 52.2, 0.12, 12345, 9, -40.5, 180.2, 3890, BOOT))


def sentence(seq: int) -> bytes:
    """The balloon's own position sentence, signed and stamped now: the window cue after it is its."""
    return live_sentence(BOOT, seq, CALL)


def cue(seq: int, auth: wire.DownlinkAuth = AUTH) -> bytes:
    return wire.encode_window(wire.Window(BOOT, seq, uplink.payload_hash(CALL), seq * 30, 20), auth)


class Ground:
    """A listening ground station with the flight key: what it stored, and what it put on air."""

    def __init__(self, tmp_path: Path, callsign: str | None = CALL) -> None:
        self.tmp = tmp_path
        self.key_path = tmp_path / "flight.key"
        self.key = write_flight_key(self.key_path)
        self.db = tmp_path / "ground.db"
        self.store = Store(self.db)
        self.sent: list[tuple[bytes, tuple]] = []
        self.link = WindowAnswerer(self.key_path, self.db, lambda f, peer: self.sent.append((f, peer)),
                               callsign=callsign, uplink_to=UPLINK_TO, store=self.store)
        self.decoder = FrameDecoder(auth=AUTH)
        self._n = 0

    def hear(self, *frames: bytes) -> None:
        self._n += 1
        path = self.tmp / f"air{self._n}.hex"
        path.write_text("".join(f.hex() + "\n" for f in frames))
        run_listen(ReplaySource(str(path)), self.store, self.decoder, threading.Event(), None, repair=self.link)

    def commands(self) -> list[uplink.Command]:
        out, last = [], 0
        for frame, peer in self.sent:
            assert peer == UPLINK_TO  # uplink goes only where it was told to
            v = uplink.verify(self.key, frame, CALL, last)
            out.append(v.command)
            last = v.counter
        return out

    def rows(self, sql: str) -> list[tuple]:
        return [tuple(r) for r in self.store._db.execute(sql).fetchall()]


def test_a_forged_position_sentence_opens_no_window_and_the_queued_command_waits(tmp_path):
    """Before: a forged sentence whose counter was a multiple of 6 opened a window; the operator's
    command was signed, sent into nothing and marked sent."""
    g = Ground(tmp_path)
    note = uplink.MemoryNote("the river bends west")
    g.store.outbox.queue(int(note.command_id), note.pack(), "a note")
    g.hear(position(6), position(12), cue(18, FORGER))  # sentences anyone can send; a cue of another key
    assert g.sent == [] and len(g.store.outbox.pending()) == 1
    g.hear(sentence(18), cue(18))  # the balloon's own cue: the note goes, once
    assert any(isinstance(c, uplink.MemoryNote) and c.text == note.text for c in g.commands())
    assert g.store.outbox.pending() == []


def test_a_recorded_cue_played_back_opens_nothing_even_after_a_ground_restart(tmp_path):
    g = Ground(tmp_path)
    g.hear(sentence(6), cue(6))
    answered = len(g.sent)
    assert answered >= 1  # at least the link report
    g.hear(cue(6))
    restarted = WindowAnswerer(g.key_path, g.db, lambda f, peer: g.sent.append((f, peer)), uplink_to=UPLINK_TO,
                           store=g.store)
    g.link = restarted  # a new process: only the state file remembers
    g.hear(sentence(6), cue(6))
    assert len(g.sent) == answered and restarted.cues_refused == 1
    g.hear(sentence(12), cue(12))  # the next real window is answered
    assert len(g.sent) > answered


def test_a_cue_for_another_callsign_is_not_answered(tmp_path):
    g = Ground(tmp_path)
    other = wire.encode_window(wire.Window(BOOT, 6, uplink.payload_hash("NOTUS"), 180, 20), AUTH)
    g.hear(position(6), other)  # tagged, but no sentence heard under a callsign of that hash
    assert g.sent == [] and g.link.cues_refused == 1


def musing_fragments(seq: int, text: str, auth: wire.DownlinkAuth) -> list[bytes]:
    return wire.fragment_record(wire.Record(wire.Kind.MUSING, BOOT, seq, 1_767_225_600, text), auth=auth)


def test_a_forged_musing_neither_blocks_the_real_one_nor_gets_acknowledged(tmp_path):
    """Before: a forged musing stored first blocked the real one with its number, and the ground
    signed an ACK for the forgery, so the payload never sent the real one again."""
    g = Ground(tmp_path)
    g.hear(*musing_fragments(5, "I am not the balloon.", FORGER), sentence(6), cue(6))
    assert g.rows("SELECT count(*) FROM records") == [(0,)]
    assert not any(isinstance(c, uplink.Ack) for c in g.commands())
    assert g.rows("SELECT error, count(*) FROM frames WHERE error IS NOT NULL GROUP BY error") == [("bad tag", 1)]
    # Its text as UKHAS sentences, which anyone can send: shown, marked open, never acknowledged.
    when = datetime(2026, 1, 1, 10, 4, 12, tzinfo=timezone.utc)
    for line in encode_musing_sentences(CALL, 12, when, 52.2, 0.12, 12345, BOOT, 5, "I am not the balloon."):
        g.hear(line)
    assert g.rows("SELECT text, authentic FROM records") == [("I am not the balloon.", 0)]
    g.hear(*musing_fragments(5, "The real musing, tagged.", AUTH), sentence(12), cue(12))
    assert g.rows("SELECT text, authentic FROM records") == [("The real musing, tagged.", 1)]
    acks = [r for c in g.commands() if isinstance(c, uplink.Ack) for r in c.ranges]
    assert (int(wire.Kind.MUSING), BOOT, 5, 5) in [(r.stream, r.boot, r.first, r.last) for r in acks]
    g.hear(*encode_musing_sentences(CALL, 13, when, 52.2, 0.12, 12345, BOOT, 5, "Open text again."))
    assert g.rows("SELECT text, authentic FROM records") == [("The real musing, tagged.", 1)]  # never replaced


def test_a_forged_unconfirmed_event_makes_the_ground_sign_nothing_again(tmp_path):
    """Before: one forged "unconfirmed" event made the ground sign and send an old SET_MODE again."""
    g = Ground(tmp_path)
    low_power = uplink.SetMode(1)
    row = g.store.outbox.queue(int(low_power.command_id), low_power.pack(), "set mode low_power")
    g.store.outbox.mark_sent(row)
    unconfirmed = uplink.unconfirmed_event(low_power, "set mode low_power", 1800)
    forged = wire.fragment_record(wire.Record(wire.Kind.EVENT, BOOT, 7, 1_767_225_600, unconfirmed), auth=FORGER)
    g.hear(*forged, sentence(6), cue(6))
    assert not any(isinstance(c, uplink.SetMode) for c in g.commands())
    assert g.store.outbox.pending() == []
    real = wire.fragment_record(wire.Record(wire.Kind.EVENT, BOOT, 7, 1_767_225_600, unconfirmed), auth=AUTH)
    g.hear(*real, sentence(12), cue(12))  # the payload's own: confirmed, as designed
    assert any(isinstance(c, uplink.SetMode) for c in g.commands())



@pytest.mark.parametrize("command, args", [
    (int(uplink.CommandId.PING), b""),  # short: struct.error, which killed the listener
    (int(uplink.CommandId.SET_MODE), b"\x09"),  # no such mode
    (250, b"\x00"),  # no such command
    (int(uplink.CommandId.PING), "text in the blob column"),  # SQLite keeps what it is given
])
def test_an_outbox_row_that_does_not_unpack_is_refused_and_the_listener_goes_on(tmp_path, command, args):
    """The dashboard writes the outbox as another user: a row whose arguments do not unpack as its
    command's (a damaged database, a hostile web user) is refused with the reason, shown as
    refused, never marked sent, and the operator's good command behind it still goes out signed."""
    from groundstation.store import GroundReader

    g = Ground(tmp_path)
    if isinstance(args, str):  # past Store's own checks, as another writer of the file can
        bad = g.store._db.execute("INSERT INTO outbox (queued_at, command, args, what) VALUES (?, ?, ?, ?)",
                                  ("2026-05-01T10:00:00.000+00:00", command, args, "text")).lastrowid
        g.store.commit()
    else:
        bad = g.store.outbox.queue(command, args, "a row no dashboard writes")
    ping = uplink.Ping(7)
    good = g.store.outbox.queue(int(ping.command_id), ping.pack(), "ping")
    g.hear(sentence(6), cue(6))
    assert uplink.Ping(7) in g.commands()
    assert g.store.outbox.pending() == []
    with GroundReader.open(g.db) as reader:
        rows = {r.id: r for r in reader.outbox.newest()}
        assert reader.outbox.waiting() == 0
    assert rows[good].state == "sent"
    assert rows[bad].state == "refused" and rows[bad].sent_at is None
    assert "does not unpack" in rows[bad].refused

def _message(station: str, n: int, data: bytes) -> tuple[str, bytes]:
    body = {"v": 1, "id": f"{station}:{n}", "station": station, "received_at": utc_now(), "hex": data.hex()}
    return f"stratoecho/{CALL}/frames/{station}", json.dumps(body).encode()


def test_colluding_stations_cannot_forge_a_record_and_one_honest_station_is_enough(tmp_path):
    """The quorum's stated limit was two stations agreeing on made-up bytes. Tagged frames now
    vouch for themselves: a forged one never counts, however many send it; a real one counts
    from the first station that heard it. Open sentences still need the quorum."""
    agg = Aggregator("127.0.0.1", 1, tmp_path / "net.db", downlink=AUTH, quorum=2)  # fed directly
    forged = musing_fragments(1, "Two liars agree.", FORGER)
    real = musing_fragments(2, "One honest station heard this.", AUTH)
    n = 0
    for station in ("liar1", "liar2", "liar3"):
        for f in forged:
            n += 1
            agg._handle(*_message(station, n, f))
    for f in real:
        n += 1
        agg._handle(*_message("hill", n, f))
    agg._handle(*_message("hill", n + 1, position(6)))  # open: one station is a claim only
    agg.store.commit()
    texts = [r[0] for r in agg.store._db.execute("SELECT text FROM records")]
    positions = agg.store._db.execute("SELECT count(*) FROM telemetry").fetchone()[0]
    agg.store.close()
    assert texts == ["One honest station heard this."] and positions == 0
    assert agg.stats.bad_tags == 3 * len(forged)


def test_a_signed_sentence_from_one_station_is_the_flights_track_at_a_keyed_aggregator(tmp_path):
    """As at the receiver: a sentence the flight signed vouches for itself, and is kept as the
    flight's (authentic), so the aggregate dashboard draws it; before, the aggregator kept it as a
    claim, and a keyed aggregate showed no track at all. An open one stays one station's claim."""
    agg = Aggregator("127.0.0.1", 1, tmp_path / "net.db", downlink=AUTH, quorum=2)  # fed directly
    signed = wire.encode_sentence(wire.Telemetry(CALL, 6, "10:04:11", 52.2, 0.12, 12345, 9, -40.5, 180.2, 3890, BOOT),
                                  AUTH)
    agg._handle(*_message("hill", 1, signed))
    agg._handle(*_message("hill", 2, position(12)))
    agg.store.commit()
    agg.store.close()
    with GroundReader.open(tmp_path / "net.db") as reader:
        assert reader.flight.callsign() == CALL and [t.seq for t in reader.track.telemetry()] == [6]
        assert reader.track.latest_position().seq == 6


def test_a_relayed_record_counts_from_one_station_when_its_own_tag_checks(tmp_path):
    """Another balloon's envelope is open to anyone to make, but what it carries vouches for itself:
    a tagged fragment inside counts from the first station, a forged one never, an open sentence
    inside still needs the quorum."""
    from stratoecho.wire.relay import encode_relayed
    from stratoecho.wire.uplink import payload_hash

    relayer = wire.DownlinkAuth.from_flight_key(new_key())
    agg = Aggregator("127.0.0.1", 1, tmp_path / "net.db", downlink=AUTH, quorum=2)  # fed directly
    agg.decoder.relayers[payload_hash("NEAR1")] = relayer  # aggregate --relayer-key NEAR1=FILE
    n = 0
    for text, auth in (("Relayed and real.", AUTH), ("Relayed and forged.", FORGER)):
        for f in musing_fragments(3 if auth is AUTH else 4, text, auth):
            n += 1
            agg._handle(*_message("hill", n, encode_relayed(f, payload_hash("NEAR1"), 1, relayer)))
    agg._handle(*_message("hill", n + 1, encode_relayed(position(6), payload_hash("NEAR1"), 1, relayer)))
    agg.store.commit()
    texts = [r[0] for r in agg.store._db.execute("SELECT text FROM records")]
    positions = agg.store._db.execute("SELECT count(*) FROM telemetry").fetchone()[0]
    agg.store.close()
    assert texts == ["Relayed and real."] and positions == 0  # the open sentence: one station's claim


def test_keygen_downlink_from_writes_the_derived_key_that_checks_but_cannot_sign(tmp_path, capsys):
    from groundstation.__main__ import main
    from stratoecho.wire.downlink import derive_downlink_key, load_auth
    from stratoecho.wire.uplink_keys import DOWNLINK, KeyFileError, load_key

    flight = tmp_path / "uplink.key"
    key = write_flight_key(flight)
    assert main(["keygen", "--downlink-from", str(flight), str(tmp_path / "downlink.key")]) == 0
    derived = load_key(tmp_path / "downlink.key", DOWNLINK)  # mode 600, keygen's line with a prefix of its own
    assert (tmp_path / "downlink.key").read_text().startswith("stratoecho-downlink-key-v1:")
    with pytest.raises(KeyFileError, match="holds a downlink key .* can sign nothing, so it is no flight key"):
        load_key(tmp_path / "downlink.key")  # never taken for the flight key
    assert derived == derive_downlink_key(key) != key
    auth = load_auth(tmp_path / "downlink.key", derived=True)
    frame = musing_fragments(1, "checked with the downlink key alone", AUTH)[0]
    assert wire.decode_frame(frame, auth).seq == 1
    signed = uplink.sign(key, 1, CALL, uplink.Ping(1))
    assert uplink.verify(key, signed, CALL, 0).counter == 1
    with pytest.raises(uplink.UplinkRejected) as e:  # the derived key makes no frame the payload accepts
        uplink.verify(key, uplink.sign(derived, 1, CALL, uplink.Ping(1)), CALL, 0)
    assert e.value.reason == "bad tag"
    weak = tmp_path / "weak.key"
    weak.write_text("00" * 32 + "\n")
    weak.chmod(0o600)
    assert main(["keygen", "--downlink-from", str(weak), str(tmp_path / "d2.key")]) == 1
    assert "keygen" in capsys.readouterr().err and not (tmp_path / "d2.key").exists()


def test_a_tagged_late_position_takes_the_place_of_an_open_sentence_under_its_number(tmp_path):
    """Sentences are open: a forged one heard first stands only until the balloon's own tagged copy
    of that position (a late position record) comes; an open one never replaces a tagged one."""
    g = Ground(tmp_path)
    forged = wire.Telemetry(CALL, 6, "10:04:11", 48.85, 2.35, 31000, 9, -50.0, 10.0, 3900, BOOT)
    real = wire.Telemetry(CALL, 6, "10:04:11", 52.2, 0.12, 12345, 9, -40.5, 180.2, 3890, BOOT)
    late = wire.fragment_body(wire.Kind.TELEMETRY, BOOT, 6, struct.pack(">I", 1_767_225_600) + wire.encode_sentence(real),
                              auth=AUTH)
    query = "SELECT lat, alt, authentic FROM telemetry WHERE seq = 6"
    g.hear(wire.encode_sentence(forged))
    assert g.rows(query) == [(48.85, 31000, 0)]
    g.hear(*late)
    assert g.rows(query) == [(52.2, 12345, 1)]
    g.hear(wire.encode_sentence(forged))
    assert g.rows(query) == [(52.2, 12345, 1)]
