"""The frames table under its byte quota: every frame heard, as far as the quota lets it in.

Anyone can send a station frames, so the table keeps what its quotas allow
(groundstation/frame_quota.py): the balloon's own tagged frames always, anything else up to a
share per source and a total. What the quota keeps out is counted (`not_stored`) and warned
about now and then, never stored. The `Store`'s part for it, on the writer's connection
(`store.frames`).
"""

from __future__ import annotations

import sqlite3

import structlog

from ..frame_quota import FrameBudget, FrameQuota, bytes_by_sql
from .schema import utc_now

log = structlog.get_logger(__name__)


class FrameLog:
    """`quota`: the bytes the frames table may hold per source and in all (`frame_quota`; None: no
    limit, for the aggregator, which keeps its own per station); `clock` times its warnings."""

    def __init__(self, db: sqlite3.Connection, quota: FrameQuota | None, clock) -> None:
        self._db = db
        self.quota, self._clock = quota, clock
        self._budget: FrameBudget | None = None  # counted from the database at the first frame

    def add(self, data: bytes, source: str, error: str | None = None, received_at: str | None = None, *,
            station: str | None = None, rssi_dbm: float | None = None, snr_db: float | None = None,
            vouched: bytes | None = None) -> int:
        """One row for a frame heard; its id, or 0 when the frame quota keeps it out (a claim past
        its source's share or the total: counted in `not_stored`). `vouched`: the frame the
        balloon's tag checked in (frame_quota.FrameBudget.admit), never kept out."""
        received_at = received_at or utc_now()
        if self.quota is not None and not self._fits(data, source, error, received_at, station, vouched):
            return 0
        cur = self._db.execute(
            "INSERT INTO frames (received_at, source, hex, ok, error, station, rssi_dbm, snr_db) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (received_at, source, data.hex(), int(error is None), error, station, rssi_dbm, snr_db),
        )
        return int(cur.lastrowid or 0)

    def _fits(self, data: bytes, source: str, error: str | None, received_at: str, station: str | None,
              vouched: bytes | None) -> bool:
        if self._budget is None:  # a Store that never stores a frame (the dashboard's) never counts
            self._budget = FrameBudget(self.quota, self.bytes_by_source())
        budget = self._budget
        if budget.admit(data, source, error, received_at, station, vouched=vouched):
            return True
        since = budget.warning_due(source, self._clock())
        if since is not None:
            key = budget.key(source)
            log.warning("frames past the storage quota not stored", source=key, since_last_warning=since,
                        total=budget.over_quota[key], source_quota_mb=self.quota.source_bytes / 1e6,
                        total_quota_mb=self.quota.total_bytes / 1e6,
                        stored_mb=round(budget.bytes.total_used / 1e6, 3))
        return False

    @property
    def not_stored(self) -> dict[str, int]:
        """Frames the quota kept out since opening, by source."""
        return dict(self._budget.over_quota) if self._budget is not None else {}

    def bytes_by_source(self) -> dict[str, int]:
        """The bytes of the frames stored, by origin, as `frame_quota.row_bytes` counts them."""
        return dict(self._db.execute(bytes_by_sql("source")))

    def bytes_by_station(self) -> dict[str, int]:
        """The bytes of the frames stored from each station (the aggregator's quota counts them)."""
        return dict(self._db.execute(bytes_by_sql("station")))
