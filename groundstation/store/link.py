"""The link as the ground heard it: frames by minute and by station with their signal, which
station heard how many records and by which paths each came, and where each station is. What
the dashboard's link view and `watch` show of the radio path."""

from __future__ import annotations

from dataclasses import dataclass

from .tables import View


@dataclass(frozen=True)
class FrameMinute:
    minute: str  # "YYYY-MM-DDTHH:MM", UTC
    frames: int
    bad: int
    rssi_dbm: float | None  # means over the minute's frames that had a reading
    snr_db: float | None


@dataclass(frozen=True)
class StationStats:
    """Frames one station heard (station "" is this receiver, unnamed)."""

    station: str
    frames: int
    bad: int
    rssi_dbm: float | None  # means over those frames
    snr_db: float | None
    last_rssi_dbm: float | None  # its latest readings, any time
    last_snr_db: float | None
    last_heard: str | None


@dataclass(frozen=True)
class StationRow:
    name: str
    lat: float
    lon: float
    alt_m: float
    updated_at: str


class LinkReader(View):
    """`GroundReader.link`."""

    def last_heard(self) -> str | None:
        """When the newest frame was heard, good or bad."""
        return self._t.one("frames", "SELECT max(received_at) FROM frames")

    def frames_per_minute(self, minutes: int, until: str | None = None) -> list[FrameMinute]:
        """The last `minutes` minutes that heard frames, oldest first; with `until` (ISO, UTC),
        only frames heard by then."""
        sql = (f"SELECT substr(received_at, 1, 16) AS minute, count(*), sum(NOT ok), "
               f"avg({self._t.column('frames', 'rssi_dbm')}), avg({self._t.column('frames', 'snr_db')}) "
               "FROM frames WHERE ? IS NULL OR received_at <= ? GROUP BY minute ORDER BY minute DESC LIMIT ?")
        return [FrameMinute(*r) for r in reversed(self._t.rows("frames", sql, (until, until, minutes)))]

    def frames_after(self, when: str) -> int:
        """Frames whose time of reception (as text) sorts after `when` (ISO, UTC): in an older
        database, what a station with a wrong clock said it heard in the future."""
        return self._t.one("frames", "SELECT count(*) FROM frames WHERE received_at > ?", (when,), default=0)

    def station_stats(self, since: str | None = None) -> list[StationStats]:
        """Per station, by name: frames heard (since the ISO time `since`, or ever) and signal."""
        if self._t.has_column("frames", "station"):
            station, rssi, snr = "coalesce(station, '')", "avg(rssi_dbm)", "avg(snr_db)"

            def latest(column: str) -> str:
                return (f"(SELECT {column} FROM frames AS g WHERE coalesce(g.station, '') = coalesce(f.station, '') "
                        f"AND g.{column} IS NOT NULL ORDER BY g.id DESC LIMIT 1)")
        else:  # before version 4: one receiver, no signal
            station, rssi, snr = "''", "NULL", "NULL"

            def latest(column: str) -> str:
                return "NULL"

        sql = (f"SELECT {station} AS st, count(*), sum(NOT ok), {rssi}, {snr}, {latest('rssi_dbm')}, "
               f"{latest('snr_db')}, max(received_at) FROM frames AS f WHERE received_at >= ? GROUP BY st ORDER BY st")
        return [StationStats(*r) for r in self._t.rows("frames", sql, (since or "",))]

    def records_heard_per_station(self) -> dict[str, int]:
        """Station -> records (and sentences) it heard, counted once each."""
        return dict(self._t.rows("heard", "SELECT station, count(*) FROM heard GROUP BY station"))

    def heard_paths(self, kind: str | None = None) -> dict[tuple[str, int, int], list[str]]:
        """(kind, boot, seq) -> the paths it was heard by ("home", "home via NEAR1"), in the order
        first heard; of one kind, or all (none in a database older than schema 4)."""
        where, args = ("WHERE kind = ?", (kind,)) if kind else ("", ())
        rows = self._t.rows("heard", f"SELECT kind, boot, seq, station FROM heard {where} ORDER BY first_at, station",
                            args)
        out: dict[tuple[str, int, int], list[str]] = {}
        for k, boot, seq, station in rows:
            out.setdefault((k, boot, seq), []).append(station)
        return out

    def stations(self) -> list[StationRow]:
        """Where each station is, by name (none in a database older than schema 7)."""
        rows = self._t.rows("stations", "SELECT name, lat, lon, alt_m, updated_at FROM stations ORDER BY name")
        return [StationRow(**r) for r in rows]
