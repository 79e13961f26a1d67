"""The operator's password and its file (issue 31): a password is taken only when it is long
(15 characters or more, NIST SP 800-63B-4's minimum for a single factor) and hard to guess by
zxcvbn's estimate (common passwords, words, repeats, sequences, keyboard runs: 10^14 guesses or
more, issue 50); the refusal says what is wrong and what would do. The file the hash is kept in must be
its reader's own and closed to others (stratoecho.secret_files), or `serve` will not start.
"""

from __future__ import annotations

import argparse
import io
import os

import pytest

from groundstation.web import access, register_cli
from groundstation.web.cli import cmd_serve
from tests.test_dashboard import ground_db  # noqa: F401

GOOD = "kettle parsnip orbit lagoon"

WEAK = {
    "aaaaaaaa": "has 8 characters; it needs at least 15",
    "password1234": "has 12 characters; it needs at least 15",
    "aaaaaaaaaaaaaaaa": 'too easy to guess: repeats like "aaa" are easy to guess',
    "password12345678": "too easy to guess: this is similar to a commonly used password",
    "qwertyuiop123456": "too easy to guess: this is similar to a commonly used password",
    "abcdefghijklmnop": "too easy to guess: sequences like",
    "iloveyouiloveyou": "too easy to guess: repeats like",
    "stratoecho balloon": "too easy to guess: it is built on this station's own words",
    # published as an example (xkcd 936), and the station's own words with spaces (issue 41)
    "correcthorsebatterystaple": "too easy to guess",
    "correct horse battery staple": "too easy to guess",
    "ground station operator": "too easy to guess",
    # taken while 10^10 guesses were enough (issue 50)
    "correct horse battery": "too easy to guess: it is built on common words and a common password",
    "Welshpool launch at dawn": "it needs 10^14",
}


@pytest.fixture
def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m groundstation")
    register_cli(parser.add_subparsers(dest="command"))
    return parser


@pytest.mark.parametrize("password", sorted(WEAK))
def test_a_weak_password_is_refused_saying_why_and_what_would_do(password):
    with pytest.raises(ValueError) as refused:
        access.Credential.from_password(password)
    assert WEAK[password] in str(refused.value)
    assert "four or more unrelated words picked at random (not a sentence), 15 characters or more, would do" in str(
        refused.value)


def test_a_long_uncommon_phrase_will_do_and_a_huge_one_will_not():
    assert access.password_problem(GOOD) is None
    assert access.password_problem("amber kestrel folds 41 maps under rain") is None
    assert "the dashboard's login takes at most 256" in access.password_problem("x" * 257)


@pytest.mark.parametrize("password", ["aaaaaaaa", "password1234", "password12345678"])
def test_operator_password_refuses_a_weak_one_and_writes_nothing(password, parser, tmp_path, monkeypatch, capsys):
    path = tmp_path / "operator.toml"
    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    args = parser.parse_args(["operator-password", "--file", str(path), "--password-stdin"])
    assert args.func(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: the operator password ") and err.rstrip().endswith("would do; nothing written")
    assert not path.exists()


def test_a_password_file_owned_by_another_user_is_refused(tmp_path, parser, ground_db, monkeypatch, capsys):  # noqa: F811
    path = tmp_path / "operator.toml"
    access.Credential.from_password(GOOD).write(path)
    assert access.Credential.read(path).verify(GOOD)
    with pytest.raises(access.OperatorFileError, match=r"operator password file .* belongs to .*, not to this user .*"
                                                      r"run: chown \$\(id -un\) "):
        access.Credential.read(path, euid=os.geteuid() + 1)

    # and `serve` will not start with it: the file belongs to someone else for this process
    real = os.geteuid()
    monkeypatch.setattr(os, "geteuid", lambda: real + 1)
    args = parser.parse_args(["serve", "--db", str(ground_db), "--port", "0", "--operator-file", str(path)])
    assert cmd_serve(args) == 1
    err = capsys.readouterr().err
    assert f"operator password file {path} belongs to" in err and "run: chown" in err


def test_a_password_file_open_to_others_is_refused(tmp_path):
    path = tmp_path / "operator.toml"
    access.Credential.from_password(GOOD).write(path)
    for mode in (0o640, 0o604, 0o660):
        os.chmod(path, mode)
        with pytest.raises(access.OperatorFileError, match=rf"is open to other users \(mode 0{mode:o}, .*"
                                                           rf"run: chmod 600 {path}"):
            access.Credential.read(path)
    os.chmod(path, 0o400)  # read-only for its owner will do
    assert access.Credential.read(path).verify(GOOD)
