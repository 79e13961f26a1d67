"""Horus Binary v3 reaches the ground through horus-gui's UDP output as v2 does.

The datagrams are horusdemodlib's own: our v3 frame is decoded by its `decode_packet` and
broadcast by its `horusudp.send_payload_summary` (what horus-gui and horus_demod call), caught
as the bytes it sends, and replayed to our listener over loopback.
"""

from __future__ import annotations

import json
import socket

import pytest

from groundstation.sources.horus_udp import HorusUdpSource
from stratoecho import wire
from stratoecho.wire.horus_v3 import encode_horus_v3

decoder = pytest.importorskip("horusdemodlib.decoder")
horusudp = pytest.importorskip("horusdemodlib.horusudp")

T = wire.Telemetry("M0XYZ-11", 812, "11:22:33", 51.50123, -0.12345, 28765, 11, -51.3, 15.6, 3712, 4)


class _CaughtSocket:
    """Stands in for the socket horusudp opens: keeps what it sends."""

    sent: list[bytes] = []

    def __init__(self, *args) -> None:
        pass

    def settimeout(self, _t) -> None:
        pass

    def setsockopt(self, *args) -> None:
        pass

    def sendto(self, data: bytes, _address) -> None:
        _CaughtSocket.sent.append(data)

    def close(self) -> None:
        pass


def _as_horus_gui_sends(frame: bytes, monkeypatch) -> bytes:
    decoded = decoder.decode_packet(frame)
    decoded["snr"], decoded["f_centre"] = 9.5, 434_650_000  # as horus-gui adds them from its modem
    _CaughtSocket.sent = []
    monkeypatch.setattr(horusudp.socket, "socket", _CaughtSocket)
    horusudp.send_payload_summary(decoded, port=55672)
    monkeypatch.undo()
    (datagram,) = _CaughtSocket.sent
    return datagram


@pytest.mark.parametrize("via", [None, "nohub"])
def test_a_v3_frame_heard_by_horus_gui_becomes_a_position(monkeypatch, via):
    datagram = _as_horus_gui_sends(encode_horus_v3(T, via=via), monkeypatch)
    summary = json.loads(datagram)
    assert summary["callsign"] == "M0XYZ-11" and summary["count_0"] == 4  # the v3 fields as horus-gui names them
    source = HorusUdpSource("127.0.0.1", 0)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            tx.sendto(datagram, ("127.0.0.1", source.address[1]))
        got = next((item for _, item in zip(range(25), source) if item is not None), None)
    finally:
        source.close()
    assert got is not None and source.errors == {}
    t = got.telemetry
    assert (t.callsign, t.time, t.lat, t.lon, t.alt, t.sats) == ("M0XYZ-11", T.time, T.lat, T.lon, T.alt, T.sats)
    assert (t.temp_c, t.pressure_hpa, t.batt_mv) == (T.temp_c, T.pressure_hpa, T.batt_mv)
    assert t.seq == 11 * 3600 + 22 * 60 + 33  # a summary has no sequence: the fix's second of the day


def test_a_v3_frame_without_readings_still_reads(monkeypatch):
    bare = wire.Telemetry("M0XYZ", 1, "00:00:10", 51.5, -0.1, 100, 0, float("nan"), float("nan"), 0, 0)
    source = HorusUdpSource("127.0.0.1", 0)
    try:
        position = source._read(_as_horus_gui_sends(encode_horus_v3(bare), monkeypatch), "horus-udp test")
    finally:
        source.close()
    assert position is not None and position.telemetry.batt_mv == 0 and position.telemetry.sats == 0
