"""A SQLite VFS that models the page cache, so a test can pull the plug for real.

`PowerCutVFS` sits between SQLite and the files (an apsw VFS over the default one).
Every write goes straight to the real file, so the running connection reads back what
it wrote and WAL shared memory keeps working through the base VFS. Alongside, for each
file, it remembers what the *card* holds: the file's size at its last `xSync`, and the
pre-image (content at the last sync) of every 4 KiB block written or truncated away
since. `xSync` makes that file's dirty blocks durable and forgets their pre-images.

Pulling the plug: `cut_at = N` makes operation number N (counting `xWrite`, `xSync`
and `xTruncate` over all named files, from 0) and every later one fail with an I/O
error; deletes fail too. Nothing more reaches the card. `crash_image(dest, rng)` then
writes the files as the card could hold them after the cut:

* each dirty block independently reached the card (kept), did not (pre-image), or
  was torn: each of its 512-byte sectors independently old or new;
* each file's size is either its current size or its size at the last sync; bytes
  the card never held (past the synced size) read as zeros;
* no `-shm` file: it is shared memory that SQLite rebuilds from the WAL.

Why tearing at 512 bytes: the unix VFS reports `SQLITE_IOCAP_POWERSAFE_OVERWRITE |
SQLITE_IOCAP_SUBPAGE_READ` and no `SQLITE_IOCAP_ATOMIC*`, `SEQUENTIAL` or
`SAFE_APPEND`, so SQLite promises to survive writes that land in any order and only
partly; it only relies on bytes it did not write staying as they were (powersafe
overwrite), which this model keeps (a restored sector differs from the new one only
in bytes that were written). An SD card programs whole sectors, hence 512 bytes.

Not modelled, on purpose or for want of a need:

* tearing inside a 512-byte sector, sectors that read back as garbage, bit rot;
* directory operations: creating a file and deleting one are durable at once (SQLite
  deletes a WAL only after a checkpoint synced the database; the store's rollback
  journal is used once, to switch a new file to WAL);
* files written around the VFS (the store's `.counters` side file, which it replaces
  by write, fsync, rename, fsync of the directory): with `snapshot_dirs` they are
  copied as they stand at the moment of the cut, which is right for such atomic
  replacement and optimistic for anything else;
* temporary files without a name (sorting, temp tables): passed to the base VFS
  untouched and uncounted; nothing durable lives there;
* the real `fsync`: a modelled sync does not call it (tests run faster, and nothing
  here survives a real power cut anyway) unless `real_sync=True`.

Counting mode: with `cut_at = None` (the default) nothing fails and `stats` holds,
per file path, the bytes written, writes, syncs and truncates — what the card would
be asked to do, for "bytes written to storage per hour" figures:

    with PowerCutVFS("counting") as vfs:
        store = Store(path, vfs=vfs.name)
        ...  # an hour of flight
        store.close()
    per_hour = vfs.total().bytes_written

`crash_image` reads the live files with plain file I/O; call it after the cut or
after closing the connections (closing a plain file handle drops the process's POSIX
locks on it, which a live connection in this process would not notice).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import apsw

BLOCK = 4096  # page-cache granularity: what the OS writes back as a unit
SECTOR = 512  # card granularity: a torn block is a mix of old and new sectors


@dataclass
class FileStats:
    bytes_written: int = 0
    writes: int = 0
    syncs: int = 0
    truncates: int = 0


@dataclass
class _Cached:
    """What the card holds of one file, besides what the live file shows."""

    size: int  # current size (the live file's)
    synced_size: int  # size at the last sync
    pre: dict[int, bytes] = field(default_factory=dict)  # block -> content at the last sync


class PowerCut(apsw.IOError):
    """Raised by every write, sync, truncate and delete from the cut on."""


class PowerCutVFS(apsw.VFS):
    """Register under `name`; open databases with `vfs=name`. Use as a context manager
    (or call `unregister()`) so a later instance can take the same name."""

    def __init__(self, name: str = "powercut", *, cut_at: int | None = None,
                 snapshot_dirs: tuple[str | Path, ...] = (), real_sync: bool = False, trace: bool = False):
        self.name = name
        self.cut_at = cut_at
        self.ops = 0  # writes, syncs and truncates so far, all files
        self.tripped_at: int | None = None  # op number the cut fell on, once it has
        self.snapshot_dirs = tuple(Path(d).absolute() for d in snapshot_dirs)
        self.real_sync = real_sync
        self.stats: dict[str, FileStats] = {}
        # With trace=True, (kind, path) of every counted operation, in order: a test can
        # see where its cut points fall (WAL append, checkpoint into the database, ...).
        self.trace: list[tuple[str, str]] | None = [] if trace else None
        self._files: dict[str, _Cached] = {}
        self._outside: dict[str, bytes] = {}  # files written around the VFS, as at the cut
        super().__init__(name, "")

    def __enter__(self) -> PowerCutVFS:
        return self

    def __exit__(self, *exc) -> None:
        self.unregister()

    @property
    def tripped(self) -> bool:
        return self.tripped_at is not None

    # ------------------------------------------------------------------ the cut

    def _tick(self, kind: str, path: str) -> None:
        """Count one operation that would reach the card; fail it if the power is gone."""
        if self.trace is not None:
            self.trace.append((kind, path))
        n = self.ops
        self.ops += 1
        if self.cut_at is not None and n >= self.cut_at:
            if self.tripped_at is None:
                self.tripped_at = n
                self._snapshot_outside()
            raise PowerCut(f"power cut at operation {self.tripped_at}")

    def _snapshot_outside(self) -> None:
        for d in self.snapshot_dirs:
            for p in sorted(d.iterdir()) if d.is_dir() else ():
                if p.is_file() and str(p) not in self._files and not p.name.endswith("-shm"):
                    self._outside[str(p)] = p.read_bytes()

    # ------------------------------------------------------------------ VFS methods

    def xOpen(self, name, flags):
        if name is None:
            return apsw.VFSFile("", name, flags)  # anonymous temp file: not storage
        path = name if isinstance(name, str) else name.filename()
        return _File(self, path, name, flags)

    def xDelete(self, filename, syncdir):
        if self.tripped:
            raise PowerCut(f"power cut at operation {self.tripped_at}")
        self._files.pop(filename, None)  # deletion is durable at once (see module docstring)
        return super().xDelete(filename, syncdir)

    # ------------------------------------------------------------------ the card's view

    def _cached(self, path: str, live_size: int) -> _Cached:
        cached = self._files.get(path)
        if cached is None:
            # First sight of this file: what is on disk now counts as durable.
            cached = self._files[path] = _Cached(size=live_size, synced_size=live_size)
        return cached

    def crash_image(self, dest_dir: str | Path, rng: random.Random, *,
                    keep: float = 0.5, torn: float = 0.25) -> list[Path]:
        """Write the files as the card holds them after the cut into `dest_dir` (same
        names), and the `snapshot_dirs` files as they stood at the cut; returns the paths.

        Each dirty block is torn with probability `torn`, else kept with probability
        `keep`; a file keeps its current size with probability `keep`. keep=1, torn=0
        gives the live files; keep=0, torn=0 the files as at their last sync."""
        dest = Path(dest_dir)
        dest.mkdir(parents=True, exist_ok=True)
        if not self.tripped:
            self._snapshot_outside()  # no cut (yet): the files around the VFS as they are now
        written = []
        for path, cached in sorted(self._files.items()):
            if path.endswith("-shm") or not os.path.exists(path):
                continue
            out = dest / Path(path).name
            out.write_bytes(self._card_bytes(Path(path).read_bytes(), cached, rng, keep, torn))
            written.append(out)
        for path, data in sorted(self._outside.items()):
            out = dest / Path(path).name
            out.write_bytes(data)
            written.append(out)
        return written

    @staticmethod
    def _card_bytes(live: bytes, cached: _Cached, rng: random.Random, keep: float, torn: float) -> bytes:
        size = cached.size
        if cached.synced_size != size and rng.random() >= keep:
            size = cached.synced_size
        image = bytearray(live[:size].ljust(size, b"\0"))
        for block, pre in sorted(cached.pre.items()):
            start = block * BLOCK
            if start >= size:
                continue
            end = min(start + BLOCK, size)
            old = pre.ljust(BLOCK, b"\0")  # past the synced size the card held nothing: zeros
            # What the cache holds now; bytes truncated away (when the truncation did not
            # reach the card) stay as they were.
            live_part = live[start:min(start + BLOCK, cached.size)]
            new = live_part + old[len(live_part):]
            r = rng.random()
            if r < torn:
                chosen = b"".join((new if rng.random() < 0.5 else old)[s:s + SECTOR] for s in range(0, BLOCK, SECTOR))
            elif r < torn + (1 - torn) * keep:
                chosen = new
            else:
                chosen = old
            image[start:end] = chosen[: end - start]
        return bytes(image)

    def total(self) -> FileStats:
        """All files' statistics added up."""
        out = FileStats()
        for s in self.stats.values():
            out.bytes_written += s.bytes_written
            out.writes += s.writes
            out.syncs += s.syncs
            out.truncates += s.truncates
        return out


