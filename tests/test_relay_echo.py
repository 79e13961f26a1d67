"""A relayed position a stock gateway hears (issue 51, point 3): the relaying balloon sends a far
flight's proven position in its envelope, then bare, exactly as heard. A PITS gateway, which
drops the envelope ("Unknown packet type is EFh"), takes the bare line under the far callsign,
its CRC and tag intact; our ground knows the bare line for a relayed one, and believes it only by
the far flight's own key."""

from __future__ import annotations

from pathlib import Path

from groundstation.link.decoder import FrameDecoder
from groundstation.link.flights import Flight, Flights
from payload.config import PayloadConfig, load_config
from payload.policy.airplan import air_plan
from stratoecho import wire
from stratoecho.wire import gateway_rules
from stratoecho.wire.relay import decode_relayed, encode_relayed
from stratoecho.wire.uplink import payload_hash
from tests.test_gateway_rules import gateway_reads
from tests.test_relay import FAR, FAR_AUTH, NEAR, NEAR_AUTH, STRANGER_AUTH, airtime, near_relay, next_frame, sentence

ROOT = Path(__file__).resolve().parents[1]


def relayed_pair(seq: int = 7) -> tuple[bytes, bytes]:
    """What NEAR1 keys for one of FAR1's positions: its envelope, then its echo."""
    relay = near_relay()
    assert relay.hear(sentence(FAR, seq=seq), 10.0) is None
    went = [next_frame(relay, 11.0, airtime), next_frame(relay, 11.0, airtime)]
    assert next_frame(relay, 11.0, airtime) is None and relay.stats.echoed == 1
    return went[0], went[1]


def test_a_proven_position_goes_in_its_envelope_then_bare_exactly_as_heard():
    envelope, echo = relayed_pair()
    assert decode_relayed(envelope, {payload_hash(NEAR): NEAR_AUTH}, 8).frame == sentence(FAR)
    assert echo == sentence(FAR)  # its bytes, its tag (field J) and its CRC, unchanged


def test_a_stock_gateway_takes_the_echo_under_the_far_callsign_with_its_crc_intact():
    _, echo = relayed_pair()
    assert gateway_rules.check_line(echo) == []  # checksum, key fields, field list: all as a gateway wants
    got = gateway_reads(echo.decode("ascii"))
    assert (got["callsign"], got["seq"], got["alt"]) == (FAR, 7, 20000)
    assert wire.classify(echo).signed_by(FAR_AUTH)  # still FAR1's own signature


def test_the_relayers_air_with_the_far_lines_in_it_breaks_no_gateway_rule():
    """Each callsign's lines keep their own order: NEAR1's and FAR1's tracks interleave on NEAR1's air."""
    near = [wire.encode_sentence(wire.Telemetry(NEAR, s, f"12:00:{s * 2:02d}", 52.0, -2.0, 900, 8, 1.0, 2.0, 3900, 1),
                                 NEAR_AUTH) for s in (10, 11, 12)]
    far = [wire.encode_sentence(wire.Telemetry(FAR, s, f"12:00:{s:02d}", 52.1, -0.2, 900, 8, 1.0, 2.0, 3900, 1),
                                FAR_AUTH) for s in (3, 5, 7)]
    assert gateway_rules.check_air([near[0], far[0], near[1], far[1], far[1], near[2], far[2]]) == []
    assert [v.rule for v in gateway_rules.check_air([far[1], near[0], far[0]])] == ["time order", "counter order"]


def test_what_fails_the_far_key_is_never_relayed_nor_echoed():
    relay = near_relay()
    assert relay.hear(sentence(FAR, seq=1, auth=STRANGER_AUTH), 10.0) == "bad tag"  # another key's tag
    unsigned = wire.encode_sentence(wire.decode_frame(sentence(FAR, seq=2)))  # the tag left out
    assert relay.hear(unsigned, 80.0) == "bad tag"
    forged = sentence(FAR, seq=3).replace(b"20000", b"20900")
    forged = forged[:forged.rindex(b"*") + 1] + f"{wire.crc16_ccitt(forged[2:forged.rindex(b'*')]):04X}\n".encode()
    assert relay.hear(forged, 150.0) == "bad tag"  # a changed height, the CRC made right: the tag tells
    assert relay.waiting() == 0 and relay.stats.echoed == 0
    # Out of hops: heard in another relayer's last envelope, it goes nowhere, bare or not.
    last_hop = encode_relayed(sentence(FAR, seq=4), payload_hash("MID1"), 0, NEAR_AUTH)
    assert near_relay().hear(last_hop, 10.0) == "hops exhausted"


