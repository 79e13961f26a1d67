"""Relaying for another payload (issue 33's first part): the envelope on the wire
(stratoecho/wire/relay.py) and the rules a payload relays by (payload/link/relay.py). A
relayed frame with a bad tag, an exhausted hop limit or from a callsign not allowed is never
forwarded; an allowed one goes on once, inside the relay's share of the air."""

from __future__ import annotations

import math

import pytest

from payload.link.relay import Relay, RelayRules
from stratoecho import wire
from stratoecho.wire.dispatch import origin_of
from stratoecho.wire.downlink import DownlinkAuth, Window, encode_window
from stratoecho.wire.relay import decode_relayed, encode_relayed, overhead
from stratoecho.wire.uplink import payload_hash

NEAR, FAR, STRANGER = "NEAR1", "FAR1", "STRANGE1"
NEAR_AUTH = DownlinkAuth.from_flight_key(bytes(range(32)))
FAR_AUTH = DownlinkAuth.from_flight_key(bytes(range(1, 33)))
STRANGER_AUTH = DownlinkAuth.from_flight_key(bytes(range(2, 34)))


def fragments(auth: DownlinkAuth, seq: int = 5, text: str = "the sky is ink", mtu: int = 200) -> list[bytes]:
    return wire.fragment_record(wire.Record(wire.Kind.MUSING, 1, seq, 1_780_000_000, text), mtu, auth=auth)


def sentence(callsign: str, seq: int = 7, auth: DownlinkAuth | None = None) -> bytes:
    """A position sentence; FAR1's signed with its key, as FAR1 keys every line (`auth` another key)."""
    auth = auth if auth is not None else FAR_AUTH if callsign == FAR else None
    return wire.encode_sentence(wire.Telemetry(callsign=callsign, seq=seq, time="12:00:00", lat=52.1, lon=-0.2,
                                               alt=20000, sats=9, temp_c=-40.0, pressure_hpa=55.0, batt_mv=3900,
                                               boot=1), auth)


def near_relay(**kw) -> Relay:
    rules = dict(callsign=NEAR, allowed={FAR: FAR_AUTH}, max_hops=2, share=0.5, duty_cycle=1.0)
    return Relay(RelayRules(**(rules | kw)), NEAR_AUTH)


def airtime(n: int) -> float:
    return n / 100.0  # a second per hundred bytes


def next_frame(relay: Relay, now_s: float, airtime_s) -> bytes | None:
    """What the transmitter does with a relay: `due`, then `sent` once keyed; the frame, or None."""
    frame = relay.due(now_s, airtime_s)
    if frame is not None:
        relay.sent(now_s, airtime_s(len(frame)))
    return frame


# --------------------------------------------------------------------------- the envelope


def test_an_envelope_carries_the_frame_unchanged_under_the_relayers_tag():
    frame = fragments(FAR_AUTH)[0]
    out = encode_relayed(frame, payload_hash(NEAR), 1, NEAR_AUTH)
    assert out[0] == wire.RELAY_MAGIC and len(out) == len(frame) + overhead(NEAR_AUTH.tag_len)
    r = decode_relayed(out, {payload_hash(NEAR): NEAR_AUTH}, NEAR_AUTH.tag_len)
    assert (r.relayer, r.hops_left, r.frame, r.relayer_authentic) == (payload_hash(NEAR), 1, frame, True)
    # The inner frame is still its origin's: its own tag checks with the far flight's key only.
    assert wire.decode_fragment(r.frame, FAR_AUTH).seq == 5
    # Without the relayer's key the envelope is read, not vouched for.
    assert decode_relayed(out, {}, NEAR_AUTH.tag_len).relayer_authentic is False


def test_an_envelope_forged_or_damaged_or_nested_is_refused():
    out = bytearray(encode_relayed(fragments(FAR_AUTH)[0], payload_hash(NEAR), 1, NEAR_AUTH))
    with pytest.raises(wire.WireError) as e:  # a stranger claiming to be the near balloon
        decode_relayed(encode_relayed(fragments(FAR_AUTH)[0], payload_hash(NEAR), 1, STRANGER_AUTH),
                       {payload_hash(NEAR): NEAR_AUTH}, NEAR_AUTH.tag_len)
    assert e.value.reason == "bad tag"
    out[10] ^= 0x01
    with pytest.raises(wire.WireError, match="CRC"):
        decode_relayed(bytes(out), {}, NEAR_AUTH.tag_len)
    with pytest.raises(ValueError, match="never put inside another"):
        encode_relayed(encode_relayed(b"$$FAR1,1", 1, 1, NEAR_AUTH), 2, 1, NEAR_AUTH)
    with pytest.raises(ValueError, match="outside"):
        encode_relayed(b"$$FAR1,1", 1, 16, NEAR_AUTH)


