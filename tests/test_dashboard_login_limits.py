"""Guessing the operator's password (issue 31): wrong passwords are counted per address and per
account, and past a few free ones every further try waits a delay that doubles, up to 15 min,
before it is even checked (429 with Retry-After). Guesses spread over many addresses meet the
account's delay; the operator is kept waiting at most MAX_DELAY_S, never locked out.

The clock is the test's (access.Sessions takes it): nothing sleeps, no wall time is asserted.
Over HTTP, the guessers are ten loopback addresses, 127.0.0.2 to 127.0.0.11 (all of 127/8 is
loopback on Linux), each its own client to the dashboard.
"""

from __future__ import annotations

import http.client
import json
import threading

import pytest

from groundstation.web import access, serve

PASSWORD = "mossy piano under the viaduct"
ADDRESSES = [f"10.0.0.{i}" for i in range(1, 11)]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Counted:
    """A credential that knows one password and counts how often it was asked (the slow scrypt
    is not what these tests are about)."""

    def __init__(self, password: str = PASSWORD) -> None:
        self.password, self.checked = password, 0

    def verify(self, password: str) -> bool:
        self.checked += 1
        return password == self.password


@pytest.fixture
def clock() -> Clock:
    return Clock()


def guess(sessions: access.Sessions, address: str, password: str = "guess guess") -> str:
    """What became of one try: "wrong", "right", or "wait <held> <seconds>"."""
    try:
        session = sessions.log_in(password, address)
    except access.TooManyTries as e:
        return f"wait {e.held} {e.retry_after}"
    return "right" if session else "wrong"


# --------------------------------------------------------------------------- the counts


def test_fifty_guesses_from_ten_addresses_meet_the_accounts_limit(clock):
    credential = Counted()
    sessions = access.Sessions(credential, clock)
    answers = [guess(sessions, ADDRESSES[i % 10]) for i in range(50)]  # five from each, in turn
    # before: each address had its own five, so all fifty were checked
    assert answers[:access.ACCOUNT_FREE_TRIES] == ["wrong"] * access.ACCOUNT_FREE_TRIES
    assert set(answers[access.ACCOUNT_FREE_TRIES:]) == {"wait account 1"}
    assert credential.checked == access.ACCOUNT_FREE_TRIES
    # the operator too waits out the account's delay: it holds for every address
    assert guess(sessions, "192.168.4.20", PASSWORD) == "wait account 1"


def test_each_further_try_waits_twice_as_long_up_to_the_cap(clock):
    credential = Counted()
    sessions = access.Sessions(credential, clock)
    for address in ADDRESSES:
        assert guess(sessions, address) == "wrong"
    waits = []
    for i in range(40):  # a guesser with fresh addresses, trying the moment it may
        with pytest.raises(access.TooManyTries) as refused:
            sessions.log_in("guess guess", f"10.1.0.{i}")
        waits.append(refused.value.wait_s)
        clock.now += refused.value.wait_s
        assert guess(sessions, f"10.1.0.{i}") == "wrong"
    assert waits[:11] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, access.MAX_DELAY_S]
    assert set(waits[10:]) == {access.MAX_DELAY_S} and access.MAX_DELAY_S == 15 * 60
    # past the first ten, four tries an hour for all addresses together
    assert credential.checked == 10 + 40
    assert sum(waits) == 1023 + 30 * access.MAX_DELAY_S


def test_an_address_has_its_own_smaller_allowance(clock):
    sessions = access.Sessions(Counted(), clock)
    for _ in range(access.ADDRESS_FREE_TRIES):
        assert guess(sessions, "10.0.0.1") == "wrong"
    assert guess(sessions, "10.0.0.1") == "wait address 1"
    assert guess(sessions, "10.0.0.2") == "wrong"  # the account still has tries left
    clock.now += 1
    assert guess(sessions, "10.0.0.1") == "wrong"
    clock.now += 1
    assert guess(sessions, "10.0.0.1") == "wait address 1"  # now 2 s after the last wrong one


