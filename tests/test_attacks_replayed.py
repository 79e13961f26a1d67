"""Issue 41's weak keys and passwords (attack 9) and hostile exports (attack 10), replayed against
the real programs as a user starts them: each a process of its own, judged by its exit status,
what it says and what it leaves behind, never by a traceback.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stratoecho.wire.uplink_keys import new_key, write_key_file

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "corpus" / "telegram" / "result.json"


def run(*argv: str, stdin: str | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], input=stdin, capture_output=True, text=True, cwd=cwd,
                          timeout=300, env={**os.environ, "STRATOECHO_LOG_JSON": "0"})


def key_file(path: Path, key: bytes) -> Path:
    path.write_text(key.hex() + "\n")
    path.chmod(0o600)
    return path


def _docs_key() -> bytes:
    """The flight key docs/protocol.md prints for its vectors: `00 01 02 .. 1f`."""
    return bytes(range(32))


WEAK_KEYS = {
    "the docs' published key": _docs_key(),
    "a test's sha256 of a phrase": hashlib.sha256(b"test_command_limits").digest(),
    "squares mod 256": bytes((i * i) % 256 for i in range(32)),
    "Fibonacci mod 256": bytes(
        (lambda f: [f.append((f[-1] + f[-2]) % 256) or f[-3] for _ in range(32)])([1, 1])),
    "a 32-byte UTF-8 passphrase": "the balloon flies high über all".encode()[:32].ljust(32, b"!"),
}


@pytest.mark.parametrize("name", WEAK_KEYS)
def test_listen_refuses_a_weak_key_and_says_why(tmp_path, name):
    path = key_file(tmp_path / "uplink.key", WEAK_KEYS[name])
    got = run("-m", "groundstation", "listen", "--udp", "127.0.0.1:0", "--db", str(tmp_path / "g.db"),
              "--flight-key", str(path))
    assert got.returncode == 1, got.stderr
    assert str(path) in got.stderr and "keygen" in got.stderr and "Traceback" not in got.stderr
    assert not (tmp_path / "g.db").exists()  # refused before anything was made


def test_listen_takes_a_key_keygen_made(tmp_path):
    """The refusals above cannot pass by refusing everything."""
    path = tmp_path / "uplink.key"
    write_key_file(path, key=new_key())
    got = run("-m", "groundstation", "listen", "--replay", "/dev/null", "--db", str(tmp_path / "g.db"),
              "--flight-key", str(path), "--quiet")
    assert got.returncode == 0, got.stderr


@pytest.mark.parametrize("password", ["correcthorsebatterystaple", "ground station operator"])
def test_operator_password_refuses_the_published_examples(tmp_path, password):
    path = tmp_path / "operator.json"
    got = run("-m", "groundstation", "operator-password", "--file", str(path), "--password-stdin",
              stdin=password + "\n")
    assert got.returncode != 0 and "Traceback" not in got.stderr
    assert not path.exists()
    accepted = run("-m", "groundstation", "operator-password", "--file", str(path), "--password-stdin",
                   stdin="amber kestrel folds 41 maps under rain\n")
    assert accepted.returncode == 0, accepted.stderr


def test_prepare_skips_a_huge_number_by_name_and_keeps_the_rest(tmp_path):
    export = json.loads(SAMPLE.read_text(encoding="utf-8"))
    text = json.dumps(export, ensure_ascii=False)
    # One message's id becomes a 100,000-digit number, valid JSON that Python will not convert.
    first_id = '"id": ' + str(export["chats"]["list"][0]["messages"][0]["id"])  # the shipped sample's shape
    assert first_id in text
    path = tmp_path / "result.json"
    path.write_text(text.replace(first_id, '"id": ' + "9" * 100_000, 1), encoding="utf-8")
    got = run("-m", "host_training", "prepare", str(path), "--owner", "Ada Lindqvist", "--owner", "user5550101",
              "--out", str(tmp_path / "out"))
    assert "Traceback" not in got.stderr
    assert got.returncode == 0, got.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    (read,) = report["inputs"]
    assert read["skipped"] == {"corrupt": 1} and read["messages"] > 0  # one message out, the rest in
    (error,) = read["errors"]
    assert str(path) in error and "message #0 at line 1" in error and "4,300 digits" in error


def test_prepare_stops_on_a_cut_export_naming_the_byte(tmp_path):
    data = SAMPLE.read_bytes()
    cut = tmp_path / "result.json"
    cut.write_bytes(data[: len(data) * 6 // 10])
    got = run("-m", "host_training", "prepare", str(cut), "--owner", "Ada Lindqvist", "--out", str(tmp_path / "out"))
    assert got.returncode == 2 and f"ends at byte {len(data) * 6 // 10}" in got.stderr and "--accept-cut" in got.stderr
    assert not (tmp_path / "out").exists() and "Traceback" not in got.stderr