def test_origin_is_whoever_can_tag_the_frame():
    flights = {FAR: FAR_AUTH, STRANGER: None}
    assert origin_of(fragments(FAR_AUTH)[0], flights).callsign == FAR
    cue = encode_window(Window(1, 12, payload_hash(FAR), 360, 4), FAR_AUTH)
    assert origin_of(cue, flights) == origin_of(cue, flights) and origin_of(cue, flights).authentic
    assert origin_of(sentence(STRANGER), flights).authentic is False  # open: a sentence names itself
    with pytest.raises(wire.WireError) as e:
        origin_of(fragments(STRANGER_AUTH)[0], flights)
    assert e.value.reason == "bad tag"


# --------------------------------------------------------------------------- the rules


def test_an_allowed_flights_frames_go_on_once_in_an_envelope():
    relay = near_relay()
    frames = fragments(FAR_AUTH)
    for f in frames:
        assert relay.hear(f) is None
    assert relay.hear(frames[0]) == "duplicate"  # heard twice: sent on once
    sent = [next_frame(relay, 0.0, airtime) for _ in frames]
    assert next_frame(relay, 0.0, airtime) is None
    got = [decode_relayed(s, {payload_hash(NEAR): NEAR_AUTH}, 8) for s in sent]
    assert [g.frame for g in got] == frames and {g.hops_left for g in got} == {1}
    assert relay.stats.forwarded == len(frames) and relay.stats.by_origin == {FAR: len(frames)}


def test_a_frame_with_a_bad_tag_is_never_forwarded():
    relay = near_relay()
    forged = bytearray(fragments(FAR_AUTH)[0])
    forged[12] ^= 0x40  # a changed byte, the CRC made right again: only the tag can tell
    forged[-2:] = wire.crc16_ccitt(bytes(forged[:-2])).to_bytes(2, "big")
    assert relay.hear(bytes(forged)) == "bad tag"
    assert relay.hear(fragments(STRANGER_AUTH)[0]) == "bad tag"  # another flight's key
    assert next_frame(relay, 0.0, airtime) is None and relay.stats.refused["bad tag"] == 2


def test_a_callsign_not_allowed_is_never_forwarded():
    relay = near_relay()
    assert relay.hear(sentence(STRANGER)) == "unknown origin"
    assert relay.hear(sentence(FAR)) is None  # allowed: relayed open, as gateways take it
    assert relay.hear(sentence(NEAR)) == "own frame"
    assert relay.hear(fragments(NEAR_AUTH)[0]) == "own frame"
    assert relay.hear(bytes([wire.UPLINK_MAGIC]) + bytes(30)) == "not relayed"  # commands stay between ground and balloon
    assert relay.waiting() == 2  # FAR1's position: its envelope, then its bare echo


def test_an_exhausted_hop_limit_is_never_forwarded():
    relay = near_relay(max_hops=3, allowed={FAR: FAR_AUTH, "MID1": None})
    frames = [fragments(FAR_AUTH, seq=s)[0] for s in (9, 10, 11)]
    last_hop = encode_relayed(frames[0], payload_hash("MID1"), 0, FAR_AUTH)
    assert relay.hear(last_hop) == "hops exhausted"
    one_more = encode_relayed(frames[1], payload_hash("MID1"), 1, FAR_AUTH)
    assert relay.hear(one_more) is None
    out = decode_relayed(next_frame(relay, 0.0, airtime), {}, 8)
    assert (out.relayer, out.hops_left, out.frame) == (payload_hash(NEAR), 0, frames[1])  # re-wrapped, not nested
    # A frame heard directly starts with the rule's hops; our own envelope heard back is ours.
    assert relay.hear(frames[2]) is None
    assert decode_relayed(next_frame(relay, 0.0, airtime), {}, 8).hops_left == 2
    assert relay.hear(encode_relayed(frames[0], payload_hash(NEAR), 2, NEAR_AUTH)) == "own frame"


