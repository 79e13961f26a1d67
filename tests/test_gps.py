"""The GPS driver (payload.parts.gps): NMEA and UBX parsing with real and hostile bytes, then
`GpsReceiver` against `sim.world.gps.FakeUblox` on a real pseudo-terminal."""

from __future__ import annotations

import random
import threading
from datetime import datetime, timezone

import pytest

from payload.parts.gps import (
    CFG_NAV5_LEN,
    Fix,
    FixState,
    GpsReceiver,
    GpsTiming,
    NmeaParser,
    NmeaSentence,
    UbxFrame,
    cfg_nav5,
    parse_gga,
    parse_rmc,
    system_time_from_gps,
    ubx_checksum,
    ubx_frame,
)
from sim.world.gps import FakeUblox, SimFix

# Real sentences, checksums as published (NMEA tutorials and a u-blox/SiRF log).
GGA_DUBLIN = b"$GPGGA,092750.000,5321.6802,N,00630.3372,W,1,8,1.03,61.7,M,55.2,M,,*76\r\n"
RMC_DUBLIN = b"$GPRMC,092750.000,A,5321.6802,N,00630.3372,W,0.02,31.66,280511,,,A*43\r\n"
GGA_MUNICH = b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47\r\n"
RMC_MUNICH = b"$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A\r\n"


def nmea(body: str) -> bytes:
    """Checksum computed here, independently of the parser."""
    ck = 0
    for c in body.encode():
        ck ^= c
    return f"${body}*{ck:02X}\r\n".encode()


def sentences(data: bytes, chunks: list[int] | None = None):
    parser = NmeaParser()
    out = []
    if chunks is None:
        out = parser.feed(data)
    else:
        at = 0
        for n in chunks:
            out += parser.feed(data[at : at + n])
            at += n
        out += parser.feed(data[at:])
    return out, parser.errors


# ---------------------------------------------------------------------------- NMEA


def test_real_gga_and_rmc_parse_to_a_fix():
    (gga, rmc), errors = sentences(GGA_DUBLIN + RMC_DUBLIN)
    assert not errors
    assert (gga.talker, gga.kind, rmc.kind) == ("GP", "GGA", "RMC")
    state = FixState()
    state.update(gga, now=10.0)
    state.update(rmc, now=10.5)
    fix = state.fix
    assert fix.lat == pytest.approx(53 + 21.6802 / 60)
    assert fix.lon == pytest.approx(-(6 + 30.3372 / 60))  # West is negative
    assert (fix.quality, fix.sats, fix.hdop, fix.alt_m) == (1, 8, 1.03, 61.7)
    assert fix.utc == datetime(2011, 5, 28, 9, 27, 50, tzinfo=timezone.utc)
    assert fix.valid and fix.dated
    assert fix.speed_mps == pytest.approx(0.02 * 0.514444)
    assert fix.age_s(now=12.5) == pytest.approx(2.0)


def test_eastern_and_southern_hemispheres_and_other_talkers():
    (gga, rmc), _ = sentences(GGA_MUNICH + RMC_MUNICH)
    g, r = parse_gga(gga.fields), parse_rmc(rmc.fields)
    assert g.lat == pytest.approx(48 + 7.038 / 60) and g.lon == pytest.approx(11 + 31 / 60)
    assert r.speed_mps == pytest.approx(22.4 * 0.514444) and r.course_deg == 84.4
    south = nmea("GNGGA,010203.00,3351.12345,S,15112.54321,W,2,12,0.7,30123.4,M,20.0,M,,")
    (s,), errors = sentences(south)
    assert not errors and s.talker == "GN"
    g = parse_gga(s.fields)
    assert g.lat == pytest.approx(-(33 + 51.12345 / 60)) and g.lon == pytest.approx(-(151 + 12.54321 / 60))
    assert (g.quality, g.sats, g.alt_m) == (2, 12, 30123.4)
    (gl,), _ = sentences(nmea("GLRMC,010203.00,A,3351.12345,S,15112.54321,W,0.0,,010125,,,A"))
    assert gl.talker == "GL" and parse_rmc(gl.fields).lat < 0


