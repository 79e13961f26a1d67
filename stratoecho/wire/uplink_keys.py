"""Key files: what `keygen` writes, which keys are refused, and how a good one is made.

A key file holds one line, written by `keygen` (``python -m groundstation keygen FILE``,
``python -m payload keygen FILE``), mode 600::

    stratoecho-flight-key-v1:<the 32 bytes as 64 hex digits>:<checksum, 8 hex digits>

or, for the downlink key `keygen --downlink-from FLIGHT_KEY FILE` derives (it checks what the
balloon sends and can sign nothing), the same after ``stratoecho-downlink-key-v1:``. The
checksum is the first 4 bytes of SHA-256 over the prefix, its colon and the 32 bytes. A newline
(``\\n`` or ``\\r\\n``) may end the line; nothing else is read: no spaces, no other length.

Why a form of its own rather than the bytes alone: no test of 32 bytes tells a random key from
cubes, tribonacci numbers, pi's digits, a Latin-1 passphrase or a seeded random.Random's
output; they all look random. What `keygen` writes comes from the system's CSPRNG
(`secrets.token_bytes`), and a file in its form is one `keygen` made (writing one by hand takes
computing the checksum on purpose). The prefix says which key it is, so a downlink key is
never taken for a flight key nor a flight key put where a downlink key belongs; the version
lets a later form be told apart; the checksum catches a damaged copy or a changed character
before the two ends disagree about the key.

The forms read before (the 32 raw bytes; 64 hex digits; the 44 characters of standard base64,
a newline after the text forms at most) are read only where allowed explicitly (`allow_raw`:
the payload's ``[uplink] allow_raw_key``, the ground's ``--raw-key-ok`` or ``[keys]
allow_raw_key``), for a flight whose key was made and shared before this form, and every such
read logs a warning: nothing shows that key was drawn at random.

`key_weakness` refuses, in either form, a key that plainly was not drawn at random (pure logic,
no files); it can only catch the crudest, which is why the form above is asked for:

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
import re
import secrets
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import structlog

from ..secret_files import secret_file_problem

log = structlog.get_logger(__name__)

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
MAKE_DOWNLINK = ("make one from the flight key with: python -m groundstation keygen --downlink-from FLIGHT_KEY FILE "
                 "(or python -m payload keygen --downlink-from FLIGHT_KEY FILE)")
# Where a key made before the keygen form may still be read, at its owner's risk.
RAW_KEY_OK = ("a key made and shared before keygen wrote this form can still fly where it is allowed explicitly: "
              "[uplink] allow_raw_key = true in the payload's configuration, --raw-key-ok or [keys] allow_raw_key = true "
              "at the ground (docs/protocol.md, 'Key files')")
RAW_KEY_RISK = ("a bare key carries no proof it was drawn at random (cubes, pi's digits, a passphrase or a seeded "
                "generator's output look as random as a real key)")
FORM_VERSION = 1
CHECKSUM_BYTES = 4  # a changed character passes unseen once in 4 billion


@dataclass(frozen=True)
class KeyKind:
    """Which key a file holds: its name in messages, the prefix of its line, and how to make one."""

    name: str
    prefix: str
    make: str

    @property
    def tag(self) -> str:
        """The start of the line keygen writes, up to its first colon."""
        return f"{self.prefix}-v{FORM_VERSION}"

    @property
    def form(self) -> str:
        return f"one line, {self.tag}:<64 hex digits>:<8 hex digits>"


FLIGHT = KeyKind("flight", "stratoecho-flight-key", MAKE_ONE)
DOWNLINK = KeyKind("downlink", "stratoecho-downlink-key", MAKE_DOWNLINK)
KINDS = (FLIGHT, DOWNLINK)
# Why each kind must not stand where the other is asked for, and what to give instead.
_WRONG_KIND = {
    (FLIGHT, DOWNLINK): ("holds a downlink key (keygen --downlink-from made it): it checks what the balloon sends and "
                         "can sign nothing, so it is no flight key. Give the flight key file keygen made (the payload "
                         "holds the same one), or, for a station that only receives, name this file as a downlink key "
                         "(--downlink-key, [keys] downlink_key)"),
    (DOWNLINK, FLIGHT): ("holds a flight key, which signs commands to the balloon: where only the downlink is "
                         "checked, give the downlink key derived from it, which can sign nothing (or name this file "
                         "where a flight key is taken: --flight-key, --follow-flight-key)"),
}
_LINE = re.compile(r"(stratoecho-[a-z]+-key)-v([0-9]+):([0-9a-fA-F]*):([0-9a-fA-F]*)")


class KeyFileError(ValueError):
    """A key file that must not be used: not in keygen's form, damaged, the other kind of key, a
    weak key, or open to others."""


class NotKeygenForm(ValueError):
    """Bytes that are no key file keygen writes at all (the old bare forms among them)."""


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


def checksum(key: bytes, kind: KeyKind = FLIGHT) -> str:
    """The 8 hex digits that end `kind`'s line for `key`: SHA-256 over the prefix, its colon and the key."""
    return hashlib.sha256(f"{kind.tag}:".encode("ascii") + key).digest()[:CHECKSUM_BYTES].hex()


def encode_key(key: bytes, kind: KeyKind = FLIGHT) -> str:
    """The line (and its newline) of a key file holding `key` as `kind` (module docstring)."""
    if len(key) != KEY_BYTES:
        raise ValueError(f"a {kind.name} key is {KEY_BYTES} bytes, got {len(key)}")
    return f"{kind.tag}:{key.hex()}:{checksum(key, kind)}\n"


