"""The payload side of repair: listen windows after every Nth sentence, signed RESENDs,
fragments rebuilt from the store (never for a record that is still queued)."""

from __future__ import annotations

import threading

from payload.assembly import build_onboard
from payload.clock import Clock
from payload.config import PayloadConfig, RadioSection, UplinkSection
from payload.link.frames import LinkParts
from payload.link.transmitter import Transmitter
from payload.onboard import Onboard
from payload.store import Store
from sim.world.flight import SimSensors
from stratoecho import wire
from stratoecho.wire import Kind, uplink
from stratoecho.wire.downlink import DownlinkAuth
from stratoecho.wire.events import event
from stratoecho.wire.uplink_keys import new_key, write_key_file
from tests.fakes import EVERY_10_S, RecordingRadio

# A key file must hold a key that passes uplink_keys.key_weakness: no counting pattern.
KEY = new_key()  # a hash of a string in tests/ is a published key: refused
AUTH = DownlinkAuth.from_flight_key(KEY)  # what the payload tags its records with


class TwoWayRadio(RecordingRadio):
    """Records what is sent; hands out queued uplink frames when the payload listens."""

    receives = True

    def __init__(self) -> None:
        super().__init__()
        self.inbox: list[bytes] = []
        self.listens = 0

    def receive(self, timeout_s: float) -> list[bytes]:
        self.listens += 1
        out, self.inbox = self.inbox, []
        return out


def _sent_musing(store: Store, boot: int, text: str, tx: Transmitter) -> None:
    store.queue.enqueue(Kind.MUSING, boot, lambda seq: wire.Record(wire.Kind.MUSING, boot, seq, 0, text).body())
    while tx.send_one():
        pass


def test_repair_rebuilds_named_fragments_and_parity_beyond_the_first_cut(tmp_path):
    store = Store(tmp_path / "q.db")
    boot = store.counters.start_boot()
    radio = RecordingRadio()
    tx = Transmitter(LinkParts(store, radio, Clock(speedup=1e6), threading.Event()),
                     RadioSection(mtu=64, fec_prior_loss=0.0), EVERY_10_S, auth=AUTH)
    _sent_musing(store, boot, "the horizon curves and the battery sighs " * 6, tx)
    first = [wire.decode_frame(f, AUTH) for f in radio.frames]
    k = first[0].k
    # The ground heard all but two data fragments and asks for two parity shards beyond n.
    assert tx.request_repair(Kind.MUSING, boot, 1, (k, k + 1)) == 2
    while tx.send_one():
        pass
    repairs = [wire.decode_frame(f, AUTH) for f in radio.frames[len(first):]]
    assert [r.index for r in repairs] == [k, k + 1] and tx.stats.repair_frames == 2
    ra = wire.Reassembler()
    heard = first[: k - 2] + repairs
    out = [r for f in heard if (r := ra.add(f))]
    assert out and out[0].text.startswith("the horizon")


def test_repair_of_a_still_queued_record_is_skipped(tmp_path):
    store = Store(tmp_path / "q.db")
    boot = store.counters.start_boot()
    tx = Transmitter(LinkParts(store, RecordingRadio(), Clock(speedup=1e6), threading.Event()), RadioSection(),
                     EVERY_10_S, auth=AUTH)
    store.queue.enqueue(Kind.MUSING, boot, lambda seq: wire.Record(wire.Kind.MUSING, boot, seq, 0, "not sent yet").body())
    assert tx.request_repair(Kind.MUSING, boot, 1, ()) == 0
    assert tx.stats.repairs_skipped_queued == 1
    assert tx.request_repair(Kind.MUSING, boot, 99, ()) == 0  # unknown: nothing to send


