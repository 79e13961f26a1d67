"""Keys and passwords that cannot be weak (issue 50, item 6).

A key file is taken only in the form `keygen` writes: one line, a versioned prefix that says
which key it is (flight or downlink), the 32 bytes in hex and a checksum
(stratoecho/wire/uplink_keys.py). A bare key — cubes, tribonacci numbers, pi's digits, a
Latin-1 passphrase, a seeded generator's output, or an honest key made before this form — is
refused, naming the file and the command that makes a good one, unless bare keys are allowed
explicitly; then it is taken with a warning. The operator's password must take zxcvbn 10^14
guesses (groundstation/web/access.py).
"""

from __future__ import annotations

import base64
import random
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from groundstation.__main__ import main as ground_main
from groundstation.web import access
from payload.__main__ import main as payload_main
from payload.assembly import build_onboard
from payload.clock import Clock
from payload.config import PayloadConfig, UplinkSection
from payload.store import Store
from payload.uplink.gate import CommandGate
from sim.world.flight import SimSensors
from stratoecho.wire.downlink import derive_downlink_key, load_auth
from stratoecho.wire.uplink_keys import (
    DOWNLINK,
    FLIGHT,
    KeyFileError,
    checksum,
    decode_key,
    encode_key,
    load_key,
    new_key,
    write_key_file,
)
from tests.fakes import RecordingRadio

MAKE = "python -m groundstation keygen FILE"


def _file(path: Path, content: bytes | str) -> Path:
    if isinstance(content, str):
        content = content.encode("ascii")
    path.write_bytes(content)
    path.chmod(0o600)
    return path


