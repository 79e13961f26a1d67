"""This receiving station as SondeHub-Amateur knows it: who heard the positions, and where.

What SondeHub documents (sondehub-infra swagger: `amateur_telemetry_format`, `listener`,
and the listener handler behind PUT /amateur/listeners), and what this sends:

- with every position: `uploader_callsign`, and where known `uploader_position` as
  [lat, lon, alt] (degrees, degrees, metres), `uploader_radio`, `uploader_antenna`;
- as a listener (station) upload, one JSON object by PUT to /amateur/listeners, at start
  and every few hours (SondeHub shows a station on its map for about 12 hours after it
  last heard of it): `software_name`, `software_version`, `uploader_callsign`,
  `uploader_position`, `uploader_radio`, `uploader_antenna`, `uploader_contact_email`
  (seen by SondeHub's admins only, to reach the station about a fault) and `mobile`
  (true: drawn as a chase car, not a fixed station).

The listener handler reads `uploader_position` without checking it is there, so a listener
upload is only made for a station that has a position. The SSDV server knows the station by
its callsign alone, as each packet's `receiver` (`ssdv_upload.py`). Pure logic, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from stratoecho import __version__

SOFTWARE_NAME = "stratoecho"


@dataclass(frozen=True)
class Station:
    """The ground station's details; only `callsign` is required. ValueError for a bad one."""

    callsign: str
    position: tuple[float, float, float] | None = None  # lat, lon (decimal degrees), alt (m above sea level)
    radio: str | None = None
    antenna: str | None = None
    contact_email: str | None = None
    mobile: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.callsign, str) or not self.callsign.strip():
            raise ValueError("an upload needs the station's callsign (who heard it): e.g. --uploader M0ABC")
        object.__setattr__(self, "callsign", self.callsign.strip())
        if self.position is not None:
            if len(self.position) != 3:
                raise ValueError(f"station position {self.position!r}: give latitude, longitude and altitude")
            lat, lon, alt = (float(v) for v in self.position)
            if not all(math.isfinite(v) for v in (lat, lon, alt)):
                raise ValueError(f"station position {self.position!r} is not three finite numbers")
            if abs(lat) > 90 or abs(lon) > 180:
                raise ValueError(f"station position {lat}, {lon}: latitude must be within ±90, longitude ±180")
            if lat == 0.0 and lon == 0.0:
                raise ValueError("station position 0, 0 is the placeholder of a GPS without a fix, not a place")
            object.__setattr__(self, "position", (lat, lon, alt))
        for name in ("radio", "antenna", "contact_email"):
            value = getattr(self, name)
            if value is not None:
                value = value.strip() or None
                object.__setattr__(self, name, value)
        if self.contact_email is not None and "@" not in self.contact_email:
            raise ValueError(f"contact e-mail {self.contact_email!r} has no @")

    def telemetry_fields(self) -> dict:
        """What goes with every position: the callsign, and the rest where known."""
        fields: dict = {"uploader_callsign": self.callsign}
        if self.position is not None:
            fields["uploader_position"] = list(self.position)
        if self.radio is not None:
            fields["uploader_radio"] = self.radio
        if self.antenna is not None:
            fields["uploader_antenna"] = self.antenna
        return fields


def listener_object(station: Station, software_version: str = __version__) -> dict:
    """The station as a SondeHub-Amateur listener upload; ValueError without a position."""
    if station.position is None:
        raise ValueError(f"station {station.callsign} has no position: SondeHub cannot put it on the map")
    return {
        "software_name": SOFTWARE_NAME,
        "software_version": software_version,
        "uploader_callsign": station.callsign,
        "uploader_position": list(station.position),
        # Unknown details as empty strings, as the reference uploader (pysondehub) sends them.
        "uploader_radio": station.radio or "",
        "uploader_antenna": station.antenna or "",
        "uploader_contact_email": station.contact_email or "",
        "mobile": station.mobile,
    }