def test_daemon_listens_after_every_nth_sentence_and_acts_on_signed_resend(tmp_path):
    key_file = tmp_path / "uplink.key"
    write_key_file(key_file, key=KEY)
    cfg = PayloadConfig(uplink=UplinkSection(key_file=str(key_file), window_every=3, window_s=1.0))
    cfg.radio.fec_prior_loss = 0.0
    clock = Clock(speedup=1e6)
    radio = TwoWayRadio()
    d = build_onboard(cfg, SimSensors(clock), radio, clock, None, tmp_path / "data")
    d.parts.store.queue.enqueue(Kind.MUSING, d.parts.flight.boot,
                          lambda seq: wire.Record(wire.Kind.MUSING, d.parts.flight.boot, seq, 0, "a thought " * 30).body())
    while d.parts.transmitter.send_one():
        pass
    sent_before = len(radio.frames)
    forged = uplink.sign(bytes(32), 1, cfg.callsign, uplink.Ping(1))
    boot = d.parts.flight.boot
    resend = uplink.sign(KEY, 1, cfg.callsign, uplink.Resend((uplink.ResendItem(int(wire.Kind.MUSING), boot, 1, (0,)),)))
    radio.inbox = [forged, resend, resend]  # a forgery, then a frame and its replay
    for _ in range(3):
        d.daemon.run_once("beacon")
        d.parts.transmitter.send_one()
    assert d.parts.transmitter.stats.windows == 1  # sentence 3 opened the window, 1 and 2 did not
    assert d.parts.gate.rejections == {"bad tag": 1, "replayed": 1}, d.parts.gate.rejections
    assert d.parts.commands.stats.commands == {"resend": 1} and d.parts.commands.stats.repairs_requested == 1
    assert d.parts.gate.rejections == {"bad tag": 1, "replayed": 1}
    while d.parts.transmitter.send_one():
        pass
    repaired = [wire.decode_frame(f, AUTH) for f in radio.frames[sent_before:] if f[0] == wire.MAGIC]
    # (the beacons' readings may also have sent a phase or mode event meanwhile)
    assert [(r.seq, r.index) for r in repaired if r.kind == wire.Kind.MUSING] == [(1, 0)]


def test_link_reports_from_the_ground_drive_the_loss_estimate_and_the_parity(tmp_path):
    store = Store(tmp_path / "q.db")
    boot = store.counters.start_boot()
    cfg = RadioSection(mtu=64, fec_prior_loss=0.3)
    tx = Transmitter(LinkParts(store, TwoWayRadio(), Clock(speedup=1e6), threading.Event()), cfg, EVERY_10_S,
                     auth=AUTH)
    tx.listen_after(UplinkSection(window_every=1, window_s=0.01), lambda frame: None)
    k = 4
    before = tx.hand.parity(k)
    heard = 0
    for seq in range(1, 601):  # six hundred windows (the estimate has a 200-frame half-life), all heard
        store.queue.enqueue(Kind.TELEMETRY, boot, lambda s: b"$$T\n")
        tx.send_one()
        heard += 2  # the sentence and its window cue
        assert tx.on_link_report(seq, heard)
    assert tx.loss_estimate() < 0.05 and tx.hand.parity(k) < before
    assert not tx.on_link_report(999, heard)  # a window we never opened


def test_payload_can_send_its_position_as_habpack_and_the_ground_reads_it(tmp_path):
    from groundstation.link.decoder import FrameDecoder

    key_file = tmp_path / "uplink.key"
    write_key_file(key_file, key=KEY)
    cfg = PayloadConfig(telemetry_format="habpack", uplink=UplinkSection(key_file=str(key_file)))
    clock = Clock(speedup=1e6)
    radio = RecordingRadio()
    d = build_onboard(cfg, SimSensors(clock), radio, clock, None, tmp_path / "data")
    d.daemon.run_once("beacon")
    d.daemon.run_once("beacon")
    while d.parts.transmitter.send_one():
        pass
    positions = [f for f in radio.frames if f[0] in wire.HABPACK_FIRST_BYTES]
    assert len(positions) == 1  # the newest; the one it superseded goes late, as a record carrying it
    decoder = FrameDecoder(auth=AUTH)
    records = [r for r in (decoder.feed(f).record for f in radio.frames) if r is not None]
    assert [(r.kind, r.boot, r.seq, r.callsign) for r in records if r.kind is wire.Kind.TELEMETRY] == [
        (wire.Kind.TELEMETRY, d.parts.flight.boot, 2, "STRATO1"),
        (wire.Kind.TELEMETRY, d.parts.flight.boot, 1, "STRATO1")]  # newest first
    assert len(positions[0]) < len(wire.encode_sentence(wire.decode_frame(positions[0], AUTH)))  # shorter on air


def _keyed_daemon(tmp_path) -> tuple[Onboard, PayloadConfig]:
    """A daemon whose command gate holds KEY, on a fast clock, with a radio that answers."""
    key_file = tmp_path / "uplink.key"
    write_key_file(key_file, key=KEY)
    cfg = PayloadConfig(uplink=UplinkSection(key_file=str(key_file)))
    clock = Clock(speedup=1e6)
    return build_onboard(cfg, SimSensors(clock), TwoWayRadio(), clock, None, tmp_path / "data"), cfg