def _arctan_inv(x: int, scale: int) -> int:
    """arctan(1/x) times `scale`, in integers (the series, to the last unit of `scale`)."""
    total, term, k, sign = 0, scale // x, 1, 1
    while term:
        total += sign * (term // k)
        term //= x * x
        k, sign = k + 2, -sign
    return total


def _pi_times(scale: int) -> int:
    return 16 * _arctan_inv(5, scale) - 4 * _arctan_inv(239, scale)  # Machin's formula


def _pi_fraction(n: int) -> bytes:
    """The first `n` bytes of pi's fractional part in binary (243f6a88...)."""
    scale = 1 << (8 * (n + 4))  # 4 bytes more, for the series' rounding
    return ((_pi_times(scale) - 3 * scale) >> 32).to_bytes(n, "big")


def _pi_decimal_digits(n: int) -> bytes:
    """Pi's first `n` decimal digits, one a byte (3, 1, 4, 1, 5, ...)."""
    return bytes(int(c) for c in str(_pi_times(10 ** (n + 10)))[:n])


def _tribonacci(n: int) -> bytes:
    out = [0, 0, 1]
    while len(out) < n:
        out.append(sum(out[-3:]) % 256)
    return bytes(out)


LATIN1 = "Grüße aus Köln, où est ma clé ?!".encode("latin-1")
assert len(LATIN1) == 32
OLD_KEY = new_key()  # an honest key, but written bare, as keygen wrote keys before

# Each as its author would have written it to a key file before: bytes, hex or text.
NOT_FROM_KEYGEN = {
    "cubes": bytes(i ** 3 % 256 for i in range(32)),
    "tribonacci": _tribonacci(32),
    "pi's decimal digits": _pi_decimal_digits(32),
    "pi's decimal digits as text": b"31415926535897932384626433832795",
    "pi's binary digits": _pi_fraction(32),
    "pi's binary digits in hex": _pi_fraction(32).hex().encode() + b"\n",
    "a Latin-1 passphrase": LATIN1,
    "seeded random.Random": random.Random(20240501).randbytes(32),
    "seeded random.Random in hex": random.Random(7).randbytes(32).hex().encode() + b"\n",
    "an old hex key": OLD_KEY.hex().encode() + b"\n",
    "an old base64 key": base64.b64encode(OLD_KEY) + b"\n",
    "an old raw key": OLD_KEY,
    "a passphrase line": b"stratoecho flight key 2024\n",
}


def test_the_generators_are_what_they_say():
    assert _pi_fraction(4).hex() == "243f6a88"  # pi = 3.243f6a88... in hex
    assert _pi_decimal_digits(5) == bytes([3, 1, 4, 1, 5])
    assert _tribonacci(8) == bytes([0, 0, 1, 1, 2, 4, 7, 13])


# --------------------------------------------------------------------------- keygen's form


@pytest.mark.parametrize("main", [ground_main, payload_main], ids=["groundstation", "payload"])
def test_what_keygen_writes_loads_on_both_sides(tmp_path, main, capsys):
    path = tmp_path / "uplink.key"
    assert main(["keygen", str(path)]) == 0
    text = path.read_text()
    assert text.startswith("stratoecho-flight-key-v1:") and text.endswith("\n") and text.count("\n") == 1
    key = load_key(path)
    assert text == encode_key(key) and decode_key(text.encode()) == key
    assert path.stat().st_mode & 0o777 == 0o600
    CommandGate.from_key_file(Store(tmp_path / "q.db"), path, "STRATO1")  # what payload run builds
    assert ground_main(["listen", "--replay", "/dev/null", "--db", str(tmp_path / "g.db"),
                        "--flight-key", str(path), "--quiet"]) == 0


def test_the_line_ends_with_either_newline_or_none_and_nothing_else(tmp_path):
    line = encode_key(OLD_KEY).rstrip("\n")
    for content in (line, line + "\n", line + "\r\n"):
        assert load_key(_file(tmp_path / "k", content)) == OLD_KEY
    for content in (line + "\n\n", " " + line, line + " ", line + "\n" + line + "\n"):
        with pytest.raises(KeyFileError, match="is damaged or not a keygen key file") as e:
            load_key(_file(tmp_path / "k", content))
        assert str(tmp_path / "k") in str(e.value) and MAKE in str(e.value)


# --------------------------------------------------------------------------- anything else


@pytest.mark.parametrize("name", list(NOT_FROM_KEYGEN))
def test_a_key_keygen_did_not_make_is_refused_naming_the_file_and_the_command(tmp_path, name):
    path = _file(tmp_path / "uplink.key", NOT_FROM_KEYGEN[name])
    with pytest.raises(KeyFileError) as e:
        load_key(path)
    message = str(e.value)
    assert str(path) in message and MAKE in message and "python -m payload keygen FILE" in message
    with pytest.raises(KeyFileError):
        CommandGate.from_key_file(Store(tmp_path / "q.db"), path, "STRATO1")  # the payload's gate
    with pytest.raises(KeyFileError):
        load_auth(path)  # the downlink check either side builds


def test_a_random_looking_bare_key_is_refused_as_bare_and_the_way_to_keep_it_is_named(tmp_path):
    """Pi's binary digits pass every test of the bytes: only the form tells them from a key."""
    path = _file(tmp_path / "uplink.key", _pi_fraction(32))
    with pytest.raises(KeyFileError) as e:
        load_key(path)
    message = str(e.value)
    assert f"flight key file {path} holds a bare key" in message
    assert "no proof it was drawn at random" in message
    assert "[uplink] allow_raw_key = true" in message and "--raw-key-ok" in message


def test_listen_refuses_a_bare_key_and_says_what_to_do(tmp_path, capsys):
    path = _file(tmp_path / "uplink.key", OLD_KEY.hex() + "\n")
    argv = ["listen", "--replay", "/dev/null", "--db", str(tmp_path / "g.db"), "--flight-key", str(path), "--quiet"]
    assert ground_main(argv) == 1
    err = capsys.readouterr().err
    assert str(path) in err and MAKE in err and "--raw-key-ok" in err
    assert not (tmp_path / "g.db").exists()


# --------------------------------------------------------------------------- allowed explicitly


def test_the_explicit_option_takes_a_bare_key_and_warns(tmp_path):
    path = _file(tmp_path / "uplink.key", OLD_KEY.hex() + "\n")
    with capture_logs() as logs:
        assert load_key(path, allow_raw=True) == OLD_KEY
    (warning,) = [e for e in logs if e["event"] == "bare_key_taken"]
    assert warning["log_level"] == "warning" and warning["file"] == str(path) and warning["kind"] == "flight"
    assert "no proof it was drawn at random" in warning["risk"] and MAKE in warning["fix"]
    with capture_logs() as logs:  # keygen's form needs no allowing, and says nothing
        write_key_file(tmp_path / "new.key")
        load_key(tmp_path / "new.key", allow_raw=True)
    assert not [e for e in logs if e["event"] == "bare_key_taken"]


def test_the_option_does_not_let_a_weak_key_through(tmp_path):
    path = _file(tmp_path / "uplink.key", bytes(range(32)).hex())
    with pytest.raises(KeyFileError, match="is published") as e:
        load_key(path, allow_raw=True)
    assert MAKE in str(e.value)


def test_listen_takes_a_bare_key_with_raw_key_ok_or_allow_raw_key(tmp_path, capsys):
    path = _file(tmp_path / "uplink.key", OLD_KEY.hex() + "\n")
    argv = ["listen", "--replay", "/dev/null", "--db", str(tmp_path / "g.db"), "--flight-key", str(path), "--quiet"]
    assert ground_main([*argv, "--raw-key-ok"]) == 0
    err = capsys.readouterr().err  # main sets up its own logging: the warning is on standard error
    assert "bare_key_taken" in err and str(path) in err and "no proof it was drawn at random" in err
    config = tmp_path / "ground.toml"
    config.write_text(f'[source]\nkind = "replay"\nfile = "/dev/null"\n[database]\npath = "{tmp_path / "h.db"}"\n'
                      f'[keys]\nflight_key = "{path}"\nallow_raw_key = true\n')
    assert ground_main(["listen", "--config", str(config), "--quiet"]) == 0, capsys.readouterr().err


def test_the_payload_takes_a_bare_key_only_with_allow_raw_key(tmp_path):
    path = _file(tmp_path / "uplink.key", OLD_KEY.hex() + "\n")
    clock = Clock(speedup=1e6)
    refused = PayloadConfig(uplink=UplinkSection(key_file=str(path)))
    with pytest.raises(KeyFileError, match="holds a bare key"):
        build_onboard(refused, SimSensors(clock), RecordingRadio(), clock, None, tmp_path / "data")
    allowed = PayloadConfig(uplink=UplinkSection(key_file=str(path), allow_raw_key=True))
    with capture_logs() as logs:
        daemon = build_onboard(allowed, SimSensors(clock), RecordingRadio(), clock, None, tmp_path / "data")
    daemon.parts.store.close()
    assert any(e["event"] == "bare_key_taken" for e in logs)


def test_keygen_derives_a_downlink_key_from_a_bare_flight_key_only_with_raw_key_ok(tmp_path, capsys):
    flight = _file(tmp_path / "uplink.key", OLD_KEY.hex() + "\n")
    downlink = tmp_path / "downlink.key"
    assert ground_main(["keygen", "--downlink-from", str(flight), str(downlink)]) == 1
    assert "holds a bare key" in capsys.readouterr().err and not downlink.exists()
    assert ground_main(["keygen", "--raw-key-ok", "--downlink-from", str(flight), str(downlink)]) == 0
    assert load_key(downlink, DOWNLINK) == derive_downlink_key(OLD_KEY)
    assert ground_main(["keygen", "--raw-key-ok", str(tmp_path / "new.key")]) == 1  # a new key needs no option
    assert "--raw-key-ok reads an old flight key for --downlink-from" in capsys.readouterr().err


# --------------------------------------------------------------------------- damage


def test_a_damaged_key_file_is_refused_naming_the_file(tmp_path):
    line = encode_key(OLD_KEY)
    head, key_hex, check = line.rstrip("\n").split(":")
    flipped = key_hex[:10] + ("0" if key_hex[10] != "0" else "1") + key_hex[11:]
    damaged = {
        "a key digit changed": f"{head}:{flipped}:{check}\n",
        "a checksum digit changed": f"{head}:{key_hex}:{check[:-1]}{'0' if check[-1] != '0' else '1'}\n",
        "the checksum lost": f"{head}:{key_hex}:\n",
        "a digit lost": f"{head}:{key_hex[1:]}:{check}\n",
        "cut short": line[:60],
    }
    for what, content in damaged.items():
        path = _file(tmp_path / "uplink.key", content)
        with pytest.raises(KeyFileError, match="is damaged") as e:
            load_key(path)
        assert str(path) in str(e.value) and MAKE in str(e.value), what
    path = _file(tmp_path / "uplink.key", damaged["a key digit changed"])
    with pytest.raises(KeyFileError, match="checksum does not match"):
        load_key(path, allow_raw=True)  # allowing bare keys allows no damaged one


def test_another_version_or_prefix_is_refused_saying_so(tmp_path):
    _, key_hex, check = encode_key(OLD_KEY).rstrip("\n").split(":")
    path = _file(tmp_path / "uplink.key", f"stratoecho-flight-key-v2:{key_hex}:{check}\n")
    with pytest.raises(KeyFileError, match="is a version 2 flight key file; this stratoecho reads version 1"):
        load_key(path)
    path = _file(tmp_path / "uplink.key", f"stratoecho-uplink-key-v1:{key_hex}:{check}\n")
    with pytest.raises(KeyFileError, match="starts stratoecho-uplink-key-v1, which is no key keygen writes"):
        load_key(path)


# --------------------------------------------------------------------------- flight or downlink


def test_a_downlink_key_file_is_no_flight_key_and_a_flight_key_file_no_downlink_key(tmp_path, capsys):
    flight = tmp_path / "uplink.key"
    write_key_file(flight, key=OLD_KEY)
    downlink = tmp_path / "downlink.key"
    assert ground_main(["keygen", "--downlink-from", str(flight), str(downlink)]) == 0
    assert downlink.read_text().startswith("stratoecho-downlink-key-v1:")
    assert load_key(downlink, DOWNLINK) == derive_downlink_key(OLD_KEY)

    with pytest.raises(KeyFileError, match=f"flight key file {downlink} holds a downlink key .*can sign nothing"):
        load_key(downlink)
    with pytest.raises(KeyFileError, match=f"downlink key file {flight} holds a flight key, which signs commands"):
        load_key(flight, DOWNLINK)
    with pytest.raises(KeyFileError, match="holds a downlink key"):  # not even where bare keys are allowed
        load_key(downlink, FLIGHT, allow_raw=True)
    with pytest.raises(KeyFileError, match="holds a downlink key"):
        CommandGate.from_key_file(Store(tmp_path / "q.db"), downlink, "STRATO1")

    capsys.readouterr()
    base = ["listen", "--replay", "/dev/null", "--db", str(tmp_path / "g.db"), "--quiet"]
    assert ground_main([*base, "--flight-key", str(downlink)]) == 1
    assert f"flight key file {downlink} holds a downlink key" in capsys.readouterr().err
    assert ground_main([*base, "--downlink-key", str(flight)]) == 1
    assert f"downlink key file {flight} holds a flight key" in capsys.readouterr().err
    assert ground_main([*base, "--downlink-key", str(downlink)]) == 0
    assert ground_main(["keygen", "--downlink-from", str(downlink), str(tmp_path / "d2.key")]) == 1
    assert "holds a downlink key" in capsys.readouterr().err


def test_relabelling_a_key_file_breaks_its_checksum(tmp_path):
    """The checksum covers the prefix: a flight key's line given a downlink prefix (or back) is damaged."""
    assert checksum(OLD_KEY, FLIGHT) != checksum(OLD_KEY, DOWNLINK)
    relabelled = encode_key(OLD_KEY, FLIGHT).replace("stratoecho-flight-key-v1:", "stratoecho-downlink-key-v1:")
    with pytest.raises(KeyFileError, match="checksum does not match"):
        load_key(_file(tmp_path / "k", relabelled), DOWNLINK)


# --------------------------------------------------------------------------- the operator's password


@pytest.mark.parametrize("password,why", [
    ("ilovemyballoon!!", "it is built on this station's own words and a repeat"),
    ("strato1 balloon launch", "it is built on this station's own words"),
])
def test_a_password_guessed_in_under_10_14_tries_is_refused_saying_why_and_what_to_do(password, why):
    problem = access.password_problem(password)
    assert problem is not None and problem.startswith(f"the operator password is too easy to guess: {why}")
    assert "zxcvbn finds it in about 10^" in problem and "it needs 10^14" in problem
    assert problem.endswith("four or more unrelated words picked at random (not a sentence), 15 characters or more, "
                            "would do")
    assert password not in problem and "balloon" not in problem  # never echoes the password or its parts
    with pytest.raises(ValueError, match="too easy to guess"):
        access.Credential.from_password(password)


def test_a_strong_password_is_taken():
    strong = "tangerine walrus juggles seventeen anvils"
    assert access.password_problem(strong) is None
    credential = access.Credential.from_password(strong)
    assert credential.verify(strong)


def test_operator_password_refuses_a_weak_one_with_zxcvbns_reason(tmp_path, monkeypatch, capsys):
    import argparse
    import io

    from groundstation.web import register_cli

    parser = argparse.ArgumentParser(prog="python -m groundstation")
    register_cli(parser.add_subparsers(dest="command"))
    path = tmp_path / "operator.toml"
    monkeypatch.setattr("sys.stdin", io.StringIO("qwertyuiop123456\n"))
    args = parser.parse_args(["operator-password", "--file", str(path), "--password-stdin"])
    assert args.func(args) == 1
    err = capsys.readouterr().err
    assert "this is similar to a commonly used password" in err and "zxcvbn advises: " in err and not path.exists()