def test_a_refused_try_is_not_checked_and_does_not_lengthen_the_wait(clock):
    credential = Counted()
    sessions = access.Sessions(credential, clock)
    for address in ADDRESSES:
        guess(sessions, address)
    for _ in range(100):
        assert guess(sessions, "10.2.0.1", PASSWORD) == "wait account 1"  # even the right password
    assert credential.checked == 10
    clock.now += 1
    assert guess(sessions, "10.2.0.1", PASSWORD) == "right"


def test_the_operator_is_never_locked_out_and_the_right_password_starts_again(clock):
    sessions = access.Sessions(Counted(), clock)
    for i in range(1000):  # a whole night of guessing, each try as soon as it may
        clock.now += access.MAX_DELAY_S
        assert guess(sessions, f"10.3.{i // 200}.{i % 200}") == "wrong"
    assert guess(sessions, "192.168.4.20", PASSWORD) == f"wait account {int(access.MAX_DELAY_S)}"
    clock.now += access.MAX_DELAY_S  # the longest the operator ever waits
    assert guess(sessions, "192.168.4.20", PASSWORD) == "right"
    assert sessions.limits.wrong(account=access.OPERATOR) == 0
    for address in ADDRESSES:  # a fresh allowance for the account
        assert guess(sessions, address) == "wrong"


def test_counts_are_forgotten_after_a_quiet_day_and_kept_for_so_many_addresses(clock, monkeypatch):
    sessions = access.Sessions(Counted(), clock)
    for _ in range(access.ADDRESS_FREE_TRIES):
        guess(sessions, "10.0.0.1")
    clock.now += access.FORGET_S
    assert guess(sessions, "10.0.0.1") == "wrong"
    assert sessions.limits.wrong(address="10.0.0.1") == 1 and sessions.limits.wrong(account=access.OPERATOR) == 1

    monkeypatch.setattr(access, "MAX_ADDRESSES", 3)
    limits = access.LoginLimits()
    for i in range(10):
        limits.count(access.OPERATOR, f"10.4.0.{i}", clock.now)
    assert [limits.wrong(address=f"10.4.0.{i}") for i in range(10)] == [0] * 7 + [1] * 3
    assert limits.wrong(account=access.OPERATOR) == 10  # what an address's count forgets, the account's keeps


def test_the_delay_schedule():
    assert [access.delay_s(n, 5) for n in range(4, 8)] == [0, 1, 2, 4]
    assert access.delay_s(10**9, 5) == access.MAX_DELAY_S  # no overflow, however long it goes on


# --------------------------------------------------------------------------- over HTTP


@pytest.fixture
def dashboard(tmp_path, clock):
    stop = threading.Event()
    server = serve(tmp_path / "ground.db", "127.0.0.1", 0, stop,
                   access.Sessions(access.Credential.from_password(PASSWORD), clock))
    try:
        yield server
    finally:
        stop.set()


def log_in(server, password: str, source: str) -> tuple[int, dict, dict]:
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10, source_address=(source, 0))
    try:
        conn.request("POST", "/api/login", json.dumps({"password": password}),
                     {"Content-Type": "application/json", "X-Stratoecho-Token": server.token})
        answer = conn.getresponse()
        return answer.status, dict(answer.headers), json.loads(answer.read())
    finally:
        conn.close()


def test_over_http_fifty_guesses_from_ten_addresses_are_slowed_for_the_account(dashboard, clock):
    sources = [f"127.0.0.{i}" for i in range(2, 12)]
    statuses = [log_in(dashboard, "guess guess", sources[i % 10])[0] for i in range(50)]
    assert statuses == [403] * access.ACCOUNT_FREE_TRIES + [429] * 40
    status, headers, answer = log_in(dashboard, PASSWORD, "127.0.0.1")
    assert status == 429 and headers["Retry-After"] == "1" and headers["Connection"] == "close"
    assert answer["error"] == "too many wrong passwords for the operator, from all addresses together: try again in 1 s"
    clock.now += 1
    status, headers, answer = log_in(dashboard, PASSWORD, "127.0.0.1")
    assert status == 200 and answer["operator"] is True and "Set-Cookie" in headers