def test_a_signed_ack_marks_exactly_its_ranges_acknowledged_durably(tmp_path):
    d, cfg = _keyed_daemon(tmp_path)
    boot = d.parts.flight.boot
    for _ in range(5):
        d.parts.store.queue.enqueue(Kind.MUSING, boot, lambda seq: wire.Record(wire.Kind.MUSING, boot, seq, 0, "m").body())
    ack = uplink.Ack((uplink.AckRange(int(wire.Kind.MUSING), d.parts.flight.boot, 2, 3),
                      uplink.AckRange(int(wire.Kind.MUSING), d.parts.flight.boot + 1, 1, 9)))
    d.parts.commands.on_frame(uplink.sign(KEY, 1, cfg.callsign, ack))
    assert d.parts.commands.stats.records_acknowledged == 2
    d.parts.store.database.db.close()  # no clean close: what acknowledge returned must already be on the card
    store = Store(tmp_path / "data" / "queue.db")
    states = [store.queue.find(Kind.MUSING, d.parts.flight.boot, seq)[1] for seq in range(1, 6)]
    assert states == ["queued", "acknowledged", "acknowledged", "queued", "queued"]


def test_health_sends_store_faults_down_as_events_and_reports_the_queue(tmp_path):
    cfg = PayloadConfig()
    clock = Clock(speedup=1e6)
    d = build_onboard(cfg, SimSensors(clock), TwoWayRadio(), clock, None, tmp_path / "data")
    boot = d.parts.flight.boot
    d.parts.store.queue.enqueue(Kind.MUSING, boot, lambda seq: wire.Record(wire.Kind.MUSING, boot, seq, 0, "m").body())
    d.parts.store.database.fault("store write failed (FullError: disk full); running degraded")
    d.daemon.run_once("health")
    events = [wire.Record.from_body(wire.Kind.EVENT, q.boot, q.seq, q.payload).text
              for q in d.parts.store.queue.queued(limit=10, kinds=(Kind.EVENT,))]
    assert events == ["store fault: store write failed (FullError: disk full); running degraded"]
    (health,) = d.parts.store.queue.queued(limit=10, kinds=(Kind.HEALTH,))
    fields = wire.Record.from_body(wire.Kind.HEALTH, health.boot, health.seq, health.payload).content
    assert fields["queue_depth"] == 2 and fields["faults"] == 1 and fields["musing_seq"] == 1
    assert fields["store"] == "ok" and fields["disk_free_kb"] > 0


def test_out_of_contact_the_payload_beacons_alone_and_keeps_its_records_for_the_next_pass(tmp_path):
    from payload.link.windows import CONTACT_LOST_WINDOWS

    store = Store(tmp_path / "q.db")
    boot = store.counters.start_boot()
    radio = TwoWayRadio()
    tx = Transmitter(LinkParts(store, radio, Clock(speedup=1e6), threading.Event()),
                     RadioSection(mtu=64, fec_prior_loss=0.0), EVERY_10_S, auth=AUTH)
    tx.listen_after(UplinkSection(window_every=1000), lambda frame: None)
    assert not tx.windows.out_of_contact()  # never heard: a receive-only ground must get everything
    tx.windows.report_window = 0  # the ground answered in window 0 ...
    tx.stats.windows = CONTACT_LOST_WINDOWS  # ... and has said nothing since
    assert tx.windows.out_of_contact()
    store.queue.enqueue(Kind.MUSING, boot, lambda seq: wire.Record(wire.Kind.MUSING, boot, seq, 0, "held " * 20).body())
    store.queue.enqueue(Kind.TELEMETRY, boot, lambda seq: b"$$STRATO1,1,10:00:00,52.1,-0.1,1000,9,1.0,900.0,4000,1*0000\n")
    while tx.send_one():
        pass
    assert [f[:2] for f in radio.frames] == [b"$$"]  # the beacon went, the musing waits
    assert store.queue.depth() == {"musing": 1} and tx.stats.held_frames >= 1
    tx.windows.report_window = tx.stats.windows  # a pass begins: the ground is heard again
    while tx.send_one():
        pass
    assert store.queue.depth() == {} and any(f[0] == wire.MAGIC for f in radio.frames)