def test_no_fix_sentences_give_an_invalid_fix():
    data = nmea("GNGGA,000012.00,,,,,0,00,99.99,,,,,,") + nmea("GNRMC,000012.00,V,,,,,,,010125,,,N,V")
    items, errors = sentences(data)
    assert not errors
    state = FixState()
    for s in items:
        state.update(s, now=0.0)
    fix = state.fix
    assert not fix.valid and fix.quality == 0 and fix.lat is None and fix.alt_m is None


def test_any_chunking_gives_the_same_sentences():
    data = GGA_DUBLIN + RMC_DUBLIN + GGA_MUNICH + RMC_MUNICH
    whole, _ = sentences(data)
    assert len(whole) == 4
    assert sentences(data, [1] * len(data))[0] == whole
    rng = random.Random(7)
    for _ in range(50):
        cuts = [rng.randrange(1, 30) for _ in range(rng.randrange(1, 12))]
        got, errors = sentences(data, cuts)
        assert got == whole and not errors


def test_bad_checksum_garbage_overlong_and_truncated_lines_are_skipped_and_counted():
    bad = GGA_DUBLIN.replace(b"*76", b"*77")
    noise = bytes(range(0x80, 0xB0)) + b"\x00\xff\x13"
    overlong = b"$GPGGA," + b"1" * 200 + b"\r\n"
    truncated = b"$GPRMC,0927"  # cut off by the next "$"
    no_star = b"$GPGGA,1,2,3\r\n"
    data = bad + noise + RMC_DUBLIN + overlong + truncated + GGA_MUNICH + no_star + RMC_MUNICH
    items, errors = sentences(data)
    assert [s.kind for s in items] == ["RMC", "GGA", "RMC"]
    assert errors["checksum"] == 2  # the bad one and the one without a checksum
    assert errors["garbage"] >= 1 and errors["overlong"] == 1 and errors["truncated"] == 1


def test_malformed_fields_are_counted_not_raised():
    state = FixState()
    assert not state.update(NmeaSentence("GP", "GGA", ("99xx", "5321.6802", "Q")), now=0)
    assert state.errors["malformed"] == 1 and state.fix is None


def test_random_bytes_never_raise():
    rng = random.Random(3)
    parser = NmeaParser()
    for _ in range(200):
        parser.feed(bytes(rng.randrange(256) for _ in range(rng.randrange(100))) + rng.choice([b"$", b"\xb5b", b""]))
    assert parser.feed(b"\r\n" + GGA_DUBLIN)[-1].kind == "GGA"


# ---------------------------------------------------------------------------- UBX


def fletcher(data: bytes) -> bytes:
    a = b = 0
    for x in data:
        a, b = (a + x) % 256, (b + (a + x) % 256) % 256
    return bytes([a, b])


def test_ubx_checksum_against_known_frames():
    # ACK-ACK for CFG-NAV5, as a u-blox M8 sends it.
    assert ubx_frame(0x05, 0x01, b"\x06\x24") == bytes.fromhex("b562050102000624325b")
    # The CFG-NAV5 "airborne <1g, all parameters" frame long used by UK high-altitude balloonists.
    known = bytes.fromhex(
        "b56206242400ffff060300000000102700000500fa00fa0064002c01000000000000000000000000000016dc"
    )
    assert len(known) == 6 + 36 + 2
    assert ubx_frame(0x06, 0x24, known[6:-2]) == known
    assert ubx_checksum(known[2:-2]) == known[-2:] == fletcher(known[2:-2])


def test_cfg_nav5_sets_only_the_dynamic_model():
    frame = cfg_nav5()
    assert frame[:6] == bytes([0xB5, 0x62, 0x06, 0x24, CFG_NAV5_LEN, 0])
    payload = frame[6:-2]
    assert len(payload) == 36
    assert payload[0:2] == b"\x01\x00"  # mask: dyn only
    assert payload[2] == 6  # airborne <1g
    assert payload[3:] == bytes(33)
    assert frame[-2:] == fletcher(frame[2:-2])


