"""NMEA content: `parse_gga` / `parse_rmc`, and `FixState`, which folds the latest GGA
(position, altitude, fix quality, satellites) and RMC (date, validity, speed) into one `Fix`."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from .nmea import NmeaSentence


@dataclass(frozen=True)
class Gga:
    time: tuple[int, int, float] | None  # h, m, s (UTC)
    lat: float | None
    lon: float | None
    quality: int  # 0 no fix, 1 GPS, 2 DGPS, 4/5 RTK, 6 dead reckoning
    sats: int
    hdop: float | None
    alt_m: float | None  # above mean sea level


@dataclass(frozen=True)
class Rmc:
    time: tuple[int, int, float] | None
    valid: bool  # status "A"
    lat: float | None
    lon: float | None
    speed_mps: float | None
    course_deg: float | None
    date: date | None


def _hms(text: str) -> tuple[int, int, float] | None:
    if not text:
        return None
    h, m, s = int(text[0:2]), int(text[2:4]), float(text[4:])
    if h > 23 or m > 59 or s >= 61:
        raise ValueError(f"time {text!r}")
    return h, m, s


def _coord(value: str, hemi: str, deg_digits: int) -> float | None:
    if not value:
        return None
    degrees = int(value[:deg_digits]) + float(value[deg_digits:]) / 60.0
    if hemi in ("S", "W"):
        return -degrees
    if hemi not in ("N", "E"):
        raise ValueError(f"hemisphere {hemi!r}")
    return degrees


def _float(text: str) -> float | None:
    return float(text) if text else None


def parse_gga(fields: tuple[str, ...]) -> Gga:
    """Fields after `$xxGGA`; ValueError if malformed."""
    if len(fields) < 9:
        raise ValueError(f"GGA with {len(fields)} fields")
    return Gga(
        time=_hms(fields[0]),
        lat=_coord(fields[1], fields[2], 2),
        lon=_coord(fields[3], fields[4], 3),
        quality=int(fields[5] or 0),
        sats=int(fields[6] or 0),
        hdop=_float(fields[7]),
        alt_m=_float(fields[8]),
    )


def parse_rmc(fields: tuple[str, ...]) -> Rmc:
    """Fields after `$xxRMC`; ValueError if malformed."""
    if len(fields) < 9:
        raise ValueError(f"RMC with {len(fields)} fields")
    d = fields[8]
    knots = _float(fields[6])
    return Rmc(
        time=_hms(fields[0]),
        valid=fields[1] == "A",
        lat=_coord(fields[2], fields[3], 2),
        lon=_coord(fields[4], fields[5], 3),
        speed_mps=knots * 0.514444 if knots is not None else None,
        course_deg=_float(fields[7]),
        date=date(2000 + int(d[4:6]), int(d[2:4]), int(d[0:2])) if d else None,
    )


@dataclass(frozen=True)
class Fix:
    """The latest GGA and RMC together. `valid`: RMC status A and GGA fix quality > 0.
    `received_at` is the monotonic time of the last sentence that went into it."""

    utc: datetime | None
    lat: float | None
    lon: float | None
    alt_m: float | None
    sats: int
    quality: int
    hdop: float | None
    speed_mps: float | None
    course_deg: float | None
    valid: bool
    dated: bool  # utc's date came from an RMC (GGA carries no date)
    received_at: float

    def age_s(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self.received_at


class FixState:
    """Folds GGA and RMC sentences into a `Fix`. Malformed ones count in `errors["malformed"]`."""

    def __init__(self) -> None:
        self.gga: Gga | None = None
        self.rmc: Rmc | None = None
        self.fix: Fix | None = None
        self.errors: Counter = Counter()

    def update(self, sentence: NmeaSentence, now: float) -> bool:
        """True if the sentence changed the fix."""
        try:
            if sentence.kind == "GGA":
                self.gga, latest = parse_gga(sentence.fields), "gga"
            elif sentence.kind == "RMC":
                self.rmc, latest = parse_rmc(sentence.fields), "rmc"
            else:
                return False
        except (ValueError, IndexError):
            self.errors["malformed"] += 1
            return False
        self.fix = self._combine(latest, now)
        return True

    def _combine(self, latest: str, now: float) -> Fix:
        gga, rmc = self.gga, self.rmc
        newest = gga if latest == "gga" else rmc
        utc = None
        if newest.time is not None:
            h, m, s = newest.time
            day = rmc.date if rmc is not None and rmc.date is not None else None
            base = datetime.combine(day or date(1970, 1, 1), datetime.min.time(), tzinfo=timezone.utc)
            utc = base + timedelta(hours=h, minutes=m, seconds=s)
            if day is not None and latest == "gga" and rmc.time is not None:
                rh, rm, rs = rmc.time
                if (h * 3600 + m * 60 + s) - (rh * 3600 + rm * 60 + rs) < -43200:
                    utc += timedelta(days=1)  # GGA just after midnight, RMC still from yesterday
        quality = gga.quality if gga else 0
        valid = quality > 0 and (rmc is None or rmc.valid) if gga else bool(rmc and rmc.valid)
        source = gga if gga is not None and gga.lat is not None else rmc
        return Fix(
            utc=utc,
            lat=source.lat if source else None,
            lon=source.lon if source else None,
            alt_m=gga.alt_m if gga else None,
            sats=gga.sats if gga else 0,
            quality=quality,
            hdop=gga.hdop if gga else None,
            speed_mps=rmc.speed_mps if rmc else None,
            course_deg=rmc.course_deg if rmc else None,
            valid=valid,
            dated=utc is not None and rmc is not None and rmc.date is not None,
            received_at=now,
        )
