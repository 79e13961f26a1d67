"""Is the SD card full? One answer for the store, the camera and the statistics (docs/storage.md).

The card is *full* while it has less than `store.min_free_mb` free, or since a write was refused
for lack of space (ENOSPC or EDQUOT from the OS, SQLITE_FULL from SQLite) until the card shows
room again. While it is full the payload writes only what the queue needs — stills and the
statistics file wait — and the ground hears it once on each change ("card full: …",
"card recovered: …"), never once per refused write.

Pure logic: the caller reads the free space and reports refusals; nothing here touches the card.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

import apsw

from stratoecho.wire.events import Event, event

MB = 1024 * 1024
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# Room above min_free before the card counts as recovered: a card hovering at the limit would
# otherwise send an event with every record written.
RECOVERY_MARGIN_MIN = 1 * MB


def is_no_space(e: BaseException) -> bool:
    """True for the errors a full card gives: SQLITE_FULL, or ENOSPC/EDQUOT from the OS."""
    return isinstance(e, apsw.FullError) or (isinstance(e, OSError) and e.errno in NO_SPACE_ERRNOS)


def recovery_margin(min_free: int) -> int:
    return max(min_free // 10, RECOVERY_MARGIN_MIN)


@dataclass
class CardWatch:
    """Full or not, from the free space seen and the writes refused; each change is one event."""

    min_free: int  # bytes: store.min_free_mb
    full: bool = False
    refused: str | None = None  # what the card refused last, while that still stands
    notices: list[Event] = field(default_factory=list)  # events for the ground, oldest first

    def observe(self, free: int | None, writes_ok: bool = False) -> None:
        """The card has `free` bytes (None: could not be read); `writes_ok`: a write just reached
        the card (the store is back on it), which is what ends a refusal."""
        if writes_ok:
            self.refused = None
        if free is None:
            return
        if not self.full and (free < self.min_free or self.refused):
            self._set_full(free)
        elif self.full and not self.refused and free >= self.min_free + recovery_margin(self.min_free):
            self.full = False
            self.notices.append(event("card_recovered", free_mb=round(free / MB)))

    def refuse(self, where: str, e: BaseException, free: int | None) -> None:
        """A write to `where` failed for lack of space."""
        self.refused = f"{where}: {type(e).__name__}: {e}"
        if not self.full:
            self._set_full(free)

    def _set_full(self, free: int | None) -> None:
        self.full = True
        # Airtime is dear: the refusal's first words say enough; the log has the rest.
        why = f"refused {self.refused[:80]}" if self.refused else f"below min_free {self.min_free / MB:.0f} MB"
        self.notices.append(event("card_full", free_mb=-1 if free is None else round(free / MB), why=why))

    def take_notices(self) -> list[Event]:
        out, self.notices = self.notices, []
        return out


def stills_budget(stills_mb: float, card_total: int | None, min_free: int) -> int:
    """Bytes the stills may take: `devices.camera.stills_mb`, but never more than the card's
    size less `store.min_free_mb` (a small card, or a budget written for a bigger one)."""
    budget = int(stills_mb * MB)
    if card_total is not None:
        budget = min(budget, max(card_total - min_free, 0))
    return budget