def decode_key(data: bytes, kind: KeyKind = FLIGHT) -> bytes:
    """The key in a key file's bytes written as `encode_key` writes `kind`. NotKeygenForm when
    they are not that form at all, ValueError saying what is wrong when they are a keygen line
    that will not do here (damaged, another version, the other kind). Pure: the file is the
    caller's to name."""
    text = _strip_newline(data)
    if not text.lstrip().startswith(b"stratoecho-"):  # blanks before it: a keygen line mangled, said so below
        raise NotKeygenForm(f"is no key file keygen made: it should hold {kind.form}")
    try:
        m = _LINE.fullmatch(text.decode("ascii"))
    except UnicodeDecodeError:
        m = None
    if m is None:
        raise ValueError(f"is damaged or not a keygen key file: it should hold {kind.form}, and nothing else")
    found = next((k for k in KINDS if k.prefix == m[1]), None)
    if found is None:
        raise ValueError(f"starts {m[1]}-v{m[2]}, which is no key keygen writes: it should hold {kind.form}")
    if found is not kind:
        raise ValueError(_WRONG_KIND[kind, found])
    if int(m[2]) != FORM_VERSION:
        raise ValueError(f"is a version {int(m[2])} {kind.name} key file; this stratoecho reads version "
                         f"{FORM_VERSION} ({kind.form}): update stratoecho on this side")
    if len(m[3]) != 2 * KEY_BYTES or len(m[4]) != 2 * CHECKSUM_BYTES:
        raise ValueError(f"is damaged: it holds {len(m[3])} hex digits of key and {len(m[4])} of checksum, not "
                         f"{2 * KEY_BYTES} and {2 * CHECKSUM_BYTES} ({kind.form}): copy it again from where keygen "
                         "made it")
    key = bytes.fromhex(m[3])
    if m[4].lower() != checksum(key, kind):
        raise ValueError("is damaged: its checksum does not match its key (a character changed or lost in copying); "
                         "copy it again from where keygen made it")
    return key


def parse_raw_key(data: bytes) -> bytes:
    """The key in the bare forms read before keygen's line (raw, hex or base64: module docstring);
    ValueError if none."""
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
        raise ValueError(f"holds a {len(text) // 2}-byte key in hex; a key is exactly {KEY_BYTES} bytes")
    if len(data) == KEY_BYTES:
        return data  # raw; key_weakness refuses text that happens to be 32 bytes long
    raise ValueError(f"holds {len(data)} bytes, which are not a key: a bare key is {KEY_BYTES} raw bytes, "
                     f"{2 * KEY_BYTES} hex digits or 44 base64 characters (a newline after the text forms)")


def load_key(path: str | Path, kind: KeyKind = FLIGHT, allow_raw: bool = False) -> bytes:
    """Read and check a key file holding a `kind` key; KeyFileError naming the file, the fault and the fix.

    Refused: a file another user owns (they decide what the key is), one that group or others
    may use at all (mode must be 600 or 400: the key would be as good as published), one that
    is not keygen's line for `kind` (a damaged one, the other kind, a bare key unless
    `allow_raw`), and a weak key (`key_weakness`). A bare key taken because `allow_raw` is
    logged as a warning, each time it is read.
    """
    path = Path(path)
    what = f"{kind.name} key file"
    try:
        st = path.stat()
        data = path.read_bytes()
    except OSError as e:
        raise KeyFileError(f"cannot read {what} {path}: {e.strerror}; {kind.make}") from e
    if why := secret_file_problem(path, st, what):
        raise KeyFileError(why)
    bare = False
    try:
        key = decode_key(data, kind)
    except NotKeygenForm as e:
        key, bare = _bare_key(path, data, kind, allow_raw, str(e)), True
    except ValueError as e:
        raise KeyFileError(f"{what} {path} {e}; {kind.make}") from None
    if why := key_weakness(key):
        raise KeyFileError(f"{kind.name} key in {path} {why}; {kind.make}")
    if bare:
        log.warning("bare_key_taken", file=str(path), kind=kind.name, risk=RAW_KEY_RISK,
                    fix=kind.make)
    return key


def _bare_key(path: Path, data: bytes, kind: KeyKind, allow_raw: bool, not_keygen: str) -> bytes:
    """A key in a bare form where `allow_raw` lets one be read; KeyFileError saying what the file is otherwise."""
    what = f"{kind.name} key file"
    try:
        key = parse_raw_key(data)
    except ValueError as e:
        raise KeyFileError(f"{what} {path} {not_keygen}; it {e}; {kind.make}") from None
    if allow_raw:
        return key
    if why := key_weakness(key):  # allowing bare keys would not help this one: say why first
        raise KeyFileError(f"{kind.name} key in {path} {why} (and it is a bare key, not the line keygen writes); "
                           f"{kind.make}")
    raise KeyFileError(f"{what} {path} holds a bare key (raw bytes, hex or base64), not the line keygen writes "
                       f"({kind.form}): {RAW_KEY_RISK}. {kind.make[0].upper()}{kind.make[1:]}. Or: {RAW_KEY_OK}")


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


def write_key_file(path: str | Path, force: bool = False, key: bytes | None = None, kind: KeyKind = FLIGHT) -> bytes:
    """Write a new flight key (or `key`, as `kind`: a downlink key derived from a flight key) to
    `path` as keygen's line (`encode_key`), mode 600; return the key.

    Written whole to a temporary file in the same folder first and then put in place, so a
    reader never sees half a key (on a file system without hard links it is written in place,
    still never over another file). An existing `path` is left alone (FileExistsError) unless
    `force`: a key replaced by mistake locks the ground out of a balloon already flying.
    """
    path = Path(path)
    key = new_key() if key is None else key
    text = encode_key(key, kind)
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
