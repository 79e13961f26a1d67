"""Key files (stratoecho/wire/uplink_keys.py): the bare forms read where they are allowed, the
weak keys both sides refuse in any form, file permissions, and `keygen` on both command lines.
keygen's own form and the refusal of everything else: tests/test_key_policy.py."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from fractions import Fraction
from math import comb, factorial
from pathlib import Path

import pytest

from groundstation.__main__ import main as ground_main
from groundstation.link.uplink import generate_key_file
from payload.__main__ import main as payload_main
from payload.store import Store
from payload.uplink.gate import CommandGate
from stratoecho.wire import uplink
from stratoecho.wire.uplink import KeyFileError, load_key
from stratoecho.wire.uplink_keys import (
    MAX_SAME_BYTE,
    MIN_DISTINCT,
    PUBLISHED_KEYS,
    encode_key,
    key_weakness,
    new_key,
    parse_raw_key,
)

KEY = new_key()  # passes every rule; made here, not on disk (a hash of a string in tests/ is published)
PID = "STRATO1"


def _fibonacci(n: int) -> list[int]:
    out = [1, 1]
    while len(out) < n:
        out.append((out[-1] + out[-2]) % 256)
    return out


def _key_file(path: Path, content: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(content)
    path.chmod(mode)
    return path


# --------------------------------------------------------------------------- the bare forms of before
# Read only where allowed explicitly (allow_raw: [uplink] allow_raw_key, --raw-key-ok).


@pytest.mark.parametrize("content", [
    KEY.hex().encode(),
    KEY.hex().encode() + b"\n",
    KEY.hex().upper().encode() + b"\r\n",
    base64.b64encode(KEY),
    base64.b64encode(KEY) + b"\n",
    KEY,  # raw
], ids=["hex", "hex-newline", "HEX-crlf", "base64", "base64-newline", "raw"])  # the key is new each run
def test_a_bare_key_file_holds_raw_hex_or_base64(tmp_path, content):
    path = _key_file(tmp_path / "uplink.key", content)
    assert load_key(path, allow_raw=True) == KEY
    with pytest.raises(KeyFileError, match="holds a bare key .*python -m groundstation keygen FILE"):
        load_key(path)


NOT_KEY_FILES = [
    (b"", "holds 0 bytes, which are not a key"),
    (b"  " + KEY.hex().encode(), "not a key"),  # leading blanks: not the documented form
    (KEY.hex().encode() + b"\n\n", "not a key"),  # one newline, not two
    (b"0x" + KEY.hex().encode(), "not a key"),
    (KEY.hex()[:32].encode() + b" " + KEY.hex()[32:].encode(), "not a key"),
    (KEY.hex()[:63].encode(), "not a key"),
    (base64.b64encode(KEY).rstrip(b"="), "not a key"),
    (base64.urlsafe_b64encode(b"\xfb\xff" * 16), "not a key"),  # urlsafe: -_ are not standard base64
    (KEY[:31], "holds 31 bytes"),
    (KEY + b"\n", "holds 33 bytes"),
    (bytes(range(15)).hex().encode(), "15-byte key in hex; a key is exactly 32"),
    ((KEY * 2).hex().encode(), "64-byte key in hex"),
    (KEY[:16].hex().encode(), "16-byte key in hex"),  # 32 bytes long, but hex: not a raw key
    ((bytes(15) + b"\x01").hex().encode(), "16-byte key in hex"),
    (b"passwordpassword".hex().encode(), "16-byte key in hex"),
]


@pytest.mark.parametrize("content,match", NOT_KEY_FILES,
                         ids=[f"{i}-{match}" for i, (_, match) in enumerate(NOT_KEY_FILES)])  # not the key's bytes
def test_anything_else_is_not_a_key_file(tmp_path, content, match):
    path = _key_file(tmp_path / "uplink.key", content)
    for allow_raw in (True, False):
        with pytest.raises(KeyFileError, match=match) as e:
            load_key(path, allow_raw=allow_raw)
        assert str(path) in str(e.value) and "python -m groundstation keygen" in str(e.value)


def test_parse_raw_key_is_pure():
    assert (parse_raw_key(KEY.hex().encode() + b"\n") == parse_raw_key(base64.b64encode(KEY)) == parse_raw_key(KEY)
            == KEY)


# --------------------------------------------------------------------------- weak keys
# Every one of these was accepted by both `groundstation listen` and `payload run` before
# uplink_keys.py (a repeat of up to 4 bytes was all that was refused).

LINE31 = b"the uplink key is my cat's name"  # 31 characters
assert len(LINE31) == 31
WEAK = {
    "5-byte pattern": ((b"\x13\x37\xc0\xff\xee" * 7)[:32], "is 1337c0ffee repeated"),
    "8-byte pattern": (bytes.fromhex("0123456789abcdef") * 4, "is 0123456789abcdef repeated"),
    "16-byte pattern": (KEY[:16] * 2, f"is {KEY[:16].hex()} repeated"),
    "docs test vector": (bytes(range(32)), "is published: the example key of docs/protocol.md"),
    "a test key": (bytes(range(1, 33)), "is published: a test key"),
    "15 zeros and a 1": (bytes(15) + b"\x01", "16-byte key in hex; a key is exactly 32"),
    "31 zeros and a 1": (bytes(31) + b"\x01", "only 2 different byte values"),
    "a 1 and 31 zeros": (b"\x01" + bytes(31), "only 2 different byte values"),
    # 16 different non-zero bytes: KEY[:16] repeats one now and then, and then fails the count of values first
    "zero-padded 16": (bytes(sorted(set(KEY) - {0})[:16]) + bytes(16), "holds the byte 00 16 times"),
    "passwordpassword": (b"passwordpassword", "16-byte key in hex"),
    "passwordpassword twice": (b"passwordpassword" * 2, "is 70617373776f7264 repeated"),
    "a passphrase": (b"correct horse battery staple!!?!", "is text"),
    "31-character line": (LINE31 + b"\n", "is text"),
    "counting by 3": (bytes(range(0, 96, 3)), "counts in steps of 03"),
    "small alphabet": (bytes(b % 8 for b in KEY), "different byte values"),
    # issue 41: sequences, published keys and a passphrase in another script that passed before
    "squares": (bytes(i * i % 256 for i in range(32)), r"follows x\[i\] = 2·x\[i-1\] \+ 255·x\[i-2\] \+ 2"),
    "powers of 3": (bytes(pow(3, i, 256) for i in range(32)), "follows x"),
    "Fibonacci": (bytes(_fibonacci(32)), r"follows x\[i\] = 1·x\[i-1\] \+ 1·x\[i-2\] \+ 0"),
    "a quadratic": (bytes((7 * i * i + 3 * i + 5) % 256 for i in range(32)), "follows x"),
    "the docs' downlink key": (bytes.fromhex("06f37c8923a9b91b79948d0d8fe748147982f1c7d456fea43f781b928d6cf4ba"),
                               "is published: the downlink key of the example key"),
    "a test's hashed string": (hashlib.sha256(b"test_command_limits").digest(), "is published: a test key"),
    "a UTF-8 passphrase": ("grüße aus münchen, mücke schläft".encode()[:32], "is text"),
}


@pytest.mark.parametrize("name", list(WEAK))
def test_weak_keys_are_refused_in_hex(tmp_path, name):
    """Refused for what they are, whether bare keys are allowed or not (allowing them would not help)."""
    key, match = WEAK[name]
    assert key_weakness(key) is not None
    path = _key_file(tmp_path / "uplink.key", key.hex().encode() + b"\n")
    for allow_raw in (False, True):
        with pytest.raises(KeyFileError, match=match) as e:
            load_key(path, allow_raw=allow_raw)
        message = str(e.value)
        assert str(path) in message and "python -m groundstation keygen FILE" in message and "payload keygen" in message


@pytest.mark.parametrize("name", [n for n, (k, _) in WEAK.items() if len(k) == 32])
def test_weak_keys_are_refused_raw_and_in_keygens_form(tmp_path, name):
    """keygen's form says who made the file, not that its key is good: a weak key in it (written by
    hand, checksum and all) is refused as well."""
    key, match = WEAK[name]
    with pytest.raises(KeyFileError, match=match):
        load_key(_key_file(tmp_path / "uplink.key", key), allow_raw=True)
    with pytest.raises(KeyFileError, match=match):
        load_key(_key_file(tmp_path / "uplink.key", encode_key(key).encode()))


def test_a_text_line_is_not_a_raw_key(tmp_path):
    """31 characters and a newline are 32 bytes: once read as a raw key, now refused as text."""
    path = _key_file(tmp_path / "uplink.key", LINE31 + b"\n")
    with pytest.raises(KeyFileError, match="is text .*a passphrase, not 32 random bytes"):
        load_key(path, allow_raw=True)


def test_both_sides_refuse_a_weak_key(tmp_path, capsys):
    path = _key_file(tmp_path / "uplink.key", encode_key(bytes(range(32))).encode())
    with pytest.raises(KeyFileError, match="published"):
        CommandGate.from_key_file(Store(tmp_path / "q.db"), path, PID)  # what payload run builds
    argv = ["listen", "--udp", "127.0.0.1:0", "--db", str(tmp_path / "g.db"), "--uplink-key", str(path)]
    assert ground_main(argv) == 1
    err = capsys.readouterr().err
    assert f"flight key in {path} is published" in err and "keygen" in err


def test_the_documented_example_key_is_on_the_published_list():
    # The module docstring's example frame is signed with it: it is the key anyone can read.
    example = bytes.fromhex("ed11000000017f66beef379fef62b575358b")
    assert uplink.verify(bytes(range(32)), example, PID, 0).command == uplink.Ping(0xBEEF)
    assert bytes(range(32)) in PUBLISHED_KEYS


def _false_refusal_bound() -> float:
    """An upper bound on the chance that 32 uniformly random bytes fail `key_weakness`."""
    n, q = 32, 256
    stirling = [[0] * (n + 1) for _ in range(n + 1)]
    stirling[0][0] = 1
    for i in range(1, n + 1):
        for k in range(1, i + 1):
            stirling[i][k] = k * stirling[i - 1][k] + stirling[i - 1][k - 1]
    few_distinct = sum(Fraction(comb(q, k) * stirling[n][k] * factorial(k), q ** n) for k in range(1, MIN_DISTINCT))
    same_byte = q * comb(n, MAX_SAME_BYTE + 1) * Fraction(1, q) ** (MAX_SAME_BYTE + 1)  # union bound
    # Text: 32 bytes of valid UTF-8 without an ASCII control character (but tab, CR, LF), counted
    # by the lengths of their characters: 98 one-byte, 1,920 two-byte, 61,440 three-byte (no
    # overlong forms or surrogates) and 1,048,576 four-byte ones. An upper bound: it does not ask
    # that the other characters be printable.
    count = [1]
    for i in range(1, n + 1):
        count.append(sum(w * count[i - k] for k, w in ((1, 98), (2, 1920), (3, 61_440), (4, 1_048_576)) if i >= k))
    text = Fraction(count[n], q ** n)
    recurrences = Fraction(q * q, q ** (n - 3))  # (a, b); c from the first three bytes; 29 more must hold
    periods = sum(Fraction(1, q) ** (n - p) for p in range(1, 17)) * 2  # the key, and its steps
    published = Fraction(len(PUBLISHED_KEYS), q ** n)
    return float(few_distinct + same_byte + text + periods + published + recurrences)


def test_random_keys_are_essentially_never_refused():
    bound = _false_refusal_bound()
    assert bound < 3e-11, bound  # the figure the module docstring gives
    assert all(key_weakness(secrets.token_bytes(32)) is None for _ in range(20_000))


# --------------------------------------------------------------------------- the file itself


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o606, 0o660, 0o610])
def test_load_key_refuses_files_open_to_others(tmp_path, mode):
    path = _key_file(tmp_path / "uplink.key", encode_key(KEY).encode(), mode)
    with pytest.raises(KeyFileError) as e:
        load_key(path)
    assert str(path) in str(e.value) and f"chmod 600 {path}" in str(e.value)
    assert f"mode {mode:04o}, owner " in str(e.value) and f"uid {os.geteuid()}" in str(e.value)
    path.chmod(0o600)
    assert load_key(path) == KEY
    path.chmod(0o400)
    assert load_key(path) == KEY


@pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0, reason="giving a file away needs root")
def test_load_key_refuses_a_file_another_user_owns(tmp_path):
    """Whoever owns the key file decides what it says: a key another user can rewrite is theirs."""
    path = _key_file(tmp_path / "uplink.key", encode_key(KEY).encode())
    os.chown(path, 65534, -1)  # nobody
    with pytest.raises(KeyFileError, match=r"belongs to .*uid 65534\), not to this user \(.*uid 0\)") as e:
        load_key(path)
    assert str(path) in str(e.value)
    os.chown(path, 0, -1)
    assert load_key(path) == KEY


def test_load_key_missing_file(tmp_path):
    with pytest.raises(KeyFileError, match="cannot read .* keygen"):
        load_key(tmp_path / "nope")


# --------------------------------------------------------------------------- keygen


def test_generate_key_file(tmp_path):
    path = tmp_path / "uplink.key"
    key = generate_key_file(path)
    assert len(key) == 32 and load_key(path) == key
    assert path.read_text() == encode_key(key) and path.read_text().startswith("stratoecho-flight-key-v1:")
    if os.name == "posix":
        assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        generate_key_file(path)
    assert load_key(path) == key
    assert generate_key_file(path, force=True) != key
    assert [p.name for p in tmp_path.iterdir()] == ["uplink.key"]  # no temporary file left


def test_generate_key_file_without_hard_links(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)  # a FAT card
    path = tmp_path / "uplink.key"
    key = generate_key_file(path)
    assert load_key(path) == key and [p.name for p in tmp_path.iterdir()] == ["uplink.key"]
    with pytest.raises(FileExistsError):
        generate_key_file(path)
    assert load_key(path) == key


@pytest.mark.parametrize("main", [ground_main, payload_main], ids=["groundstation", "payload"])
def test_keygen_command(tmp_path, capsys, main):
    path = tmp_path / "uplink.key"
    assert main(["keygen", str(path)]) == 0
    key = load_key(path)
    if os.name == "posix":
        assert path.stat().st_mode & 0o777 == 0o600
    assert "wrote a new flight key" in capsys.readouterr().err
    assert main(["keygen", str(path)]) == 1
    assert f"{path} exists" in capsys.readouterr().err and load_key(path) == key
    assert main(["keygen", "--force", str(path)]) == 0
    assert load_key(path) != key


@pytest.mark.parametrize("main,prog", [(ground_main, "groundstation"), (payload_main, "payload")])
def test_keygen_help_says_what_to_do(capsys, main, prog):
    with pytest.raises(SystemExit) as e:
        main(["keygen", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert f"python -m {prog} keygen uplink.key" in out and "mode 600" in out and "--force" in out
    assert "install -o stratoecho" in out


def test_every_key_that_stands_in_this_repository_is_refused():
    """A key written anywhere a reader can find it — 64 hex digits in the docs, the README, the
    configurations, the samples or the tests, or the SHA-256 of a string a test hashes into a key
    — is published: `key_weakness` refuses each (a new one in the docs must join PUBLISHED_KEYS)."""
    import re

    root = Path(__file__).resolve().parent.parent
    texts = [p for folder in ("docs", "config", "samples", "tests") for p in (root / folder).rglob("*")
             if p.is_file() and p.suffix in (".md", ".toml", ".py", ".txt", ".json")] + [root / "README.md"]
    found: dict[bytes, str] = {}
    for path in texts:
        text = path.read_text(encoding="utf-8", errors="replace")
        for m in re.finditer(r"(?<![0-9a-fA-F])[0-9a-fA-F]{64}(?![0-9a-fA-F])", text):
            found.setdefault(bytes.fromhex(m[0]), f"{path.relative_to(root)}: {m[0][:12]}…")
        for m in re.finditer(r'sha256\(b"([^"]*)"\)\.digest\(\)', text):
            found.setdefault(hashlib.sha256(m[1].encode()).digest(), f"{path.relative_to(root)}: sha256({m[1]!r})")
    # 64 hex digits are also checksums (sha256 pins of wheels, files): only those that are keys
    # here are held to it — the ones named as keys, and every hashed string.
    keys = {k: where for k, where in found.items() if "sha256(" in where or _named_as_key(where, texts, root)}
    assert keys, "nothing found: the scan is broken"
    unrefused = [where for k, where in keys.items() if key_weakness(k) is None]
    assert not unrefused, f"published keys that key_weakness lets through: {unrefused}"


def _named_as_key(where: str, texts: list[Path], root: Path) -> bool:
    """Whether the 64 hex digits at `where` stand next to the word key (not a checksum's pin)."""
    name, prefix = where.split(": ", 1)
    text = (root / name).read_text(encoding="utf-8", errors="replace")
    at = text.find(prefix.rstrip("…"))
    return "key" in text[max(0, at - 80):at].lower() and "sha256" not in text[max(0, at - 40):at].lower()
