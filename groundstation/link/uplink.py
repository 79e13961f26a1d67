"""Signing uplink commands at the ground, with a counter that is never reused.

The payload accepts a command only if its counter is above the last one it
accepted, so the ground must never sign two frames with the same counter — not
after a crash, not across a restart, not from two processes at once. The next
counter for each balloon lives in a small JSON state file (by default next to
the ground database, ``<db>.uplink.json``)::

    {"version": 1, "payloads": {"STRATO1": {"next_counter": 42, "key": "5be0c1d8e2a4"}}}

The file is declared as `SignerState` (pydantic): one that does not match is refused with its path
and the field at fault, and left alone for the operator.

``key`` is the key's fingerprint (`uplink.key_fingerprint`): counters are spent per key,
as the payload keeps them. Signing with a new key moves the old key's next counter to
``retired`` and starts the new one at 1 — the way out when a key's counters are used
up; going back to an old key takes its counter back from there.

Each `CommandSigner.sign` takes an exclusive lock (``flock`` on ``<state>.lock``,
which stays in place), reads the state, builds the frame, writes the advanced
counter (temporary file, fsync, rename, fsync of the folder) and only then returns
the frame: a frame is never handed out before its counter is safely spent. A crash in between wastes a counter, which is
harmless — the payload allows gaps.

If the state file is lost, the payload refuses every frame as ``replayed`` until
the ground catches up: `skip_to` (``listen --uplink-skip-past N``) moves the counter
past the last one the payload reports having accepted (``uplink_counter`` in its
health records). Never further than the payload allows in one step
(`uplink.MAX_COUNTER_STEP`), or it refuses every frame as a ``counter jump``.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stratoecho.wire import DEFAULT_MTU, Window
from stratoecho.wire.uplink import DEFAULT_TAG_LEN, MAX_COUNTER, Command, Ping, key_fingerprint, load_key, sign
from stratoecho.wire.uplink_keys import write_key_file

try:
    import fcntl
except ImportError:  # Windows: no cross-process lock; run one signing process at a time there.
    fcntl = None

STATE_VERSION = 1
# How long after the time the balloon signed in a position sentence its window cue may still be
# heard, beyond the seconds it listens (`claim_window`, the first cue of a boot). The sentence's
# HH:MM:SS is its GPS fix's, a few seconds old when it is made; in the slowest mode (UKHAS mode 0)
# the signed sentence and the cue take ~30 s on air, and a 255-byte frame keyed just before the
# beacon's turn ~47 s more; a ground on NTP is within a second of GPS time. 90 s holds them all,
# and still refuses a recording played back minutes later.
FIRST_CUE_SLACK_S = 90.0


class SignerStateError(Exception):
    """A state file this signer cannot trust; starting over at 1 could reuse counters."""


Counter = Annotated[int, Field(ge=1)]


class PayloadCounters(BaseModel):
    """One balloon's counters in the state file."""

    model_config = ConfigDict(extra="forbid", strict=True)
    next_counter: Counter
    key: str | None = None  # the key's fingerprint; None in a file from before keys were told apart
    retired: dict[str, Counter] = Field(default_factory=dict)  # fingerprint -> next counter of an old key
    # (boot, sentence) of the newest window cue answered: a cue no newer is a replay (claim_window)
    window: tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)]] | None = None
    # (boot, ground clock minus payload clock): the smallest its cues showed, which dates a cue (claim_window)
    clock_offset: tuple[Annotated[int, Field(ge=0)], float] | None = None


