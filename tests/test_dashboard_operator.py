"""Watchers and the operator (groundstation/web/access.py): everyone who reaches the dashboard
may watch; queuing a command for the balloon needs the operator's password, set at the station.
Over plain HTTP (sessions, expiry on a clock the test owns, the limit on wrong passwords, a
dashboard opened to the network without a password), through the command line (the password
file), and in a real headless Chromium as a watcher and as the operator.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import stat
import threading
import time

import pytest

from groundstation.web import access, register_cli, serve
from groundstation.web.cli import cmd_serve
from tests.test_dashboard import (  # noqa: F401
    CHROMIUM,
    NOTE_INPUT,
    browser,
    choose_command,
    ground_db,
    open_page,
    outbox_rows,
    request,
    texts,
    wait,
)

PASSWORD = "tangerine walrus juggles seventeen anvils"
NOTE = {"command": "memory_note", "text": "from the operator"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def credential() -> access.Credential:
    return access.Credential.from_password(PASSWORD)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def dashboard(ground_db, credential, clock):  # noqa: F811 (ground_db is the fixture imported above)
    stop = threading.Event()
    server = serve(ground_db, "127.0.0.1", 0, stop, access.Sessions(credential, clock, session_s=600))
    try:
        yield server
    finally:
        stop.set()


def post(server, path: str, body: dict | bytes, cookie: str | None = None, token: bool = True,
         **headers) -> tuple[int, dict, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    head = {"Content-Type": "application/json", **({"X-Stratoecho-Token": server.token} if token else {}),
            **({"Cookie": cookie} if cookie else {}), **headers}
    status, answer_headers, answer = request(server, path, data, head)
    return status, answer_headers, json.loads(answer)


def session(server, cookie: str | None = None) -> dict:
    status, _, body = request(server, "/api/session", headers={"Cookie": cookie} if cookie else {})
    assert status == 200
    return json.loads(body)


def log_in(server, password: str = PASSWORD) -> str:
    status, headers, answer = post(server, "/api/login", {"password": password})
    assert status == 200, answer
    return headers["Set-Cookie"].split(";")[0]


# --------------------------------------------------------------------------- plain HTTP


def test_watchers_cannot_queue_and_the_operator_can_until_the_session_ends(dashboard, ground_db, clock):  # noqa: F811
    assert session(dashboard) == {"operator": False, "expires_in": None, "login": True}
    status, _, answer = post(dashboard, "/api/commands", NOTE)
    assert status == 403 and "log in with the station's operator password" in answer["error"]

    status, headers, answer = post(dashboard, "/api/login", {"password": "horse battery staple"})
    assert (status, answer) == (403, {"error": "wrong password"}) and "Set-Cookie" not in headers
    status, headers, answer = post(dashboard, "/api/login", {"password": PASSWORD})
    assert status == 200 and answer == {"operator": True, "expires_in": 600}
    cookie = headers["Set-Cookie"]
    assert {"HttpOnly", "SameSite=Strict", "Max-Age=600", "Path=/"} <= {p.strip() for p in cookie.split(";")}
    cookie = cookie.split(";")[0]

    assert session(dashboard, cookie) == {"operator": True, "expires_in": 600, "login": True}
    assert post(dashboard, "/api/commands", NOTE, cookie)[0] == 201
    assert post(dashboard, "/api/commands", NOTE, "stratoecho_operator=guessed")[0] == 403
    # the page's token is not a credential, and a session is not one without the token
    assert post(dashboard, "/api/commands", NOTE, cookie, token=False)[0] == 403
    assert len(outbox_rows(ground_db)) == 1

    clock.now += 599
    assert session(dashboard, cookie)["expires_in"] == 1  # not renewed by use
    clock.now += 1
    assert session(dashboard, cookie)["operator"] is False
    assert post(dashboard, "/api/commands", NOTE, cookie)[0] == 403

    cookie = log_in(dashboard)
    status, headers, _ = post(dashboard, "/api/logout", {}, cookie)
    assert status == 200 and "Max-Age=0" in headers["Set-Cookie"]
    assert post(dashboard, "/api/commands", NOTE, cookie)[0] == 403
    assert len(outbox_rows(ground_db)) == 1


def test_logins_are_refused_cross_site_and_malformed(dashboard):
    assert post(dashboard, "/api/login", {"password": PASSWORD}, token=False)[0] == 403
    assert post(dashboard, "/api/login", {"password": PASSWORD}, Origin="http://evil.example")[0] == 403
    assert post(dashboard, "/api/login", {"pass": PASSWORD})[0] == 400
    assert post(dashboard, "/api/login", {"password": ""})[0] == 400
    assert post(dashboard, "/api/login", b"{not json")[0] == 400


def test_wrong_passwords_are_limited_per_address(dashboard, clock):
    for _ in range(access.ADDRESS_FREE_TRIES + 1):
        assert post(dashboard, "/api/login", {"password": "guess guess"})[0] == 403
        clock.now += access.FIRST_DELAY_S
    status, headers, answer = post(dashboard, "/api/login", {"password": PASSWORD})
    assert status == 429 and "from this address: try again in 1 s" in answer["error"]  # not even checked
    assert headers["Retry-After"] == "1"
    clock.now += access.FIRST_DELAY_S
    log_in(dashboard)


def test_a_dashboard_opened_to_the_network_without_a_password_is_read_only(ground_db):  # noqa: F811
    # Listening on every address (as `serve --host 0.0.0.0`); asked from this machine here.
    stop = threading.Event()
    server = serve(ground_db, "0.0.0.0", 0, stop)
    try:
        assert session(server) == {"operator": False, "expires_in": None, "login": False}
        status, _, answer = post(server, "/api/commands", NOTE)
        assert status == 403 and "read-only: no operator password is set" in answer["error"]
        assert post(server, "/api/login", {"password": PASSWORD})[0] == 403
    finally:
        stop.set()
    assert outbox_rows(ground_db) == []
    # On a loopback dashboard without a password, this machine may still queue (one laptop, one user).
    stop = threading.Event()
    server = serve(ground_db, "127.0.0.1", 0, stop)
    try:
        assert session(server) == {"operator": True, "expires_in": None, "login": False}
        assert post(server, "/api/commands", NOTE)[0] == 201
    finally:
        stop.set()


# --------------------------------------------------------------------------- the password file


def test_the_password_file(tmp_path, credential):
    path = tmp_path / "station" / "operator.toml"
    credential.write(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = access.Credential.read(path)
    assert again == credential and again.verify(PASSWORD) and not again.verify(PASSWORD + " ")
    assert PASSWORD not in path.read_text()

    with pytest.raises(ValueError, match="has 5 characters; it needs at least 15"):
        access.Credential.from_password("short")
    os.chmod(path, 0o644)
    with pytest.raises(access.OperatorFileError, match=r"open to other users \(mode 0644, .*chmod 600"):
        access.Credential.read(path)
    path.write_text('scrypt = { n = 16384, r = 8, p = 1, salt = "zz", hash = "00" }\n')
    os.chmod(path, 0o600)
    with pytest.raises(access.OperatorFileError, match=str(path) + r": expected a line `scrypt = "):
        access.Credential.read(path)
    path.write_text("scrypt = [\n")
    with pytest.raises(access.OperatorFileError, match=str(path) + ": not TOML"):
        access.Credential.read(path)
    with pytest.raises(access.OperatorFileError, match="no such file; set a password with"):
        access.Credential.read(tmp_path / "missing.toml")


def test_the_command_line_sets_the_password_and_serve_uses_it(tmp_path, ground_db, monkeypatch, capsys):  # noqa: F811
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    parser = argparse.ArgumentParser(prog="python -m groundstation")
    register_cli(parser.add_subparsers(dest="command"))

    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    args = parser.parse_args(["operator-password", "--password-stdin"])
    assert args.func(args) == 1 and "at least 15: four or more unrelated words" in (err := capsys.readouterr().err)
    assert err.rstrip().endswith("would do; nothing written")
    assert not access.default_file().exists()
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert args.func(args) == 0
    assert access.default_file() == tmp_path / "config" / "stratoecho" / "operator.toml"
    assert access.Credential.read(access.default_file()).verify(PASSWORD)

    # serve finds the default file
    stop = threading.Event()
    result = []
    args = parser.parse_args(["serve", "--db", str(ground_db), "--port", "0", "--session-hours", "0.5"])
    runner = threading.Thread(target=lambda: result.append(cmd_serve(args, stop)))
    runner.start()
    try:
        deadline, err = time.monotonic() + 10, ""
        while (found := re.search(r"dashboard: (http://127\.0\.0\.1:(\d+)/)", err)) is None and time.monotonic() < deadline:
            time.sleep(0.05)
            err += capsys.readouterr().err
        assert found, err

        class At:
            url = found[1]
            token = None

        status, _, body = request(At, "/")
        At.token = re.search(rb'name="stratoecho-token" content="([^"]+)"', body)[1].decode()
        assert session(At) == {"operator": False, "expires_in": None, "login": True}
        status, headers, answer = post(At, "/api/login", {"password": PASSWORD})
        assert status == 200 and answer["expires_in"] == 1800
    finally:
        stop.set()
        runner.join(5)
    assert result == [0]

    assert cmd_serve(parser.parse_args(["serve", "--db", str(ground_db), "--port", "0",
                                        "--operator-file", str(tmp_path / "nowhere.toml")])) == 1
    assert "nowhere.toml: no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--db", "g.db", "--session-hours", "0"])
    with pytest.raises(SystemExit):
        parser.parse_args(["operator-password", "--help"])
    assert "only a browser logged in with this password may queue commands" in capsys.readouterr().out


# --------------------------------------------------------------------------- the real browser

browser_only = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}")


def visible(driver, element_id: str) -> bool:
    return driver.execute_script("const e = document.getElementById(arguments[0]);"
                                 "return e !== null && e.offsetParent !== null", element_id)


@browser_only
def test_in_chromium_a_watcher_sees_no_form_and_the_operator_logs_in(browser, dashboard, ground_db, clock):  # noqa: F811
    find = lambda id_: browser.find_element("id", id_)  # noqa: E731
    browser.delete_all_cookies()
    open_page(browser, dashboard)
    wait(browser, lambda d: find("operator-state").text.startswith("watching"), "the watcher's state never showed")
    assert not visible(browser, "command-form") and visible(browser, "login-form")

    find("login-password").send_keys("not the password")
    find("login-send").click()
    wait(browser, lambda d: find("operator-state").text == "not logged in: wrong password", "no refusal shown")
    assert not visible(browser, "command-form")

    find("login-password").clear()
    find("login-password").send_keys(PASSWORD)
    find("login-send").click()
    wait(browser, lambda d: visible(d, "command-form"), "the command form never showed")
    assert find("operator-state").text.startswith("operator, until ") and visible(browser, "logout")
    assert browser.execute_script("return document.cookie") == ""  # HttpOnly: no script reads the session
    choose_command(browser, "memory_note")
    find(NOTE_INPUT).send_keys("logged in from Chromium")
    find("cmd-send").click()
    wait(browser, lambda d: find("cmd-status").text.startswith("queued #"), "the note was not queued")
    assert [row[2] for row in outbox_rows(ground_db)] == ["memory note: logged in from Chromium"]

    clock.now += 601  # the session ends: the next command is refused and the page goes back to watching
    find(NOTE_INPUT).send_keys("too late")
    find("cmd-send").click()
    wait(browser, lambda d: not visible(d, "command-form") and visible(d, "login-form"),
         "the page never went back to watching")
    assert len(outbox_rows(ground_db)) == 1

    find("login-password").send_keys(PASSWORD)
    find("login-send").click()
    wait(browser, lambda d: visible(d, "logout"), "no second login")
    find("logout").click()
    wait(browser, lambda d: not visible(d, "command-form") and visible(d, "login-form"), "logout did not end it")
    assert texts(browser, "#outbox tbody tr td:nth-child(3)") == ["memory note: logged in from Chromium"]
