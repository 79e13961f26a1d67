"""Ground-side repair: the NACK planner, listen answering uplink windows over real UDP,
and the bench channel's reverse path. Loopback only, bounded waits."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest

from groundstation.__main__ import build_parser, cmd_listen
from groundstation.link.repair import NackPlanner
from groundstation.link.uplink import generate_key_file
from groundstation.link.windows import WindowAnswerer
from sim.bench.run.relay import UPLINK_SEED, Channel
from sim.channel.loss import GilbertElliott, LossSpec
from stratoecho import wire
from stratoecho.logs import setup_logging
from stratoecho.wire.uplink import Ack, AckRange, LinkReport, Resend, ResendItem, payload_hash, verify
from tests.fakes import AUTH, live_cue, wait_for, write_flight_key

MUSING, EVENT = int(wire.Kind.MUSING), int(wire.Kind.EVENT)


def record(seq: int, kind: wire.Kind = wire.Kind.MUSING, boot: int = 3, words: int = 12) -> wire.Record:
    return wire.Record(kind, boot, seq, 1714565055 + seq, " ".join(f"w{seq}-{i}" for i in range(words)))


def frags(rec: wire.Record, mtu: int = 40, parity: int = 1) -> list[wire.Fragment]:
    return [wire.decode_fragment(f, AUTH) for f in wire.fragment_record(rec, mtu=mtu, parity=parity, auth=AUTH)]


def feed(planner: NackPlanner, reasm: wire.Reassembler, fragments: list[wire.Fragment]) -> None:
    """What the listen loop does per fragment."""
    for f in fragments:
        planner.heard(f, complete=reasm.add(f) is not None)


def complete(planner: NackPlanner, *seqs: int, kind: int = MUSING, boot: int = 3) -> None:
    for s in seqs:
        planner.completed((kind, boot, s))


# --------------------------------------------------------------------------- planner


def test_incomplete_record_asks_for_still_needed_plus_margin_never_received_indices():
    rec = record(7)
    fs = frags(rec, parity=2)
    k, n = fs[0].k, fs[0].n
    assert k >= 3 and n == k + 2
    planner, reasm = NackPlanner(), wire.Reassembler()
    feed(planner, reasm, [fs[0], fs[2]])  # k-2 still needed, n-2 never heard
    still, never = reasm.missing()[(MUSING, 3, 7)]
    assert still == k - 2 and never == [1] + list(range(3, n))
    [item] = planner.plan(reasm.missing())
    assert (item.stream, item.boot, item.seq) == (MUSING, 3, 7)
    assert item.fragments == tuple(never[: still + 1])  # margin 1
    assert planner.items_requested == 1


def test_too_few_never_received_indices_are_topped_up_with_fresh_parity_beyond_n():
    fs = frags(record(7), parity=0)  # n == k: no parity was sent
    k = fs[0].k
    planner, reasm = NackPlanner(margin=2), wire.Reassembler()
    feed(planner, reasm, fs[1:2])
    [item] = planner.plan(reasm.missing())
    never = [0] + list(range(2, k))
    assert item.fragments == tuple(never + [k, k + 1])  # k-1 needed + 2 margin; indices >= n make it up


def test_fresh_parity_stops_at_254():
    planner = NackPlanner(margin=3)
    f = wire.Fragment(wire.Kind.MUSING, 3, 1, 253, 1, 254, 10, b"x" * 10)
    planner.heard(f)
    [item] = planner.plan({(MUSING, 3, 1): (1, [])})
    assert item.fragments == (254,)  # only one index is left below 255


def test_holes_between_records_heard_are_asked_for_whole():
    planner = NackPlanner()
    complete(planner, 4, 6, 9)
    complete(planner, 1, 3, kind=EVENT)
    complete(planner, 8, boot=4)  # another boot: no hole across boots
    items = planner.plan({})
    assert [(i.stream, i.boot, i.seq, i.fragments) for i in items] == [
        (MUSING, 3, 5, ()), (MUSING, 3, 7, ()), (MUSING, 3, 8, ()), (EVENT, 3, 2, ())]


def test_a_hole_filled_late_or_partly_is_asked_for_as_it_is_now():
    planner, reasm = NackPlanner(retry_after=0), wire.Reassembler()
    complete(planner, 4, 7)
    fs = frags(record(6))
    feed(planner, reasm, fs[:1])  # 6 partly heard: now an incomplete record, not a hole
    complete(planner, 5)  # heard out of order: no longer a hole
    items = planner.plan(reasm.missing())
    assert [(i.seq, bool(i.fragments)) for i in items] == [(6, True)]


def test_holes_wider_than_the_cap_are_ignored():
    planner = NackPlanner(max_gap=50, max_items=100)
    complete(planner, 1, 60)  # 58 unheard between: too many to be losses worth asking about
    assert planner.plan({}) == []
    complete(planner, 9)  # now holes 2..8 (7) and 10..59 (50): both within the cap
    assert [i.seq for i in planner.plan({})] == list(range(2, 9)) + list(range(10, 60))


def test_reordered_seq_splits_a_wide_gap_into_askable_holes():
    planner = NackPlanner(max_gap=5)
    complete(planner, 20, 1)  # arrival order: 20 first, then 1
    assert planner.plan({}) == []
    complete(planner, 17)
    assert [i.seq for i in planner.plan({})] == [18, 19]


def test_retry_after_and_max_asks():
    planner = NackPlanner(retry_after=2, max_asks=3)
    complete(planner, 1, 3)
    asked = [bool(planner.plan({})) for _ in range(12)]
    # window 1 asks; the next 2 windows wait; so on, 3 times, then never again
    assert asked == [True, False, False, True, False, False, True] + [False] * 5
    assert planner.items_requested == 3 and planner.given_up == 1


def test_no_more_asks_once_the_record_completes():
    planner, reasm = NackPlanner(retry_after=0), wire.Reassembler()
    fs = frags(record(7))
    feed(planner, reasm, fs[:1])
    assert planner.plan(reasm.missing())
    feed(planner, reasm, fs[1:])  # the answer came down: complete
    assert reasm.missing() == {}
    assert planner.plan(reasm.missing()) == []
    feed(planner, reasm, fs[:1])  # a late duplicate changes nothing
    assert planner.plan(reasm.missing()) == [] and planner.plan({(MUSING, 3, 7): (1, [1])}) == []


def test_max_items_per_window_and_determinism():
    def run() -> list[list[ResendItem]]:
        planner = NackPlanner(max_items=3, retry_after=0)
        complete(planner, 1, 10)
        return [planner.plan({}) for _ in range(4)]

    first = run()
    assert [len(w) for w in first] == [3, 3, 3, 3]
    assert [i.seq for i in first[0]] == [2, 3, 4]
    assert first == run()


def test_planner_refuses_nonsense_settings():
    with pytest.raises(ValueError, match="max_asks"):
        NackPlanner(max_asks=0)
    with pytest.raises(ValueError, match="margin"):
        NackPlanner(margin=-1)


# --------------------------------------------------------------------------- listen over UDP


def start_listen(tmp_path: Path, *extra: str) -> tuple[threading.Thread, threading.Event, tuple[str, int], dict]:
    """cmd_listen in a thread on a free loopback port; returns its address from the bound socket."""
    import groundstation.sources.udp as gm  # the module the registered udp source opens from

    setup_logging()
    args = build_parser().parse_args(["listen", "--udp", "127.0.0.1:0", "--db", str(tmp_path / "g.db"),
                                      "--quiet", "--stats", str(tmp_path / "g.json"), *extra])
    stop, box = threading.Event(), {}
    real = gm.UdpSource

    class Spy(real):  # the test needs the port the listener bound
        def __init__(self, *a):
            super().__init__(*a)
            box["address"] = self.address

    gm.UdpSource = Spy
    worker = threading.Thread(target=lambda: box.setdefault("rc", cmd_listen(args, stop)))
    try:
        worker.start()
        wait_for(lambda: "address" in box)
    finally:
        gm.UdpSource = real
    return worker, stop, box["address"], box


def sentence(seq: int) -> bytes:
    """The payload's position sentence, signed as it keys it."""
    hms = time.strftime("%H:%M:%S", time.gmtime())  # its GPS time now: the window cue after it is dated by it
    return wire.encode_sentence(
        wire.Telemetry("STRATO", seq, hms, 52.1, -0.1, 12345, 9, -40.5, 180.2, 3700, 3), AUTH)


