"""Horus UDP as a source: the positions horus-gui and horusdemodlib decode, as they broadcast them.

horusdemodlib's `horusudp.send_payload_summary` (used by horus-gui and by horus_demod's
uploader) broadcasts each decoded packet as one JSON datagram to UDP port 55672:

    {"type": "PAYLOAD_SUMMARY", "callsign": "HORUS-V2", "latitude": -34.9, "longitude": 138.6,
     "altitude": 12345, "speed": -1, "heading": -1, "time": "01:23:45", "comment": "HorusDemodLib",
     "temp": -1, "sats": 9, "batt_voltage": 3.2, "snr": 12.3, "frequency": 434.2,
     "ascent_rate": 5.1, "ext_temperature": -40.5, "ext_humidity": 20, "ext_pressure": 180.2}

`-1` means unknown for speed, heading, temp, sats and batt_voltage; `snr` (dB) and
`frequency` (MHz) come when the decoder knows them; the payload's custom fields follow
under their own names (for the default layout, "4FSKTEST-V2": ascent_rate m/s,
ext_temperature °C, ext_humidity %, ext_pressure hPa). There is no sentence number and no
date. It falls back to 127.0.0.1 when no network can take a broadcast.

Horus Binary v3 (stratoecho/wire/horus_v3.py) arrives in the same datagram: horusdemodlib
names v3's fields as it names v2's (callsign is the frame's own, ``sats``, ``batt_voltage``,
``ext_temperature``, ``ext_pressure``, then ``count_0`` — our boot counter — and any other
custom fields); the internal temperature, the relay's ``via`` and the sequence number do not
reach the datagram. So v2 and v3 read alike here (tests/test_horus_v3_ground.py replays
horusdemodlib's own datagrams of our v3 frames).

A summary is not one of our frames: `summary_telemetry` maps what fits into a
`wire.Telemetry` and the listener stores it as a `Position` (no frame row):

    Telemetry field  from the summary
    ---------------  -------------------------------------------------------------
    callsign         callsign
    time             time (HH:MM:SS)
    lat, lon, alt    latitude, longitude, altitude (rounded to whole metres)
    sats             sats; unknown (-1) is 0, so exporters take it for no fix
    temp_c           ext_temperature (outside air); NaN without it. `temp` is left out:
                     horusdemodlib always sends -1 there, and others mean the board's
    pressure_hpa     ext_pressure; NaN without it
    batt_mv          batt_voltage x 1000; 0 (no reading) when unknown
    seq              the fix's second of the UTC day   } a summary has neither, so the fix's
    boot             the fix's UTC day since 1970      } own time is its key: the same
                                                         fix broadcast twice is stored once

Left out: speed, heading, snr, frequency, comment and the other custom fields.
Summaries our own chase-car feed sends (`--udp-feed`, "model": "stratoecho") are
ignored, so a listener beside it never stores its own positions twice; so are other
message types on the port. What cannot be read is counted by reason ("bad json",
"missing field", "bad field", "bad time") and logged; nothing a datagram holds raises.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime, timezone
from typing import Annotated

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stratoecho import wire
from stratoecho.wire.sentence import parse_hms, telemetry_datetime

from .base import Position
from .udp import bind_shared_udp, receive_datagram

log = structlog.get_logger(__name__)

HORUS_UDP_PORT = 55672  # horusdemodlib's summary_port, horus-gui's "Horus UDP Port"
OUR_MODEL = "stratoecho"  # what exports/udp_feed.py puts in "model"
_EPOCH = date(1970, 1, 1)


class SummaryError(ValueError):
    """A PAYLOAD_SUMMARY that cannot be a position; `reason` is what it is counted under."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class _Summary(BaseModel):
    # Strict: "12.3" is not a number, true is not 1. Fields we leave out are not read at all.
    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="ignore")

    callsign: Annotated[str, Field(min_length=1, max_length=64)]
    latitude: Annotated[float, Field(ge=-90, le=90)]
    longitude: Annotated[float, Field(ge=-180, le=180)]
    altitude: Annotated[float, Field(ge=-1000, le=100_000)]
    time: str
    sats: int = -1
    batt_voltage: float = -1
    ext_temperature: float | None = None
    ext_pressure: Annotated[float, Field(ge=0)] | None = None


def summary_telemetry(message: dict, received: datetime) -> wire.Telemetry:
    """The position a PAYLOAD_SUMMARY carries (see the module's table); `received` dates its
    time of day. SummaryError if it cannot be one."""
    try:
        s = _Summary.model_validate(message)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        reason = "missing field" if first["type"] == "missing" else "bad field"
        raise SummaryError(reason, f"{field}: {first['msg']}") from e
    try:
        h, m, sec = parse_hms(s.time)
        fix_at = telemetry_datetime(s.time, received)
    except wire.WireError as e:
        raise SummaryError("bad time", str(e)) from e
    return wire.Telemetry(
        callsign=s.callsign, seq=h * 3600 + m * 60 + sec, time=s.time, lat=s.latitude, lon=s.longitude,
        alt=int(round(s.altitude)), sats=max(s.sats, 0),
        temp_c=s.ext_temperature if s.ext_temperature is not None else math.nan,
        pressure_hpa=s.ext_pressure if s.ext_pressure is not None else math.nan,
        batt_mv=int(round(s.batt_voltage * 1000)) if s.batt_voltage > 0 else 0,
        boot=(fix_at.date() - _EPOCH).days,
    )


class HorusUdpSource:
    """PAYLOAD_SUMMARY datagrams on a UDP port (55672 by default), shared with the chase-car
    map and the other Horus listeners on this machine (`receive.bind_shared_udp`)."""

    def __init__(self, host: str = "", port: int = HORUS_UDP_PORT) -> None:
        self.errors: Counter = Counter()  # datagrams we could not read, by reason
        self.ignored: Counter = Counter()  # other message types, and our own feed
        self.positions = 0
        self._sock = bind_shared_udp(host, port, "Horus UDP")
        bound = self._sock.getsockname()
        self.address: tuple[str, int] = (bound[0], bound[1])
        log.info("listening", source=f"horus-udp {bound[0]}:{bound[1]}")

    def __iter__(self) -> Iterator[Position | None]:
        while True:
            got = receive_datagram(self._sock, f"Horus UDP port {self.address[1]}")
            if got is None:
                yield None
                continue
            data, peer = got
            position = self._read(data, f"horus-udp {peer[0]}")
            if position is not None:
                self.positions += 1
                yield position

    def _read(self, data: bytes, origin: str) -> Position | None:
        try:
            message = json.loads(data)
        except (ValueError, RecursionError):
            message = None
        if not isinstance(message, dict):
            self.errors["bad json"] += 1
            log.warning("Horus UDP datagram is not a JSON object, skipped", origin=origin,
                        data=data[:80].decode("ascii", "replace"))
            return None
        kind = message.get("type")
        if kind != "PAYLOAD_SUMMARY":
            self.ignored[str(kind)] += 1
            return None
        if message.get("model") == OUR_MODEL:
            self.ignored["our own feed"] += 1
            return None
        try:
            telemetry = summary_telemetry(message, datetime.now(timezone.utc))
        except SummaryError as e:
            self.errors[e.reason] += 1
            log.warning("PAYLOAD_SUMMARY not usable, skipped", origin=origin, reason=e.reason, detail=str(e),
                        callsign=message.get("callsign"))
            return None
        return Position(telemetry, origin)

    def close(self) -> None:
        self._sock.close()