def test_an_open_flight_is_relayed_in_its_envelope_only():
    relay = near_relay(allowed={"OPEN1": None})
    assert relay.hear(sentence("OPEN1"), 10.0) is None
    assert relay.waiting() == 1 and relay.stats.echoed == 0  # nobody's key proves it: no bare copy of ours


def ground() -> Flights:
    near = FrameDecoder(auth=NEAR_AUTH, relayers={payload_hash(NEAR): NEAR_AUTH})
    far = FrameDecoder(auth=FAR_AUTH, relayers={payload_hash(NEAR): NEAR_AUTH})
    return Flights(Flight(None, near), {FAR: Flight(FAR, far)}, relayers={payload_hash(NEAR): NEAR_AUTH},
                   names={payload_hash(NEAR): NEAR})


def feed(flights: Flights, frame: bytes):
    heard = flights.classify(frame)
    flight = flights.route(heard)
    return flight, flight.decoder.feed(heard)


def test_our_ground_marks_the_echo_relayed_and_believes_it_by_the_far_key():
    flights = ground()
    envelope, echo = relayed_pair()
    flight, first = feed(flights, envelope)
    assert flight.callsign == FAR and first.signed and first.record is not None
    flight, again = feed(flights, echo)
    assert flight.callsign == FAR and again.signed and again.record is None  # the same position, once
    assert flights.path("home", again.relayed_by) == "home via NEAR1"
    # Heard bare alone (its envelope lost), a line is taken as heard directly: still FAR1's, by its key.
    _, alone = feed(ground(), echo)
    assert alone.signed and alone.relayed_by is None and alone.record.callsign == FAR


def test_a_repeated_line_is_never_the_relayers_own_and_a_bad_tag_stays_a_claim():
    flights = ground()
    envelope, _ = relayed_pair()
    feed(flights, envelope)
    forged = sentence(FAR, seq=7, auth=STRANGER_AUTH)  # the same position under a tag FAR1's key refuses
    flight, result = feed(flights, forged)
    assert flight.callsign == FAR and not result.signed and not result.authentic and result.relayed_by is None
    # A ground that follows only NEAR1 keeps FAR1's line as a claim: not NEAR1's, though NEAR1 keyed it.
    alone = Flights(Flight(None, FrameDecoder(auth=NEAR_AUTH)))
    _, result = feed(alone, sentence(FAR))
    assert not result.signed and not result.authentic


def test_the_air_plan_counts_the_echo_in_the_relays_share():
    data = load_config(ROOT / "config/payload.network.toml").model_dump()
    data["relay"]["allow"] = [{"callsign": FAR, "key_file": "/etc/stratoecho/far1.downlink"}]
    keyed = air_plan(PayloadConfig.model_validate(data))
    data["relay"]["allow"] = [{"callsign": FAR}]  # no key: its lines go in envelopes only
    open_ = air_plan(PayloadConfig.model_validate(data))
    row, open_row = ({r.kind: r for r in p.rows}["relay"] for p in (keyed, open_))
    positions = keyed.relay_positions_per_hour[FAR]
    assert positions == open_.relay_positions_per_hour[FAR] == 120
    assert row.frames_per_hour >= open_row.frames_per_hour + positions  # an echo for each position
    assert row.air_s_per_hour <= 0.2 * keyed.duty_budget_s and keyed.closes  # inside the relay's share


def test_the_echo_goes_again_before_the_next_position_and_the_track_never_steps_back():
    relay = near_relay(position_s=30.0)
    went = []
    for seq, t in ((1, 10.0), (2, 40.0), (3, 70.0)):
        line = wire.encode_sentence(wire.Telemetry(FAR, seq, f"12:00:{t:02.0f}", 52.1, -0.2, 900, 8, 1.0, 2.0, 3900, 1),
                                    FAR_AUTH)
        assert relay.hear(line, t) is None
        while (f := next_frame(relay, t + 1, airtime)) is not None:
            went.append(f)
    bare = [int(f.split(b",")[1]) for f in went if f[:2] == b"$$"]
    assert bare == [1, 1, 2, 2, 3]  # each twice, a period apart; the last waits for the next position
    assert gateway_rules.check_air(went) == [] and relay.stats.echoed == 5
    assert relay.waiting() == 0