def test_ubx_frames_interleaved_with_nmea_and_split_anywhere():
    ack = bytes.fromhex("b562050102000624325b")
    nak = ubx_frame(0x05, 0x00, b"\x06\x24")
    broken = bytearray(ack)
    broken[-1] ^= 0xFF
    data = GGA_DUBLIN[:20] + ack + GGA_DUBLIN[20:] + bytes(broken) + nak + RMC_DUBLIN
    items, errors = sentences(data, [3] * (len(data) // 3))
    # The ACK inside a sentence truncates that sentence; the frame itself survives.
    kinds = [(type(i).__name__, getattr(i, "ack", None)) for i in items]
    assert kinds[0] == ("UbxFrame", (True, 0x06, 0x24))
    assert ("UbxFrame", (False, 0x06, 0x24)) in kinds
    assert isinstance(items[-1], NmeaSentence) and items[-1].kind == "RMC"
    # The broken frame's own bytes hold a "$" (id 0x24): the resync may take it for a
    # sentence start, which the next frame then truncates. Only valid records come out.
    assert errors["ubx_checksum"] == 1 and errors["truncated"] >= 1
    assert len(items) == 3
    assert UbxFrame(5, 1, b"\x06").ack is None


# ---------------------------------------------------------------------------- against the simulated module


def flight(t: float) -> SimFix:
    return SimFix(lat=-33.5 + t * 1e-4, lon=151.25, alt_m=1000.0 + 100.0 * t, sats=11)


@pytest.fixture
def ublox():
    with FakeUblox(flight, period_s=0.05, time_scale=1.0) as module:
        yield module


def receiver(port: str, **kw) -> GpsReceiver:
    timing = dict(ack_timeout_s=0.5, ack_retry_s=0.2, silent_after_s=0.4, backoff_initial_s=0.05, backoff_max_s=0.2)
    timing.update({k: kw.pop(k) for k in list(kw) if k in GpsTiming.__dataclass_fields__})
    return GpsReceiver(port, 9600, timing=GpsTiming(**timing), **kw)


def read_until(gps: GpsReceiver, predicate, reads: int = 200):
    for _ in range(reads):
        reading = gps.read(0.1)
        if predicate(reading):
            return reading
    raise AssertionError(f"never happened; last reading {reading}")


def test_receiver_sets_airborne_and_reports_the_simulated_position(ublox):
    with receiver(ublox.port) as gps:
        reading = read_until(gps, lambda r: r.status == "ok" and r.airborne)
        assert ublox.dyn_model == 6 and ublox.acks >= 1 and gps.acks >= 1
        assert ublox.configs[0] == cfg_nav5()[6:-2]
        fix = reading.fix
        # The fix is one the simulator wrote: its altitude gives its time.
        t = (fix.alt_m - 1000.0) / 100.0  # to 1 ms: the altitude has 0.1 m
        expected = flight(t)
        assert fix.lat == pytest.approx(expected.lat, abs=1e-6)  # 5 decimals of minutes
        assert fix.lon == pytest.approx(expected.lon, abs=1e-6)
        assert fix.sats == 11 and fix.quality == 1 and fix.valid and fix.dated
        assert reading.errors.get("nak", 0) == 0


def test_a_brownout_reset_is_undone_by_the_periodic_resend(ublox):
    with receiver(ublox.port, reconfigure_every_s=0.3) as gps:
        read_until(gps, lambda r: r.airborne)
        ublox.reset()
        assert ublox.dyn_model == 0
        acks = ublox.acks
        read_until(gps, lambda r: ublox.acks > acks)
        assert ublox.dyn_model == 6


def test_silence_is_reported_then_the_device_is_reopened_and_recovers(ublox):
    with receiver(ublox.port) as gps:
        read_until(gps, lambda r: r.status == "ok")
        opens = gps.opens
        ublox.silence()
        reading = read_until(gps, lambda r: r.status == "silent")
        assert reading.errors["silent"] >= 1 and reading.fix is not None  # the last fix, kept
        read_until(gps, lambda r: gps.opens > opens)  # re-opened with back-off
        acks = ublox.acks
        ublox.resume()
        read_until(gps, lambda r: r.status == "ok" and r.airborne)
        assert ublox.acks > acks  # re-configured after the re-open


def test_garbage_is_counted_and_reported(ublox):
    with receiver(ublox.port, silent_after_s=5.0) as gps:
        read_until(gps, lambda r: r.status == "ok")
        ublox.garbage()
        reading = read_until(gps, lambda r: r.status == "garbage")
        assert reading.errors.get("nmea_checksum", 0) + reading.errors.get("nmea_garbage", 0) > 0
        ublox.resume()
        read_until(gps, lambda r: r.status == "ok")


def test_nak_is_counted_and_retried():
    with FakeUblox(flight, period_s=0.05) as module, receiver(module.port, dyn_model=42) as gps:
        reading = read_until(gps, lambda r: r.errors.get("nak", 0) >= 2)
        assert not reading.airborne and module.naks >= 2 and module.dyn_model == 0


def test_no_fix_from_the_module():
    with FakeUblox(lambda t: None, period_s=0.05) as module, receiver(module.port) as gps:
        reading = read_until(gps, lambda r: r.fix is not None)
        assert reading.status == "no_fix" and not reading.fix.valid


def test_a_missing_port_is_reported_never_raised():
    stop = threading.Event()
    gps = GpsReceiver("/dev/does-not-exist-gps", timing=GpsTiming(backoff_initial_s=0.01, backoff_max_s=0.02), stop=stop)
    reading = gps.read(0.05)
    assert reading.status == "no_device" and reading.errors["open"] >= 1
    stop.set()
    assert gps.read(10).status == "no_device"  # returns at once when stopping


# ---------------------------------------------------------------------------- system time


def a_fix(**kw) -> Fix:
    values = dict(
        utc=datetime(2025, 6, 21, 12, 0, 0, tzinfo=timezone.utc), lat=1.0, lon=2.0, alt_m=3.0, sats=8,
        quality=1, hdop=1.0, speed_mps=0.0, course_deg=0.0, valid=True, dated=True, received_at=100.0,
    )
    values.update(kw)
    return Fix(**values)


def test_system_time_is_set_only_from_a_trusted_fix():
    set_to = []
    kw = dict(set_clock=set_to.append, now_s=lambda: 0.0, monotonic=lambda: 100.5)
    assert system_time_from_gps(None, **kw).action == "untrusted"
    assert system_time_from_gps(a_fix(valid=False, quality=0), **kw).action == "untrusted"
    assert system_time_from_gps(a_fix(dated=False), **kw).action == "untrusted"
    assert system_time_from_gps(a_fix(received_at=50.0), **kw).action == "untrusted"
    assert system_time_from_gps(a_fix(utc=datetime(2006, 1, 1, tzinfo=timezone.utc)), **kw).action == "untrusted"
    assert set_to == []
    result = system_time_from_gps(a_fix(), **kw)
    assert result.action == "set"
    assert set_to == [pytest.approx(a_fix().utc.timestamp() + 0.5)]  # corrected for the fix's age
    in_sync = dict(kw, now_s=lambda: a_fix().utc.timestamp() + 0.5)
    assert system_time_from_gps(a_fix(), **in_sync).action == "in_sync"


def test_system_time_without_permission_is_reported():
    def denied(_):
        raise PermissionError(1, "Operation not permitted")

    result = system_time_from_gps(a_fix(), set_clock=denied, now_s=lambda: 0.0, monotonic=lambda: 100.0)
    assert result.action == "not_permitted" and "CAP_SYS_TIME" in result.reason
