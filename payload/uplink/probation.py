"""Risky uplink changes on probation: applied at once, reverted unless confirmed in time.

A command the wire declares risky (SET_INTERVALS, SET_MODE) can make the payload quieter.
If the new settings break the link — the ground no longer hears the beacon, or cannot reach
a listen window — no later command could undo them, so each is on probation, like a
router's "commit confirmed": the payload applies it, sends
`stratoecho.wire.uplink.unconfirmed_event`, and keeps it only if the same command arrives
again at least one listen window later (the ground heard the event, and its frame reached a
window under the new settings). Otherwise,
`uplink.confirm_s` after it was applied (longer if two listen windows take longer under
the new settings), it reverts to the last confirmed value.

Pure logic on numbers the caller passes (the time in seconds, the values as tuples);
the command handler applies the values (its table's `OnProbation` entries say how) and
persists `to_json()` where a restart must see it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from pydantic import TypeAdapter, ValidationError


@dataclass(frozen=True)
class Pending:
    """A change on probation: `value` in force, `previous` (the last confirmed) to restore."""

    name: str  # the command's name (`Command.name()`): "set_intervals"
    value: tuple
    previous: tuple
    applied_s: float
    deadline_s: float


_STATE = TypeAdapter(list[dict])
_ENTRY = TypeAdapter(Pending)


class Confirmations:
    """What is on probation, by command name; at most one change each."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s  # a repeat sooner than this is the same window: no proof
        self.pending: dict[str, Pending] = {}

    def offer(self, name: str, value: tuple, current: tuple, now_s: float, confirm_s: float) -> str:
        """A command asking for `value` (the setting is `current` now). Returns what to do:

        - ``"pending"``: apply `value`; it reverts `confirm_s` from now unless confirmed;
        - ``"confirmed"``: the same change again, from a later window: it stays;
        - ``"restored"``: back to the last confirmed value: apply it, nothing is on probation;
        - ``"repeat"``: the same change again within one window: nothing to do.
        """
        value, current = tuple(value), tuple(current)
        p = self.pending.get(name)
        if p is not None and p.value == value:
            if now_s - p.applied_s <= self.window_s:
                return "repeat"
            del self.pending[name]
            return "confirmed"
        previous = p.previous if p is not None else current
        if value == previous:
            self.pending.pop(name, None)
            return "restored"
        self.pending[name] = Pending(name, value, previous, now_s, now_s + confirm_s)
        return "pending"

    def expired(self, now_s: float) -> list[Pending]:
        """The changes whose time ran out, taken off probation: restore each one's `previous`."""
        due = [p for p in self.pending.values() if now_s >= p.deadline_s]
        for p in due:
            del self.pending[p.name]
        return due

    def to_json(self) -> str:
        return json.dumps([asdict(p) for p in self.pending.values()])

    def load_json(self, text: str | None, names: frozenset[str] | set[str]) -> list[str]:
        """Take back what a previous boot left on probation, for the commands in `names` (the
        others do not survive a restart); returns what could not be read, for the log."""
        if not text:
            return []
        problems: list[str] = []
        try:
            items = _STATE.validate_json(text)
        except ValidationError as e:
            return [f"unreadable probation state: {_first(e)}"]
        for item in items:
            try:
                p = _ENTRY.validate_python(item)
            except ValidationError as e:
                problems.append(f"unreadable probation entry {item!r}: {_first(e)}")
                continue
            if p.name in names:
                self.pending[p.name] = p
        return problems


def _first(e: ValidationError) -> str:
    """The first problem pydantic found, as `field: message`."""
    err = e.errors()[0]
    where = ".".join(str(x) for x in err["loc"]) or "(top level)"
    return f"{where}: {err['msg']}"
