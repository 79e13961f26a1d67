"""The exporters `listen` feeds as it hears, one entry each in one table (`LIVE`), as the
`export --format` choices are in formats.py. The listener knows none by name: it makes every
entry its `[exports]` asks for and hands each what it takes. To add one, write its exporter
(`add`, `flush`, `close`, as in base.py) and `register_live(...)` before `listen` starts: beside
the others for one that ships, or from elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from .base import Guarded, add_entry
from .settings import SondeHubSection, SsdvSection
from .sondehub import DEFAULT_URL, SondeHubUploader
from .ssdv_upload import DEFAULT_URL as SSDV_URL
from .ssdv_upload import SsdvUploader
from .station import Station
from .udp_feed import UdpFeed
from .uploader import BatchUploader


@dataclass(frozen=True)
class LiveContext:
    """What the station is, for the exporters to say: `station` ([exports.sondehub]'s, None without
    its callsign), the receiver's own frequency where the source is a radio, and `landing`, which
    makes the predicted landing's feed from a burst height and a descent rate (groundstation/predict.py)."""

    station: Station | None = None
    tuned_mhz: float | None = None
    landing: Callable[[float, float], object] | None = None


@dataclass(frozen=True)
class LiveExport:
    """One exporter `listen` feeds: `name` is its table, `[exports.NAME]` (groundstation/config.py;
    listen's flags override it); `make` the exporter from that table (None when the table does not
    ask for it) and the station (`LiveContext`), ValueError for settings it cannot use; `takes`
    "positions" (each new position as heard, a `Heard` with its flight's last musing in
    `last_musing`) or "ssdv" (each SSDV packet the database kept as new, and when)."""

    name: str
    make: Callable[[Any, LiveContext], object | None]
    takes: Literal["positions", "ssdv"] = "positions"


LIVE: dict[str, LiveExport] = {}  # in the order the listener feeds them


def register_live(entry: LiveExport) -> LiveExport:
    """Add `entry` to the table `listen` reads; ValueError for a name taken or not a plain word."""
    return add_entry(LIVE, entry.name, entry, "live exporter", r"[a-z][a-z0-9_]*", "an [exports] table")


STATION_OPTIONS = ("position", "radio", "antenna", "email", "mobile", "frequency_mhz")


def station_from_config(sondehub: SondeHubSection) -> Station | None:
    """The station `[exports.sondehub]` (listen's --sondehub-* flags) describes; None without its
    uploader. ValueError for a station detail without the callsign, or a bad detail."""
    if not sondehub.uploader:
        given = [name for name in STATION_OPTIONS if getattr(sondehub, name)]
        if given:
            flags = ", ".join(f"--sondehub-{name.removesuffix('_mhz')}" for name in given)
            raise ValueError(f"{flags} goes with --sondehub-uploader CALL (the station's callsign; in the file: "
                             f"[exports.sondehub] {', '.join(given)} go with uploader)")
        return None
    return Station(sondehub.uploader, position=sondehub.position, radio=sondehub.radio, antenna=sondehub.antenna,
                   contact_email=sondehub.email, mobile=sondehub.mobile)


def ssdv_from_config(ssdv: SsdvSection, station: Station | None) -> SsdvUploader | None:
    """The SSDV upload `[exports.ssdv]` (--ssdv-upload, --ssdv-url) asks for: None unless `upload`.
    The receiver is the station's callsign: `uploader` (--ssdv-upload CALL), or the SondeHub
    uploader's (`station`) when that is unset. ValueError for a missing or second callsign, or a
    URL with the upload off."""
    if not ssdv.upload:
        if ssdv.url:
            raise ValueError("--ssdv-url goes with --ssdv-upload (turn the upload of pictures on; in the file: "
                             "[exports.ssdv] upload = true)")
        return None
    call = (ssdv.uploader or "").strip()
    if not call and station is None:
        raise ValueError("--ssdv-upload needs the station's callsign: --ssdv-upload CALL, "
                         "or --sondehub-uploader CALL beside it ([exports.ssdv] uploader or [exports.sondehub] "
                         "uploader in the file)")
    if call and station is not None and call.upper() != station.callsign.upper():
        raise ValueError(f"--ssdv-upload {call} and --sondehub-uploader {station.callsign}: one station, "
                         "one callsign (give --ssdv-upload alone to use the SondeHub one)")
    return SsdvUploader(station or Station(call), ssdv.url or SSDV_URL)


def _sondehub(s: SondeHubSection, ctx: LiveContext) -> SondeHubUploader | None:
    if ctx.station is None:
        return None
    return SondeHubUploader(ctx.station, s.url or DEFAULT_URL, frequency_mhz=s.frequency_mhz or ctx.tuned_mhz,
                            modulation=s.modulation)


def _udp_feed(s, ctx: LiveContext) -> UdpFeed | None:
    if s.address is None:
        return None
    host, port = s.address
    landing = ctx.landing(s.burst_alt_m, s.descent_rate_m_s) if s.landing and ctx.landing is not None else None
    return UdpFeed(host, port, broadcast=s.broadcast, landing=landing)


register_live(LiveExport("sondehub", _sondehub))
register_live(LiveExport("udp_feed", _udp_feed))
register_live(LiveExport("ssdv", lambda s, ctx: ssdv_from_config(s, ctx.station), takes="ssdv"))


def live_exporters(exports: object, ctx: LiveContext) -> list[tuple[LiveExport, Guarded]]:
    """Each registered exporter `exports` (the [exports] section) asks for, guarded, with its entry,
    in the table's order. ValueError for settings one cannot use, those made before it stopped again."""
    made: list[tuple[LiveExport, Guarded]] = []
    try:
        for entry in LIVE.values():
            exporter = entry.make(getattr(exports, entry.name, None), ctx)
            if exporter is not None:
                made.append((entry, Guarded(exporter, entry.name)))
    except ValueError:
        for _, guarded in made:  # an uploader's thread runs already: stop it, sending nothing
            inner = guarded.inner
            inner.close(deadline_s=0) if isinstance(inner, BatchUploader) else inner.close()
        raise
    return made