def cue(seq: int, boot: int = 3, callsign: str = "STRATO", auth=AUTH) -> bytes:
    """The payload's window cue after sentence `seq`, tagged with `auth`."""
    return live_cue(boot, seq, payload_hash(callsign), auth)


def test_listen_answers_a_window_cue_with_a_signed_resend_to_the_uplink_address(tmp_path, capsys):
    key_path = tmp_path / "uplink.key"
    key = write_flight_key(key_path)
    payload = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # where uplink goes: the bridge's transmitter
    bridge = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # where the frames come from
    try:
        payload.bind(("127.0.0.1", 0))
        bridge.bind(("127.0.0.1", 0))
        payload.settimeout(5)
        worker, stop, address, box = start_listen(tmp_path, "--flight-key", str(key_path), "--callsign", "STRATO",
                                                  "--uplink-to", "%s:%d" % payload.getsockname())
        partial = wire.fragment_record(record(7), mtu=40, parity=1, auth=AUTH)
        k = wire.decode_fragment(partial[0], AUTH).k
        frames = ([sentence(5)] + wire.fragment_record(record(4), mtu=40, auth=AUTH) + partial[:k - 1]
                  + wire.fragment_record(record(6), mtu=40, auth=AUTH) + [sentence(6), cue(6)])
        for f in frames:
            bridge.sendto(f, address)
        got, sender = payload.recvfrom(4096)  # sent from the listening socket itself
        assert sender == address
        report = verify(key, got, "STRATO", last_counter=0)
        # First what the ground heard of boot 3 up to the cue (every frame sent so far, the cue too).
        assert report.counter == 1 and report.command == LinkReport(3, 6, len(frames))
        got, _ = payload.recvfrom(4096)
        v = verify(key, got, "STRATO", last_counter=1)
        assert v.counter == 2 and isinstance(v.command, Resend)
        assert [(i.stream, i.boot, i.seq, i.fragments) for i in v.command.items] == [
            (MUSING, 3, 7, (k - 1, k)),  # incomplete first: 1 still needed + margin 1
            (MUSING, 3, 5, ()),  # never heard: whole record
        ]
        got, _ = payload.recvfrom(4096)
        v = verify(key, got, "STRATO", last_counter=2)
        assert v.counter == 3 and v.command == Ack((AckRange(MUSING, 3, 4, 4), AckRange(MUSING, 3, 6, 6)))
        bridge.sendto(sentence(12), address)  # a sentence numbered for a window, without a cue: nothing
        bridge.sendto(cue(6), address)  # the same cue again (a replay): nothing
        bridge.settimeout(0.5)
        payload.settimeout(0.5)
        with pytest.raises(TimeoutError):
            payload.recvfrom(4096)
        with pytest.raises(TimeoutError):
            bridge.recvfrom(4096)  # never to a datagram's sender
    finally:
        stop.set()
        worker.join(timeout=5)
        payload.close()
        bridge.close()
    assert not worker.is_alive() and box["rc"] == 0
    err = capsys.readouterr().err
    assert "repair: 1 nacks sent, 2 items requested" in err
    assert err.count('"event": "nack"') == 1  # logged once
    stats = json.loads((tmp_path / "g.json").read_text())
    assert stats["nacks_sent"] == 1 and stats["items_requested"] == 2 and stats["frames"] == len(frames) + 2
    assert stats["link_reports"] == 1 and stats["acks_sent"] == 1 and stats["cues_refused"] == 1
    state = json.loads((tmp_path / "g.db.uplink.json").read_text())["payloads"]["STRATO"]
    assert state["next_counter"] == 4 and state["window"] == [3, 6]


