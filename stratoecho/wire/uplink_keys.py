"""Uplink keys: what a key file may hold, which keys are refused, and how a good one is made.

A key file holds exactly one 32-byte key in one of three forms:

- raw: the 32 bytes themselves, nothing else (the file is 32 bytes long);
- hex: 64 hex digits (either case), optionally followed by one newline (``\\n`` or ``\\r\\n``);
- base64: the 44 characters of standard base64 (``+/``, ``=`` padding) of the 32 bytes,
  optionally followed by one newline.

`keygen` (``python -m groundstation keygen FILE``, ``python -m payload keygen FILE``) writes
the hex form. Nothing else is read as a key: no spaces, no ``0x``, no other length. A key of
another length is refused rather than hashed or padded, so the two ends can never disagree
about what the key is.

`key_weakness` refuses a key that was not drawn at random (pure logic, no files):

1. a published key: every key that stands in this repository's text — the example key of
   ``stratoecho/wire/uplink.py`` and docs/protocol.md (``00 01 .. 1f``), the downlink key
   docs/protocol.md derives from it, the constant keys the tests sign with and the SHA-256 of
   the strings they hash (``tests/test_uplink_keys.py`` finds them all and checks each is here);
2. a repeated pattern: any period of at most 16 bytes (the pattern appears at least twice).
   A longer "period" is no pattern: period 31 only says the first and last bytes are equal,
   which one random key in 256 does;
3. a counting key: the differences between neighbouring bytes repeat with a period of at
   most 15 (``00 01 02 ..``, ``64 65 66 ..``, ``00 02 04 ..``, a pattern added to a ramp);
4. a short recurrence: each byte from the one or two before it, x[i] = a·x[i-1] + b·x[i-2] + c
   (mod 256) for any a, b, c — squares, powers, Fibonacci and Lucas numbers, a geometric series;
5. text: every byte printable ASCII, tab, CR or LF, or the whole key valid UTF-8 of printable
   characters (a passphrase in any language, not a key);
6. too few different values: fewer than 16 distinct bytes (31 zeros and a 1, a key from a
   small alphabet), or one byte value 9 times or more (a short key padded with zeros).

How often 32 bytes from `secrets.token_bytes` are refused anyway, each bound from above:
(2) sum over p <= 16 of 256^-(32-p) ~ 3e-39; (3) ~ 256^-16 ~ 3e-39; (4) 256^2 recurrences,
each holding at 29 more places by chance with 256^-29: ~ 256^-27 ~ 1e-65; (5) at most ~1.9e-11,
the share of 32-byte strings that are valid UTF-8 at all with no ASCII control character (counted
by the lengths of their characters; printable ASCII alone is (98/256)^32 ~ 4.6e-14);
(6) P(at most 15 distinct) ~ 3.2e-17 (exact, from Stirling numbers) and
P(a value 9+ times) <= 256 * C(32, 9) / 256^9 ~ 1.5e-12. In all below 3e-11: never, in
practice (`tests/test_uplink_keys.py` recomputes it). `keygen` checks its own keys anyway.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from collections import Counter
from pathlib import Path

from ..secret_files import secret_file_problem

KEY_BYTES = 32
MAX_PERIOD = KEY_BYTES // 2  # a pattern that repeats at least twice
MIN_DISTINCT = 16
MAX_SAME_BYTE = 8  # 9 of one value: a zero-padded short key
_TEXT = frozenset(range(0x20, 0x7F)) | {0x09, 0x0A, 0x0D}
# Keys anyone can read in this repository. Arithmetic progressions are refused by rule 3 as
# well; they are listed so a published key is named as such.
PUBLISHED_KEYS = {
    bytes(range(32)): "the example key of docs/protocol.md and stratoecho/wire/uplink.py (00 01 .. 1f)",
    bytes(range(1, 33)): "a test key in tests/ (01 02 .. 20)",
    bytes(range(100, 132)): "a test key in tests/ (64 65 .. 83)",
    bytes.fromhex("06f37c8923a9b91b79948d0d8fe748147982f1c7d456fea43f781b928d6cf4ba"):
        "the downlink key of the example key in docs/protocol.md",
    # The strings the tests hash into keys: SHA-256 of a string anyone can read is no secret.
    **{hashlib.sha256(seed).digest(): f"a test key in tests/ (SHA-256 of {seed.decode()!r})"
       for seed in (b"test_uplink_keys", b"test_command_limits", b"test_repair_payload")},
}
MAKE_ONE = ("make a new key with: python -m groundstation keygen FILE (or python -m payload keygen FILE "
            "on the Pi), and give the payload the same file")


class KeyFileError(ValueError):
    """A key file that must not be used: not a key in a known form, a weak key, or open to others."""


def _period(data: bytes, longest: int) -> int | None:
    """The shortest p <= `longest` with data[i] == data[i + p] throughout, or None."""
    return next((p for p in range(1, longest + 1) if data[p:] == data[:-p]), None)


def key_weakness(key: bytes) -> str | None:
    """Why `key` must not be an uplink key (see the module docstring), or None if it may be."""
    if len(key) != KEY_BYTES:
        return f"is {len(key)} bytes; an uplink key is exactly {KEY_BYTES}"
    if key in PUBLISHED_KEYS:
        return f"is published: {PUBLISHED_KEYS[key]}; anyone can sign with it"
    if p := _period(key, MAX_PERIOD):
        return f"is {key[:p].hex()} repeated (a {p}-byte pattern): anyone could guess it"
    steps = bytes((b - a) % 256 for a, b in zip(key, key[1:]))
    if p := _period(steps, MAX_PERIOD - 1):
        return f"counts in steps of {steps[:p].hex()} repeated: anyone could guess it"
    if all(b in _TEXT for b in key) or _printable_utf8(key):
        return "is text (printable characters): a passphrase, not 32 random bytes"
    counts = Counter(key)
    if len(counts) < MIN_DISTINCT:
        return (f"has only {len(counts)} different byte values (32 random bytes have at least "
                f"{MIN_DISTINCT}): far less entropy than a random key")
    value, n = counts.most_common(1)[0]
    if n > MAX_SAME_BYTE:
        return (f"holds the byte {value:02x} {n} times (32 random bytes hold none more than "
                f"{MAX_SAME_BYTE}): a short key padded, not a random one")
    if rule := _recurrence(key):
        return f"follows {rule} (mod 256) from its first bytes: anyone could guess it"
    return None


def _recurrence(key: bytes) -> str | None:
    """"x[i] = a·x[i-1] + b·x[i-2] + c" when every byte of `key` after its second follows from the
    two before it so (squares, powers, Fibonacci), else None. For each a, the b that fit the
    first differences (d2 = a·d1 + b·d0) are solved for and c follows from the first three bytes;
    a few hundred short tries for a random key."""
    x0, x1, x2, rest = key[0], key[1], key[2], key[3:]
    d0, d1, d2 = (x1 - x0) % 256, (x2 - x1) % 256, (key[3] - x2) % 256
    for a in range(256):
        for b in _solve(d0, (d2 - a * d1) % 256):
            c = (x2 - a * x1 - b * x0) % 256
            p2, p1 = x1, x2
            for v in rest:
                if (a * p1 + b * p2 + c) % 256 != v:
                    break
                p2, p1 = p1, v
            else:
                return f"x[i] = {a}·x[i-1] + {b}·x[i-2] + {c}"
    return None


def _solve(d: int, r: int) -> range | tuple[int, ...]:
    """Every b in 0..255 with b·d ≡ r (mod 256)."""
    if d == 0:
        return range(256) if r == 0 else ()
    k = (d & -d).bit_length() - 1  # d = 2^k·u, u odd
    if r % (1 << k):
        return ()
    m = 256 >> k
    b = (r >> k) * pow(d >> k, -1, m) % m
    return tuple(range(b, 256, m))


def _printable_utf8(key: bytes) -> bool:
    """Valid UTF-8 of printable characters (and tab, CR, LF): text in any script, not a key."""
    try:
        text = key.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\t\r\n" for ch in text)


def _strip_newline(data: bytes) -> bytes:
    for end in (b"\r\n", b"\n"):
        if data.endswith(end):
            return data[:-len(end)]
    return data


def parse_key(data: bytes) -> bytes:
    """The key a key file's bytes hold (raw, hex or base64: module docstring); ValueError if none."""
    text = _strip_newline(data)
    if len(text) == 2 * KEY_BYTES and all(c in b"0123456789abcdefABCDEF" for c in text):
        return bytes.fromhex(text.decode("ascii"))
    if len(text) == 44 and text.endswith(b"="):
        try:
            key = base64.b64decode(text, validate=True)
        except binascii.Error:
            key = b""
        if len(key) == KEY_BYTES:
            return key
    # Before the raw form: 32 hex digits are a 16-byte key in hex, not 32 raw bytes (a random
    # raw key is all hex digits with odds of (22/256)^32, ~1e-34).
    if text and len(text) % 2 == 0 and all(c in b"0123456789abcdefABCDEF" for c in text):
        raise ValueError(f"holds a {len(text) // 2}-byte key in hex; an uplink key is exactly {KEY_BYTES} bytes")
    if len(data) == KEY_BYTES:
        return data  # raw; key_weakness refuses text that happens to be 32 bytes long
    raise ValueError(f"holds {len(data)} bytes, which are not a key: a key file is {KEY_BYTES} raw bytes, "
                     f"{2 * KEY_BYTES} hex digits or 44 base64 characters (a newline after the text forms)")