def test_relays_stay_inside_their_share_of_the_hour_and_a_flood_evicts_only_itself():
    relay = near_relay(share=0.01, duty_cycle=0.1, pending=4)  # 3.6 s of relays an hour
    texts = [f"musing {i} " * 8 for i in range(10)]
    for i, text in enumerate(texts):
        relay.hear(fragments(FAR_AUTH, seq=i, text=text)[0])
    assert relay.waiting() == 4 and relay.stats.refused["evicted"] == 6  # the newest kept
    sent = []
    while (f := next_frame(relay, 0.0, airtime)) is not None:
        sent.append(f)
    assert relay.stats.airtime_s <= 3.6 and relay.waiting() == 4 - len(sent) > 0
    assert next_frame(relay, 1800.0, airtime) is None  # still inside the hour
    assert next_frame(relay, 3600.0, airtime) is not None  # the hour has passed


def test_a_frame_that_would_not_fit_in_its_envelope_is_refused_not_cut():
    relay = near_relay(mtu=255)
    big = fragments(FAR_AUTH, text="x" * 2000, mtu=255)
    assert relay.hear(big[0]) == "too long"
    small = fragments(FAR_AUTH, seq=6, text="x" * 2000, mtu=255 - overhead(8))
    assert relay.hear(small[0]) is None


def test_a_window_cue_is_never_relayed_and_positions_are_thinned_to_one_a_minute():
    relay = near_relay()
    cue = encode_window(Window(1, 6, payload_hash(FAR), 180, 4), FAR_AUTH)
    assert relay.hear(cue, 10.0) == "window cue"  # the ground answers a cue only from its own balloon
    assert relay.hear(sentence(FAR, seq=1), 10.0) is None
    assert relay.hear(sentence(FAR, seq=2), 20.0) == "position thinned"
    assert relay.hear(sentence(FAR, seq=7), 70.0) is None  # a minute on: the newest heard then goes
    # Records are not thinned: each fragment of a musing goes on.
    assert all(relay.hear(f, 21.0) is None for f in fragments(FAR_AUTH, seq=8, mtu=40))
    # Only a flight's newest position waits (seq 7 replaced seq 1, unsent), and it goes before the records.
    assert relay.stats.refused == {"window cue": 1, "position thinned": 1, "position superseded": 1}
    assert next_frame(relay, 80.0, lambda n: 0.1) == encode_relayed(sentence(FAR, seq=7), payload_hash(NEAR), 1,
                                                                   NEAR_AUTH)
    assert next_frame(relay, 80.0, lambda n: 0.1) == sentence(FAR, seq=7)  # and bare, as heard
    assert relay.waiting() == len(fragments(FAR_AUTH, seq=8, mtu=40))
    # Without a time (a caller that cannot say when) nothing is thinned.
    assert near_relay().hear(sentence(FAR, seq=3)) is None


def test_records_go_on_by_priority_with_their_data_and_half_as_much_parity_again():
    """FAR1 heard by nobody but us sizes its parity for a link it never hears back from: eleven
    parity frames for one data frame. We send on what the next hop needs, the urgent first."""
    relay = near_relay()
    picture = wire.fragment_record(wire.Record(wire.Kind.IMAGE, 1, 2, 1_780_000_000, b"\xff\xd8" + bytes(300)), 200,
                                   parity=11, auth=FAR_AUTH)
    musing = wire.fragment_record(wire.Record(wire.Kind.MUSING, 1, 3, 1_780_000_000, "up here the sky is ink"), 200,
                                  parity=11, auth=FAR_AUTH)
    k_picture = wire.decode_fragment(picture[0], FAR_AUTH).k
    heard = [relay.hear(f, 1.0) for f in picture + musing]
    assert heard.count(None) == (k_picture + math.ceil(k_picture / 2)) + (1 + 1)
    assert relay.stats.refused["parity enough"] == len(picture) + len(musing) - heard.count(None)
    assert relay.hear(sentence(FAR, seq=9), 2.0) is None
    went = [next_frame(relay, 3.0, airtime) for _ in range(relay.waiting())]
    assert went[1] == sentence(FAR, seq=9)  # the track first: in its envelope, then bare
    inner = [decode_relayed(f, {}, 8).frame for f in went[:1] + went[2:]]
    assert inner[0] == sentence(FAR, seq=9)
    kinds = [wire.decode_fragment(f, FAR_AUTH).kind for f in inner[1:]]
    assert kinds == [wire.Kind.MUSING] * 2 + [wire.Kind.IMAGE] * (k_picture + math.ceil(k_picture / 2))