def test_a_udp_station_without_uplink_to_answers_no_cue(tmp_path):
    """--udp gives no address of its own to send on: without --uplink-to the station only listens,
    whoever sent the cue (it never answers a datagram's sender)."""
    key_path = tmp_path / "uplink.key"
    write_flight_key(key_path)
    worker, stop, address, box = start_listen(tmp_path, "--flight-key", str(key_path))
    payload = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        payload.bind(("127.0.0.1", 0))
        payload.settimeout(0.5)
        for f in [sentence(6), cue(6)]:
            payload.sendto(f, address)
        with pytest.raises(TimeoutError):
            payload.recvfrom(4096)
    finally:
        stop.set()
        worker.join(timeout=5)
        payload.close()
    assert box["rc"] == 0
    stats = json.loads((tmp_path / "g.json").read_text())
    assert stats["frames"] == 2 and stats["nacks_sent"] == 0 and "link_reports" not in stats


def test_listen_without_a_key_never_sends(tmp_path, capsys):
    worker, stop, address, box = start_listen(tmp_path)
    payload = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        payload.bind(("127.0.0.1", 0))
        payload.settimeout(0.5)
        frames = wire.fragment_record(record(4), mtu=40, auth=AUTH) + wire.fragment_record(record(6), mtu=40, auth=AUTH)
        for f in frames + [sentence(0)]:
            payload.sendto(f, address)
        with pytest.raises(TimeoutError):
            payload.recvfrom(4096)
    finally:
        stop.set()
        worker.join(timeout=5)
        payload.close()
    assert box["rc"] == 0
    stats = json.loads((tmp_path / "g.json").read_text())
    assert stats["nacks_sent"] == 0 and stats["items_requested"] == 0
    assert "repair:" not in capsys.readouterr().err