def load_key(path: str | Path) -> bytes:
    """Read and check an uplink key file; KeyFileError naming the file, the fault and the fix.

    Refused: a file another user owns (they decide what the key is), one that group or others
    may use at all (mode must be 600 or 400: the key would be as good as published), one that
    holds no key in a known form, and a weak key (`key_weakness`).
    """
    path = Path(path)
    try:
        st = path.stat()
        data = path.read_bytes()
    except OSError as e:
        raise KeyFileError(f"cannot read uplink key file {path}: {e.strerror}; {MAKE_ONE}") from e
    if why := secret_file_problem(path, st, "uplink key file"):
        raise KeyFileError(why)
    try:
        key = parse_key(data)
    except ValueError as e:
        raise KeyFileError(f"uplink key file {path} {e}; {MAKE_ONE}") from None
    if why := key_weakness(key):
        raise KeyFileError(f"uplink key in {path} {why}; {MAKE_ONE}")
    return key


def new_key() -> bytes:
    """32 bytes from the system's CSPRNG, drawn again in the ~3e-11 case `key_weakness` objects."""
    while key_weakness(key := secrets.token_bytes(KEY_BYTES)):
        pass
    return key


def _write_new(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def write_key_file(path: str | Path, force: bool = False, key: bytes | None = None) -> bytes:
    """Write a new key (or `key`: a downlink key derived from a flight key) to `path` as hex and a
    newline, mode 600; return the key.

    Written whole to a temporary file in the same folder first and then put in place, so a
    reader never sees half a key (on a file system without hard links it is written in place,
    still never over another file). An existing `path` is left alone (FileExistsError) unless
    `force`: a key replaced by mistake locks the ground out of a balloon already flying.
    """
    path = Path(path)
    key = new_key() if key is None else key
    text = key.hex() + "\n"
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        _write_new(tmp, text)  # inside the try: a card that fills up keeps no half-written key
        if force:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if path exists: the O_EXCL of a rename
            except FileExistsError:
                raise
            except OSError:
                _write_new(path, text)  # no hard links here (FAT): O_EXCL on the file itself
    finally:
        tmp.unlink(missing_ok=True)
    try:  # the new name survives a power cut too
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass  # not every file system syncs folders; the key itself is on disk
    return key