def test_a_full_queue_gives_up_its_least_urgent_record():
    relay = near_relay(pending=2)
    picture = wire.fragment_record(wire.Record(wire.Kind.IMAGE, 1, 2, 1_780_000_000, b"\xff\xd8"), 200, auth=FAR_AUTH)
    assert relay.hear(picture[0], 1.0) is None and relay.hear(fragments(FAR_AUTH, seq=4)[0], 1.0) is None
    assert relay.hear(fragments(FAR_AUTH, seq=5)[0], 1.0) is None  # the picture makes way, not the older musing
    assert relay.stats.refused["evicted"] == 1
    assert {wire.decode_fragment(decode_relayed(next_frame(relay, 2.0, airtime), {}, 8).frame, FAR_AUTH).kind
            for _ in range(2)} == {wire.Kind.MUSING}


def test_a_flight_allowed_only_to_be_heard_is_listened_to_but_never_sent_on():
    said = []
    relay = Relay(RelayRules(NEAR, {FAR: FAR_AUTH}, listen_only=frozenset({FAR})), NEAR_AUTH,
                  on_musing=lambda who, text, created: said.append((who, text)))
    for f in fragments(FAR_AUTH, seq=4, text="hello from the far one", mtu=40):
        assert relay.hear(f, 5.0) == "listen only"
    assert said == [(FAR, "hello from the far one")] and relay.waiting() == 0


def test_rules_that_cannot_hold_are_refused():
    with pytest.raises(ValueError, match="own callsign"):
        RelayRules(callsign=FAR, allowed={FAR: FAR_AUTH})
    with pytest.raises(ValueError, match="share"):
        RelayRules(callsign=NEAR, allowed={}, share=1.0)
    with pytest.raises(ValueError, match="max_hops"):
        RelayRules(callsign=NEAR, allowed={}, max_hops=0)


# --------------------------------------------------------------------------- in the payload


def test_the_payload_relays_what_it_hears_in_its_windows_after_its_own_beacon(tmp_path):
    from payload.assembly import build_onboard
    from payload.clock import Clock
    from payload.config import PayloadConfig
    from sim.world.flight import SimSensors
    from stratoecho.wire.downlink import derive_downlink_key
    from stratoecho.wire.uplink_keys import DOWNLINK, new_key, write_key_file
    from tests.test_repair_payload import TwoWayRadio

    near_key, far_key = new_key(), new_key()
    write_key_file(tmp_path / "near.key", key=near_key)
    write_key_file(tmp_path / "far.downlink", key=derive_downlink_key(far_key), kind=DOWNLINK)
    far = DownlinkAuth.from_flight_key(far_key)
    cfg = PayloadConfig.model_validate({
        "callsign": NEAR, "uplink": {"key_file": str(tmp_path / "near.key"), "window_every": 1},
        "relay": {"allow": [{"callsign": FAR, "key_file": str(tmp_path / "far.downlink")}, {"callsign": "OPEN1"}]}})
    clock = Clock(speedup=1e6)
    radio = TwoWayRadio()
    d = build_onboard(cfg, SimSensors(clock), radio, clock, None, tmp_path / "data")
    try:
        heard = fragments(far, seq=3)[0]
        radio.inbox = [heard, fragments(STRANGER_AUTH)[0], sentence("OPEN1"), sentence(STRANGER), heard]
        d.daemon.run_once("beacon")
        while d.parts.transmitter.send_one():
            pass
        sent = radio.frames
        assert sent[0].startswith(b"$$" + NEAR.encode())  # our own beacon first, then our window's cue
        relayed = [decode_relayed(f, {}, 8) for f in sent if f[0] == wire.RELAY_MAGIC]
        # Once each, the position first; the forged and the stranger not.
        assert [r.frame for r in relayed] == [sentence("OPEN1"), heard]
        assert wire.decode_fragment(relayed[1].frame, far).seq == 3
        stats = d.flight_stats.snapshot()["relay"]
        assert stats["forwarded"] == 2 and stats["refused"] == {"bad tag": 1, "unknown origin": 1, "duplicate": 1}
        assert stats["by_origin"] == {FAR: 1, "OPEN1": 1} and d.parts.transmitter.stats.relayed_frames == 2
    finally:
        d.parts.store.close()


