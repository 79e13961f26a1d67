"""Position feed for chase-car maps: one JSON datagram per new fix, in the Horus UDP
"PAYLOAD_SUMMARY" format that chasemapper and other Horus UDP listeners read (port 55672)::

    {"type": "PAYLOAD_SUMMARY", "callsign": "...", "latitude": 52.1, "longitude": -1.2,
     "altitude": 12345, "speed": 18.2, "heading": 71.0, "time": "12:34:56",
     "comment": "stratoecho", "model": "stratoecho", "temp": -40.5, "sats": 9,
     "batt_voltage": 3.71}

speed is km/h over the ground and heading degrees true, both from this fix and the
previous one of the same callsign; -1 means unknown (first fix, or no time between them),
as the Horus tools send it. temp is -1 likewise when the sensor had no reading.
`snr` and `frequency` (MHz) are added when `payload_summary` is given them.

Only fixes go out, and only ones newer than the last one sent for that callsign: a
sentence recovered late by a repair would otherwise make the map jump backwards.
Sending never raises: a network error is counted and logged when the feed stops working.

The predicted landing (`landing=`, a predict.FeedLanding; listen --udp-feed-landing): with a fix, a second
PAYLOAD_SUMMARY, every 30 s of flight, under the callsign CALL-LANDING at the landing
groundstation/predict.py works out from the track, with the fix's time and, as its comment, the 95 % radius and
the landing time. The Horus UDP format has no message for a prediction, so a chase-car
map shows it as one more payload, on the ground where the balloon will come down; with no
internet in the car, chasemapper's own predictor (GFS or Tawhiri) has nothing to go on.
"""

from __future__ import annotations

import json
import math
import socket
from collections import Counter
from datetime import datetime

import structlog

from groundstation.link.heard import Heard
from stratoecho import geo, wire

from .base import has_fix, received_time, telemetry_datetime

log = structlog.get_logger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 55672  # the Horus UDP port chasemapper listens on
UNKNOWN = -1
LANDING_SUFFIX = "-LANDING"


def payload_summary(t: wire.Telemetry, previous: tuple[datetime, float, float] | None = None, *,
                    when: datetime | None = None, comment: str = "stratoecho", model: str = "stratoecho",
                    snr_db: float | None = None, frequency_mhz: float | None = None) -> dict:
    """A PAYLOAD_SUMMARY for one fix; `previous` is (time, lat, lon) of the fix before it."""
    speed = heading = UNKNOWN
    if previous is not None and when is not None:
        dt = (when - previous[0]).total_seconds()
        if dt > 0:
            speed = round(geo.distance_m(previous[1], previous[2], t.lat, t.lon) / dt * 3.6, 1)
            heading = round(geo.bearing_deg(previous[1], previous[2], t.lat, t.lon), 1)
    packet = {
        "type": "PAYLOAD_SUMMARY",
        "callsign": t.callsign,
        "latitude": float(t.lat),
        "longitude": float(t.lon),
        "altitude": float(t.alt),
        "speed": speed,
        "heading": heading,
        "time": t.time,
        "comment": comment,
        "model": model,
        "temp": UNKNOWN if math.isnan(t.temp_c) else float(t.temp_c),
        "sats": t.sats,
        # 0 mV is no current reading, never a flat battery.
        "batt_voltage": round(t.batt_mv / 1000.0, 3) if t.batt_mv != 0 else UNKNOWN,
    }
    if snr_db is not None:
        packet["snr"] = float(snr_db)
    if frequency_mhz is not None:
        packet["frequency"] = float(frequency_mhz)
    return packet


class UdpFeed:
    """Exporter sending PAYLOAD_SUMMARY datagrams to host:port (broadcast=True for a
    broadcast address such as 255.255.255.255 or 192.168.1.255). Counters in `stats`."""

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, broadcast: bool = False,
                 comment: str = "stratoecho", model: str = "stratoecho", landing=None) -> None:
        try:
            family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        except (socket.gaierror, UnicodeError) as e:
            raise ValueError(f"UDP feed: cannot resolve {host}:{port}: {e}") from e
        self.address = address
        self.comment, self.model = comment, model
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        if broadcast:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        self._last: dict[str, tuple[datetime, float, float]] = {}
        # predict.FeedLanding, or None: called with each fix, answers a prediction when one is due
        self.landing = landing
        self._working = True
        self.stats: Counter[str] = Counter()

    def add(self, heard: Heard) -> None:
        t = heard.record
        if not has_fix(t):
            self.stats["skipped_no_fix"] += 1
            return
        try:
            when = telemetry_datetime(t.time, received_time(heard))
        except ValueError as e:  # WireError is one: a time that is not HH:MM:SS
            self.stats["skipped_invalid"] += 1
            log.warning("udp_feed_skipped", reason=str(e))
            return
        callsign = t.callsign
        previous = self._last.get(callsign)
        if previous is not None and when <= previous[0]:
            self.stats["skipped_stale"] += 1
            return
        packet = payload_summary(t, previous, when=when, comment=self.comment, model=self.model)
        self._last[callsign] = (when, packet["latitude"], packet["longitude"])
        if self._send(packet):
            self.stats["sent"] += 1
        if self.landing is not None:
            self._send_landing(t, when)

    def _send_landing(self, t: wire.Telemetry, when: datetime) -> None:
        p = self.landing(t.callsign, t.boot, when.timestamp(), t.lat, t.lon, float(t.alt))
        if p is None:
            return
        lands = datetime.fromtimestamp(p.t_s + p.landing_in_s, when.tzinfo).strftime("%H:%M:%S")
        packet = {"type": "PAYLOAD_SUMMARY", "callsign": t.callsign + LANDING_SUFFIX,
                  "latitude": round(p.lat, 6), "longitude": round(p.lon, 6), "altitude": round(p.ground_alt_m, 1),
                  "speed": UNKNOWN, "heading": UNKNOWN, "time": t.time,
                  "comment": f"predicted landing of {t.callsign}: within {p.ellipse.semi_major_m / 1000:.1f} km, "
                             f"at {lands}Z",
                  "model": self.model}
        if self._send(packet):
            self.stats["sent_landing"] += 1

    def _send(self, packet: dict) -> bool:
        try:
            self._sock.sendto(json.dumps(packet).encode("utf-8"), self.address)
        except OSError as e:
            self.stats["send_errors"] += 1
            if self._working:  # said once per outage, not once per sentence
                log.warning("udp_feed_down", to=f"{self.address[0]}:{self.address[1]}", error=str(e))
            self._working = False
            return False
        if not self._working:
            log.info("udp_feed_up", to=f"{self.address[0]}:{self.address[1]}")
        self._working = True
        return True

    def flush(self) -> None:
        """Nothing waits: every datagram left in add()."""

    def close(self) -> None:
        self._sock.close()