class SignerState(BaseModel):
    """The whole state file: its version and the counters per balloon (payload id)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    version: Literal[1]
    payloads: dict[str, PayloadCounters]


def state_path_for_db(db_path: str | Path) -> Path:
    db_path = Path(db_path)
    return db_path.with_name(db_path.name + ".uplink.json")


def read_state(state_path: Path) -> SignerState:
    """The state file (empty state when there is none); SignerStateError for one that does not read."""
    try:
        text = state_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return SignerState(version=STATE_VERSION, payloads={})
    try:
        return SignerState.model_validate_json(text)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'the file'}: {err['msg']}"
                             for err in e.errors(include_url=False)[:3])
        raise SignerStateError(
            f"uplink state file {state_path} is not version {STATE_VERSION} signer state ({problems}); "
            "restore it from a backup, or delete it and use skip_to() past the payload's last accepted counter"
        ) from e


def generate_key_file(path: str | Path, force: bool = False) -> bytes:
    """Write a new random 32-byte flight key to `path` in keygen's form (mode 600; never overwrites
    unless `force`): what `python -m groundstation keygen` does. Copy the same file to the payload."""
    return write_key_file(path, force=force)


class CommandSigner:
    """Builds signed command frames for one balloon, spending one counter per frame."""

    def __init__(self, key: bytes, payload_id: str, state_path: str | Path,
                 tag_len: int = DEFAULT_TAG_LEN, mtu: int = DEFAULT_MTU) -> None:
        self._key = key
        self.payload_id = payload_id
        self.state_path = Path(state_path)
        self.tag_len = tag_len
        self.mtu = mtu
        self._thread_lock = threading.Lock()  # flock is per open file, threads need their own
        # Fail now on bad parameters or a corrupt state file, not at the first command.
        sign(key, 1, payload_id, Ping(0), tag_len=tag_len, mtu=mtu)
        with self._locked() as state:  # reads and checks the state file
            self._entry(state)

    @classmethod
    def for_db(cls, key_path: str | Path, payload_id: str, db_path: str | Path, allow_raw: bool = False,
               **kwargs) -> CommandSigner:
        """The signer with the flight key in `key_path` (keygen's form; a bare key only with `allow_raw`)."""
        return cls(load_key(key_path, allow_raw=allow_raw), payload_id, state_path_for_db(db_path), **kwargs)

    @classmethod
    def callsigns_for_key(cls, key_path: str | Path, db_path: str | Path, allow_raw: bool = False) -> list[str]:
        """The balloons this key has signed for at this database (its state file), in its order."""
        fp = key_fingerprint(load_key(key_path, allow_raw=allow_raw))
        return [name for name, entry in read_state(state_path_for_db(db_path)).payloads.items() if entry.key == fp]

    @property
    def next_counter(self) -> int:
        with self._locked() as state:
            return self._entry(state).next_counter

    def sign(self, command: Command) -> bytes:
        """A frame carrying `command` under a counter never used before."""
        with self._locked() as state:
            entry = self._entry(state)
            counter = entry.next_counter
            if counter > MAX_COUNTER:
                raise SignerStateError(f"{self.state_path}: counters for {self.payload_id} are used up; a new key is needed")
            frame = sign(self._key, counter, self.payload_id, command, tag_len=self.tag_len, mtu=self.mtu)
            entry.next_counter = counter + 1
            self._write(state)
        return frame

    def claim_window(self, cue: Window, now_s: float, signed_s: float | None = None) -> str | None:
        """None, and remembered durably, when `cue` may be answered: newer than every cue answered
        before and still open at `now_s` (the ground's clock, in seconds); else why not.

        How long ago a cue was sent is read through the boot's clock offset: the ground's clock
        minus the payload's, the smallest any cue of that boot showed (a cue is never heard
        before it was sent, so the smallest is the truest). The first cue of a boot, which sets
        it, has no offset to be read through: it is dated by `signed_s`, the time (on the ground's
        clock) the balloon signed in the position sentence the cue follows, and answered only
        within its listen seconds and `FIRST_CUE_SLACK_S` of it. Without that time it is not
        answered: a recorded first cue played back would be indistinguishable from a live one."""
        with self._locked() as state:
            entry = self._entry(state)
            if entry.window is not None and (cue.boot, cue.seq) <= tuple(entry.window):
                return "not newer than one answered before (a replay?)"
            offset = now_s - cue.sent_s
            if entry.clock_offset is not None and entry.clock_offset[0] == cue.boot:
                late_s = offset - entry.clock_offset[1]
                if late_s >= cue.listen_s:
                    return (f"heard {late_s:.0f} s after it was sent, past its {cue.listen_s} s window (played "
                            "back? or this station's clock jumped)")
                offset = min(offset, entry.clock_offset[1])
            elif signed_s is None:
                return (f"the first cue of boot {cue.boot} heard, and its position sentence {cue.seq} not heard "
                        "signed: nothing the balloon signed says when it was sent (played back?); the next cue "
                        "whose signed sentence is heard is answered")
            elif now_s - signed_s > cue.listen_s + FIRST_CUE_SLACK_S:
                return (f"the first cue of boot {cue.boot}, heard {now_s - signed_s:.0f} s after the time its signed "
                        f"position sentence gives, past its {cue.listen_s} s window and {FIRST_CUE_SLACK_S:.0f} s "
                        "for airtime and clocks (played back? or this station's clock is wrong)")
            entry.window, entry.clock_offset = (cue.boot, cue.seq), (cue.boot, offset)
            self._write(state)
            return None

    def skip_to(self, counter: int) -> int:
        """Make the next counter at least `counter` (never lower it); returns the next counter."""
        with self._locked() as state:
            entry = self._entry(state)
            if counter > entry.next_counter:
                entry.next_counter = counter
                self._write(state)
            return entry.next_counter

    # ------------------------------------------------------------------ state file

    def _entry(self, state: SignerState) -> PayloadCounters:
        fp = key_fingerprint(self._key)
        entry = state.payloads.setdefault(self.payload_id, PayloadCounters(next_counter=1, key=fp))
        if entry.key is None:  # a file from before keys were told apart: its counters are this key's
            entry.key = fp
        if entry.key != fp:  # a new key (or an old one back): its own counters
            entry.retired[entry.key] = entry.next_counter
            entry.next_counter, entry.key = entry.retired.pop(fp, 1), fp
            entry.window = None  # cues are answered per key: a new flight's boots start again
        return entry

    @contextmanager
    def _locked(self):
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.state_path.with_name(self.state_path.name + ".lock")
        with self._thread_lock, open(lock_path, "a") as lock:
            if fcntl is not None:
                fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield self._read()
            finally:
                if fcntl is not None:
                    fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> SignerState:
        return read_state(self.state_path)

    def _write(self, state: SignerState) -> None:
        # Temporary file in the same folder, synced, then renamed over: the file is
        # always either the old state or the new one, never half of each.
        fd, tmp = tempfile.mkstemp(prefix=self.state_path.name + ".", suffix=".tmp", dir=self.state_path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(state.model_dump(exclude_defaults=True), f, indent=1, sort_keys=True)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.state_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if os.name == "posix":  # the rename itself must reach the disk too
            dir_fd = os.open(self.state_path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