def test_uplink_key_needs_a_source_that_transmits_and_a_usable_key(tmp_path, capsys):
    key_path = tmp_path / "uplink.key"
    generate_key_file(key_path)
    args = build_parser().parse_args(["listen", "--replay", "-", "--db", str(tmp_path / "g.db"),
                                      "--flight-key", str(key_path), "--uplink-to", "127.0.0.1:9"])
    assert cmd_listen(args) == 2
    assert "--uplink-to goes with --udp" in capsys.readouterr().err
    key_path.chmod(0o644)
    args = build_parser().parse_args(["listen", "--udp", "127.0.0.1:0", "--db", str(tmp_path / "g.db"),
                                      "--uplink-key", str(key_path)])
    assert cmd_listen(args) == 1
    assert "chmod 600" in capsys.readouterr().err


# --------------------------------------------------------------------------- channel reverse path


@pytest.mark.parametrize("uplink_loss", [LossSpec(0.0), LossSpec(0.5, burst=2)])
def test_channel_relays_ground_replies_to_the_payload_with_seeded_loss(tmp_path, uplink_loss):
    stop = threading.Event()
    ground = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    payload = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ground.bind(("127.0.0.1", 0))
    payload.bind(("127.0.0.1", 0))
    ground.settimeout(5)
    ch = Channel(("127.0.0.1", 0), ground.getsockname(), LossSpec(0.0), 7, tmp_path / "air.hex", stop,
                 uplink_loss=uplink_loss, uplink_hex=tmp_path / "uplink.hex")
    worker = threading.Thread(target=ch.run)
    worker.start()
    n = 40
    try:
        payload.sendto(b"$$down", ch.sock.getsockname())
        down, relay = ground.recvfrom(4096)
        assert down == b"$$down"
        for i in range(n):
            ground.sendto(bytes([0xED, i]), relay)  # replies go to where the frames came from
        wait_for(lambda: ch.stats.uplink_in == n)
        payload.settimeout(0.3)
        heard = []
        while len(heard) < ch.stats.uplink_forwarded:
            heard.append(payload.recvfrom(4096)[0][1])
    finally:
        stop.set()
        worker.join(timeout=2)
        ch.close(tmp_path / "channel.json")
        ground.close()
        payload.close()
    model = GilbertElliott(uplink_loss, 7 ^ UPLINK_SEED)
    expected = [i for i in range(n) if not model.drop()]
    assert heard == expected
    stats = json.loads((tmp_path / "channel.json").read_text())
    assert stats["uplink_in"] == n and stats["uplink_forwarded"] == len(expected)
    assert stats["uplink_dropped"] == n - len(expected) and stats["frames_forwarded"] == 1
    if uplink_loss.mean_loss:
        assert 0 < len(expected) < n
    assert (tmp_path / "uplink.hex").read_text().splitlines() == [bytes([0xED, i]).hex() for i in range(n)]
    assert (tmp_path / "air.hex").read_text() == b"$$down".hex() + "\n"


def test_channel_drops_uplink_before_any_payload_frame(tmp_path):
    stop = threading.Event()
    ch = Channel(("127.0.0.1", 0), ("127.0.0.1", 9), LossSpec(0.0), 1, tmp_path / "air.hex", stop)
    worker = threading.Thread(target=ch.run)
    worker.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as ground:
            ground.sendto(b"\xed\x00", ch.out.getsockname())
            wait_for(lambda: ch.stats.uplink_in == 1)
    finally:
        stop.set()
        worker.join(timeout=2)
        ch.close()
    assert not worker.is_alive()
    assert (ch.stats.uplink_dropped, ch.stats.uplink_forwarded) == (1, 0)  # nowhere to send it yet