class _File(apsw.VFSFile):
    def __init__(self, vfs: PowerCutVFS, path: str, name, flags):
        super().__init__("", name, flags)
        self.vfs, self.path = vfs, path
        self.cached = vfs._cached(path, self.xFileSize())
        self.stats = vfs.stats.setdefault(path, FileStats())

    def _refresh(self) -> _Cached:
        # A file deleted and created again under the same name starts a new history.
        cached = self.vfs._files.get(self.path)
        if cached is None:
            cached = self.vfs._cached(self.path, super().xFileSize())
        self.cached = cached
        return cached

    def _remember(self, first_block: int, last_block: int) -> None:
        """Keep the pre-image of blocks about to change, unless already dirty."""
        cached = self.cached
        for block in range(first_block, last_block + 1):
            if block in cached.pre:
                continue
            start = block * BLOCK
            readable = min(cached.size, cached.synced_size) - start  # unchanged since the sync
            cached.pre[block] = super().xRead(min(BLOCK, readable), start) if readable > 0 else b""

    def xWrite(self, data, offset):
        self.vfs._tick("write", self.path)
        cached = self._refresh()
        data = bytes(data)
        if data:
            self._remember(offset // BLOCK, (offset + len(data) - 1) // BLOCK)
        super().xWrite(data, offset)
        cached.size = max(cached.size, offset + len(data))
        self.stats.bytes_written += len(data)
        self.stats.writes += 1

    def xTruncate(self, newsize):
        self.vfs._tick("truncate", self.path)
        cached = self._refresh()
        if newsize < cached.size:
            self._remember(newsize // BLOCK, (cached.size - 1) // BLOCK)
        super().xTruncate(newsize)
        cached.size = newsize
        self.stats.truncates += 1

    def xSync(self, flags):
        self.vfs._tick("sync", self.path)
        cached = self._refresh()
        if self.vfs.real_sync:
            super().xSync(flags)
        cached.pre.clear()
        cached.synced_size = cached.size
        self.stats.syncs += 1