def test_when_a_pass_begins_what_matters_most_goes_first(tmp_path):
    """Out of contact everything waits; the first frames of the next pass carry the newest
    position, then events and musings, and only then health and pictures."""
    from payload.link.windows import CONTACT_LOST_WINDOWS

    store = Store(tmp_path / "q.db")
    boot = store.counters.start_boot()
    radio = TwoWayRadio()
    tx = Transmitter(LinkParts(store, radio, Clock(speedup=1e6), threading.Event()),
                     RadioSection(mtu=255, fec_prior_loss=0.0, interleave=1), EVERY_10_S, auth=AUTH)
    tx.listen_after(UplinkSection(window_every=1000), lambda frame: None)
    tx.windows.report_window, tx.stats.windows = 0, CONTACT_LOST_WINDOWS  # between passes
    body = lambda kind, content: (lambda seq: wire.Record(kind, boot, seq, 0, content).body())  # noqa: E731
    store.queue.enqueue(Kind.IMAGE, boot, body(wire.Kind.IMAGE, b"\xff\xd8" + bytes(150)))
    store.queue.enqueue(Kind.HEALTH, boot, body(wire.Kind.HEALTH, {"uptime_s": 5}))
    store.queue.enqueue(Kind.MUSING, boot, body(wire.Kind.MUSING, "the ground went quiet an hour ago"))
    store.queue.enqueue(Kind.EVENT, boot, body(wire.Kind.EVENT, event("mode", before="nominal", after="low_power", why="x")))
    store.fallback.flush()
    assert not tx.send_one()  # nothing goes into the void
    tx.windows.report_window = tx.stats.windows  # the ground is heard: a pass begins
    store.queue.enqueue(Kind.TELEMETRY, boot, lambda seq: b"$$STRATO1,9,10:00:00,52.1,-0.1,1000,9,1.0,900.0,4000,1*0000\n")
    while tx.send_one():
        pass
    kinds = [wire.decode_frame(f, AUTH).kind if f[0] == wire.MAGIC else "sentence" for f in radio.frames]
    order = [k for i, k in enumerate(kinds) if k not in kinds[:i]]  # first appearance of each
    assert order == ["sentence", wire.Kind.EVENT, wire.Kind.MUSING, wire.Kind.HEALTH, wire.Kind.IMAGE]


def _events(d: Onboard) -> list[str]:
    return [wire.Record.from_body(wire.Kind.EVENT, q.boot, q.seq, q.payload).text
            for q in d.parts.store.queue.queued(limit=100, kinds=(Kind.EVENT,))]


def test_set_intervals_cannot_silence_the_beacon_or_breach_the_planned_duty_cycle(tmp_path):
    """A signed SET_INTERVALS of 65535 s would have left no position and no listen window for
    the rest of the flight, with no way to undo it: refused, said on air, intervals unchanged.
    Faster than the configured beacon (what the duty cycle was planned for) is refused too."""
    d, cfg = _keyed_daemon(tmp_path)
    planned = cfg.schedule.telemetry_s
    counter = iter(range(1, 100))
    for cmd in (uplink.SetIntervals(65535, 600), uplink.SetIntervals(1, 600), uplink.SetIntervals(30, 10)):
        d.parts.commands.on_frame(uplink.sign(KEY, next(counter), cfg.callsign, cmd))
        assert (d.parts.cadence.telemetry_s, d.parts.cadence.musing_s) == (planned, 180.0)
    refused = [e for e in _events(d) if e.startswith("set_intervals refused")]
    assert len(refused) == 3 and "65535 s is outside 10..120 s" in refused[0] and "below the 60 s" in refused[2]
    d.parts.commands.on_frame(uplink.sign(KEY, next(counter), cfg.callsign, uplink.SetIntervals(60, 900)))
    assert (d.parts.cadence.telemetry_s, d.parts.cadence.musing_s) == (60.0, 900.0)
    pending = [e for e in _events(d) if e.startswith("unconfirmed set_intervals")]
    assert len(pending) == 1 and "intervals 60 s telemetry, 900 s musings; reverts in 1800 s unless sent again" in pending[0]
    (unconfirmed,) = [wire.Record.from_body(wire.Kind.EVENT, q.boot, q.seq, q.payload).content
                      for q in d.parts.store.queue.queued(limit=100, kinds=(Kind.EVENT,))
                      if wire.Record.from_body(wire.Kind.EVENT, q.boot, q.seq, q.payload).content.name == "unconfirmed"]
    assert uplink.unconfirmed_command(unconfirmed) == uplink.SetIntervals(60, 900)  # what the ground sends back
