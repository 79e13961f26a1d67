"""The payload's gate for uplink commands: only signed, fresh frames for this balloon pass.

`CommandGate.accept(frame)` authenticates a frame (`stratoecho.wire.uplink.verify`)
against the last counter it accepted, stores the new counter durably in the
payload's `Store`, and only then hands the command back to be acted on. A power
cut between storing and acting loses at most that one command — it can never let
the same frame be accepted twice, across reboots included.

Rejections are counted by reason and logged when the reason changes, not per
frame: someone keying up with garbage for an hour makes one log line, not thousands.
A frame the ground really made (its tag is right) but that is refused — arguments out
of bounds, a counter jump — is also handed to `on_refused`, so the ground hears why.

The last accepted counter is kept per key (a short hash of it names the counter): a
new key starts afresh at 0, which is the way out when a key's counters are used up
(docs/protocol.md), and a frame signed with the old key still cannot pass.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import structlog

from stratoecho.wire import DEFAULT_MTU
from stratoecho.wire.uplink import (
    AUTHENTIC_REASONS,
    DEFAULT_TAG_LEN,
    Command,
    UplinkRejected,
    key_fingerprint,
    load_key,
    verify,
)

from ..store import Store

log = structlog.get_logger(__name__)

LEGACY_COUNTER_NAME = "uplink:last_counter"  # before counters were kept per key
_MIGRATED = "uplink:legacy_counter_migrated"


def counter_name(key: bytes) -> str:
    """The stored counter's name for `key`."""
    return "uplink:last_counter:" + key_fingerprint(key)


class CommandGate:
    """Verify uplink frames for one balloon; one gate per daemon (it owns the stored counter)."""

    def __init__(self, store: Store, key: bytes, payload_id: str,
                 tag_len: int = DEFAULT_TAG_LEN, mtu: int = DEFAULT_MTU,
                 on_refused: Callable[[UplinkRejected], None] | None = None) -> None:
        self.store = store
        self._key = key
        self.counter_name = counter_name(key)
        self.on_refused = on_refused
        self.payload_id = payload_id
        self.tag_len = tag_len
        self.mtu = mtu
        self.rejections: Counter[str] = Counter()
        self.accepted = 0
        self._last_outcome: str | None = None
        # Verify-then-store must not interleave between threads, or two copies of one
        # frame could both pass the counter check before either is stored.
        self._lock = threading.Lock()
        self._migrate_legacy_counter()

    def _migrate_legacy_counter(self) -> None:
        # A store from before per-key counters: its counter belongs to the key in use at the
        # upgrade (once only, so a key made later still starts afresh).
        if self.store.state.get(_MIGRATED) is None:
            legacy = self.store.counters.get(LEGACY_COUNTER_NAME)
            if legacy:
                self.store.counters.set_max(self.counter_name, legacy)
            self.store.state.set(_MIGRATED, "1")

    @classmethod
    def from_key_file(cls, store: Store, key_path: str | Path, payload_id: str, allow_raw: bool = False,
                      **kwargs) -> CommandGate:
        """The gate with the flight key in `key_path` (keygen's form; a bare key only with `allow_raw`)."""
        return cls(store, load_key(key_path, allow_raw=allow_raw), payload_id, **kwargs)

    @property
    def last_counter(self) -> int:
        return self.store.counters.get(self.counter_name)

    def accept(self, frame: bytes) -> Command | None:
        """The command `frame` carries if it is authentic, fresh and for us; else None (counted)."""
        with self._lock:
            last = self.store.counters.get(self.counter_name)
            try:
                verified = verify(self._key, frame, self.payload_id, last, tag_len=self.tag_len, mtu=self.mtu)
            except UplinkRejected as e:
                self._rejected(e)
                return None
            # Stored (and synced) before anyone acts on the command.
            stored = self.store.counters.set_max(self.counter_name, verified.counter)
            if stored != verified.counter:
                # Another gate on the same store got there first: this frame is now a replay.
                self._rejected(UplinkRejected(
                    "replayed", f"counter {verified.counter} is not above the stored {stored}"))
                return None
            self.accepted += 1
            self._last_outcome = "accepted"
        log.info("uplink_command", counter=verified.counter, command=verified.command.command_id.name)
        return verified.command

    def _rejected(self, e: UplinkRejected) -> None:
        self.rejections[e.reason] += 1
        if e.reason != self._last_outcome:
            log.warning("uplink_rejected", reason=e.reason, error=str(e), total=self.rejections[e.reason])
        self._last_outcome = e.reason
        if e.reason in AUTHENTIC_REASONS and self.on_refused is not None:
            self.on_refused(e)