def test_acks_are_ranges_of_whole_records_repeated_a_few_windows_then_quiet():
    planner = NackPlanner(ack_repeats=2)
    for seq in (3, 4, 5, 8):
        planner.completed((MUSING, 2, seq))
    planner.completed((EVENT, 2, 1))
    first = planner.acks()
    assert first == [AckRange(MUSING, 2, 3, 5), AckRange(MUSING, 2, 8, 8), AckRange(EVENT, 2, 1, 1)]
    assert planner.acks() == first  # sent twice: an uplink frame can be lost
    assert planner.acks() == []  # then quiet
    planner.completed((MUSING, 2, 6))  # the run grows: sent again
    assert planner.acks() == [AckRange(MUSING, 2, 3, 6)]
    planner.completed((MUSING, 2, 7))  # and now one run
    assert planner.acks() == [AckRange(MUSING, 2, 3, 8)]


def test_a_small_uplink_mtu_keeps_every_command_within_it(tmp_path):
    key_path = tmp_path / "uplink.key"
    key = generate_key_file(key_path)
    sent: list[bytes] = []
    link = WindowAnswerer(key_path, tmp_path / "g.db", lambda f, peer: sent.append(f), "STRATO", mtu=58)
    for seq in range(1, 60, 2):  # many separate runs and many holes
        link.planner.completed((MUSING, 3, seq))
    link.window(("127.0.0.1", 1), {}, LinkReport(3, 6, 40))
    assert sent and all(len(f) <= 58 for f in sent)
    kinds = [type(verify(key, f, "STRATO", last_counter=i, mtu=58).command).__name__ for i, f in enumerate(sent)]
    assert kinds[0] == "LinkReport" and "Resend" in kinds and kinds[-1] == "Ack"


def test_a_health_record_naming_the_last_musing_gets_a_musing_lost_whole_asked_for(tmp_path):
    """Without it the ground cannot know of a musing lost whole after the last one it heard."""
    from groundstation.link.decoder import FrameDecoder

    key_path = tmp_path / "uplink.key"
    key = write_flight_key(key_path)
    sent: list[bytes] = []
    link = WindowAnswerer(key_path, tmp_path / "g.db", lambda f, peer: sent.append(f), "STRATO", uplink_to=("127.0.0.1", 1))
    decoder = FrameDecoder(auth=AUTH)

    def hear(frame: bytes) -> None:
        link.on_decoded(decoder.feed(frame), decoder.missing)

    for f in wire.fragment_record(record(4), auth=AUTH):
        hear(f)  # musing 4 heard; 5 and 6 were lost whole
    health = wire.Record(wire.Kind.HEALTH, 3, 1, 0, {"uptime_s": 600, "musing_seq": 6, "event_seq": 1})
    for f in wire.fragment_record(health, auth=AUTH):
        hear(f)
    hear(sentence(6))
    hear(cue(6))  # the window
    asked = [verify(key, f, "STRATO", last_counter=i).command for i, f in enumerate(sent)]
    items = [(i.stream, i.boot, i.seq, i.fragments) for c in asked if isinstance(c, Resend) for i in c.items]
    assert items == [(MUSING, 3, 5, ()), (MUSING, 3, 6, ()), (EVENT, 3, 1, ())]


def test_an_announced_record_already_heard_is_not_asked_for():
    planner = NackPlanner()
    planner.completed((MUSING, 3, 9))
    planner.announced(MUSING, 3, 9)
    planner.announced(MUSING, 3, 8)  # older than the last heard, heard never: a hole
    assert [(i.seq, i.fragments) for i in planner.plan({})] == [(8, ())]


def test_commands_queued_in_the_outbox_go_out_signed_in_the_next_window_once(tmp_path):
    from groundstation.link.uplink import generate_key_file
    from groundstation.link.windows import WindowAnswerer
    from groundstation.store import Store
    from stratoecho.wire import uplink as up

    key_path = tmp_path / "k"
    generate_key_file(key_path)
    store = Store(tmp_path / "g.db")
    note = up.MemoryNote("the river bends west")
    store.outbox.queue(int(note.command_id), note.pack(), "a note")
    sent: list[bytes] = []
    link = WindowAnswerer(key_path, tmp_path / "g.db", lambda f, peer: sent.append(f), "STRATO", store=store)
    link.window(("127.0.0.1", 9), {})
    key = up.load_key(key_path)
    got = [up.verify(key, f, "STRATO", 0).command for f in sent]
    assert any(isinstance(c, up.MemoryNote) and c.text == "the river bends west" for c in got)
    assert store.outbox.pending() == [] and link.commands_sent == 1
    link.window(("127.0.0.1", 9), {})
    assert len(sent) == 1  # sent once