class _TimedRadio:
    """A receiver on a hand-driven clock: each receive() passes its timeout (the radio listened that
    long) and hands out what is due by then."""

    receives = True

    def __init__(self, clock, schedule: list[tuple[float, bytes]]):
        self.clock, self.schedule, self.turns = clock, schedule, []

    def receive(self, timeout_s: float) -> list[bytes]:
        self.turns.append(timeout_s)
        self.clock.t += timeout_s
        due = [f for t, f in self.schedule if t <= self.clock.t]
        self.schedule = [(t, f) for t, f in self.schedule if t > self.clock.t]
        return due

    def hear(self, timeout_s: float) -> list[bytes]:
        return self.receive(timeout_s)


def test_a_relaying_payload_hears_other_balloons_between_its_own_frames_not_only_in_windows():
    import threading

    from payload.link.frames import LinkParts, LinkStats
    from payload.link.windows import RELAY_LISTEN_S, Windows

    class Clock:
        t = 100.0

        def elapsed_s(self):
            return self.t

    clock = Clock()
    heard = fragments(FAR_AUTH, seq=9)[0]
    radio = _TimedRadio(clock, [(102.5, heard)])
    # Only what idle() reads: the radio, the relay, the clock, the events and the counts.
    windows = Windows(LinkParts(None, radio, clock, threading.Event(), threading.Event(), near_relay()), LinkStats(),
                      threading.Lock(), airtime=None, loss=None, auth=None)
    windows.idle(5.0)
    assert radio.turns == [RELAY_LISTEN_S] * 5  # listened the whole pause, in turns
    assert windows.relay.waiting() == 1 and windows.stats.relay_heard == 1  # the far balloon's frame, heard while idle
    windows.wake.set()  # a producer queued a sentence: the radio stops listening at once
    radio.turns.clear()
    windows.idle(5.0)
    assert radio.turns == []
    windows.relay = None  # a payload that relays for nobody does not listen between its frames
    windows.wake.clear()
    windows.wake.wait = lambda timeout: radio.turns.append(("slept", timeout))
    windows.idle(3.0)
    assert radio.turns == [("slept", 3.0)]


def test_a_relay_needs_the_flight_key(tmp_path):
    from payload.assembly import open_relay
    from payload.config import PayloadConfig

    cfg = PayloadConfig.model_validate({"relay": {"allow": [{"callsign": FAR}]}})
    assert open_relay(cfg, None) is None  # no envelope without our own tag: said in the log
    assert open_relay(PayloadConfig(), NEAR_AUTH) is None  # nothing named: nothing relayed


# --------------------------------------------------------------------------- at the ground


def test_the_ground_reads_a_relayed_frame_as_if_heard_and_merges_the_two_paths():
    from groundstation.link.decoder import FrameDecoder

    near = payload_hash(NEAR)
    frames = fragments(FAR_AUTH, seq=8, text="far and quiet " * 30, mtu=120)
    assert len(frames) >= 3
    decoder = FrameDecoder(auth=FAR_AUTH, relayers={near: NEAR_AUTH})
    # Half heard directly, half only through the near balloon: one record, once.
    results = [decoder.feed(f if i % 2 else encode_relayed(f, near, 1, NEAR_AUTH)) for i, f in enumerate(frames)]
    records = [r.record for r in results if r.record is not None]
    assert len(records) == 1 and records[0].text == "far and quiet " * 30
    assert {r.relayed_by for r in results} == {None, near} and decoder.relayed == (len(frames) + 1) // 2
    # Heard again both ways: nothing new.
    again = [decoder.feed(encode_relayed(f, near, 1, NEAR_AUTH)) for f in frames] + [decoder.feed(f) for f in frames]
    assert not [r for r in again if r.record is not None]
    # The envelope vouches only for the relayer: a frame inside it is believed by its own tag.
    inner = fragments(STRANGER_AUTH, seq=9)[0]
    assert decoder.feed(encode_relayed(inner, near, 1, NEAR_AUTH)).error == "bad tag"
    # And a station that is not the near balloon cannot relay in its name.
    assert decoder.feed(encode_relayed(frames[0], near, 1, STRANGER_AUTH)).error == "bad tag"


# --------------------------------------------------------------------------- they talk


def test_a_payload_hears_what_another_mused_in_its_name_and_its_prompt_says_who(tmp_path):
    from datetime import datetime, timezone

    from payload.assembly import open_relay
    from payload.config import PayloadConfig
    from payload.parts.sensors import Readings
    from payload.persona.memory import Memory
    from payload.persona.prompts import PromptContext, build_prompt
    from stratoecho.wire.downlink import derive_downlink_key
    from stratoecho.wire.uplink_keys import DOWNLINK, new_key, write_key_file

    far_key = new_key()
    write_key_file(tmp_path / "far.downlink", key=derive_downlink_key(far_key), kind=DOWNLINK)
    far = DownlinkAuth.from_flight_key(far_key)
    cfg = PayloadConfig.model_validate({"callsign": NEAR, "relay": {"allow": [
        {"callsign": FAR, "key_file": str(tmp_path / "far.downlink")}]}})
    memory = Memory(tmp_path / "memory.db")
    relay = open_relay(cfg, NEAR_AUTH, memory)
    said = "Is anyone else up here? The sky is so quiet at this height. " * 3
    for f in fragments(far, seq=4, text=said, mtu=100):
        relay.hear(f)
    for f in fragments(far, seq=4, text=said, mtu=100):  # heard again through another relayer: once
        relay.hear(encode_relayed(f, payload_hash("MID1"), 1, STRANGER_AUTH))
    relay.hear(fragments(STRANGER_AUTH, seq=5, text="a forged voice")[0])  # never heard as FAR1's
    assert relay.stats.musings_heard == 1
    notes = memory.for_prompt("quiet sky")
    assert [(m.text, m.source) for m in notes] == [(said.strip(), "heard:" + FAR)]
    r = Readings(time=datetime(2026, 5, 1, 12, tzinfo=timezone.utc), lat=52.1, lon=-0.2, alt_m=21000.0, sats=9,
                 temp_c=-50.0, pressure_hpa=45.0, batt_mv=3900, phase="float")
    prompt = build_prompt("You are a balloon.", r, PromptContext(phase="float", mode="nominal", memories=notes), 4000)
    user = prompt.messages[-1]["content"]
    assert f"- {FAR} said" in user and "Is anyone else up here?" in user
    memory.close()


def test_decode_checks_a_relayers_envelope_with_the_key_it_is_given(tmp_path, capsys):
    from groundstation.__main__ import main as ground
    from stratoecho.wire.downlink import derive_downlink_key
    from stratoecho.wire.uplink_keys import DOWNLINK, new_key, write_key_file

    far_key, near_key = new_key(), new_key()
    write_key_file(tmp_path / "far.key", key=far_key)
    write_key_file(tmp_path / "near.downlink", key=derive_downlink_key(near_key), kind=DOWNLINK)
    far, near = DownlinkAuth.from_flight_key(far_key), DownlinkAuth.from_flight_key(near_key)
    honest = [encode_relayed(f, payload_hash(NEAR), 1, near) for f in fragments(far, seq=2, text="far away")]
    posing = [encode_relayed(f, payload_hash(NEAR), 1, STRANGER_AUTH) for f in fragments(far, seq=3, text="who?")]
    (tmp_path / "heard.txt").write_text("".join(f.hex() + "\n" for f in honest + posing))
    base = ["decode", str(tmp_path / "heard.txt"), "--flight-key", str(tmp_path / "far.key")]
    assert ground(base) == 0  # no relayer key: both envelopes read, each frame believed by its own tag
    assert capsys.readouterr().out.count('"kind": "musing"') == 2
    assert ground(base + ["--relayer-key", f"{NEAR}={tmp_path / 'near.downlink'}"]) == 0
    out = capsys.readouterr()
    assert '"far away"' in out.out and '"who?"' not in out.out and "bad tag" in out.err
    assert ground(base + ["--relayer-key", "NEAR1"]) == 1
    assert "expected CALLSIGN=FILE" in capsys.readouterr().err
