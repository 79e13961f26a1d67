"""The names the dashboard answers to (issue 31, DNS rebinding): a page on a name of its own,
re-pointed at the station (`evil.local` answered over mDNS by any machine on the field network,
`attacker.example` by its author's DNS), reaches the dashboard as its own origin, token and all.
Only the loopback names, the address it listens on (any IP address when that is all of them) and
the operator's `--allow-host` names are answered; the rest get 403 saying how to allow a name.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import threading
import time

import pytest

from groundstation.web import register_cli, serve
from groundstation.web.cli import cmd_serve
from groundstation.web.hosts import HostAllowList, check_name
from tests.test_dashboard import ground_db, outbox_rows, post_command, request  # noqa: F401

SURVIVAL = {"command": "set_mode", "mode": "survival"}


@pytest.fixture
def start(ground_db):  # noqa: F811 (ground_db is the fixture imported above)
    stops = []

    def start(host: str = "127.0.0.1", allowed_hosts=()):
        stop = threading.Event()
        stops.append(stop)
        return serve(ground_db, host, 0, stop, allowed_hosts=allowed_hosts)

    yield start
    for stop in stops:
        stop.set()


# --------------------------------------------------------------------------- the allow-list


def test_a_loopback_dashboard_answers_to_the_loopback_names_only():
    hosts = HostAllowList("127.0.0.1")
    for host in ("localhost", "localhost:8080", "LOCALHOST.:8080", "127.0.0.1:8080", "[::1]:8080", "::1"):
        assert hosts.allows(host), host
    for host in ("evil.local", "evil.local:8080", "attacker.example:8080", "192.168.4.2:8080", "chase.local",
                 "localhost.evil.example", "127.0.0.1.nip.io", "", None):
        assert not hosts.allows(host), host
    assert hosts.describe() == "localhost, 127.0.0.1 and [::1]"


def test_listening_everywhere_any_ip_address_names_only_when_allowed():
    hosts = HostAllowList("0.0.0.0", ["Chase-Laptop.local."])
    for host in ("192.168.4.2:8080", "10.42.0.1", "[fe80::1]:8080", "localhost:8080", "chase-laptop.local:8080"):
        assert hosts.allows(host), host
    for host in ("evil.local:8080", "attacker.example", "chase-laptop.local.evil.example"):
        assert not hosts.allows(host), host
    assert hosts.describe() == "localhost, 127.0.0.1, [::1], any IP address and chase-laptop.local"
    # on one address: that one, not others
    hosts = HostAllowList("192.168.4.2")
    assert hosts.allows("192.168.4.2:8080") and not hosts.allows("192.168.4.3:8080")
    assert HostAllowList("::").allows("[2001:db8::7]:8080") and HostAllowList("chase.lan").allows("chase.lan:80")


def test_an_origin_is_the_dashboards_own_and_allowed():
    hosts = HostAllowList("0.0.0.0", ["chase.local"])
    assert hosts.origin_allowed("http://chase.local:8080", "chase.local:8080")
    assert hosts.origin_allowed("http://192.168.4.2:8080", "192.168.4.2:8080")
    for origin, host in (("http://evil.local:8080", "chase.local:8080"), ("null", "chase.local:8080"),
                         ("http://evil.local:8080", "evil.local:8080"),  # same origin, but not allowed
                         ("https://chase.local:8080", "chase.local:8080"), ("http://chase.local:9", "chase.local:8080"),
                         ("http://chase.local:8080/x", "chase.local:8080")):
        assert not hosts.origin_allowed(origin, host), origin


def test_allow_host_takes_names_and_addresses_not_patterns():
    assert check_name("Chase-Laptop.local.") == "chase-laptop.local"
    assert check_name("[::1]") == "::1" and check_name("192.168.4.2") == "192.168.4.2"
    for bad, why in (("*.local", "wildcard"), ("http://chase.local:8080", "without scheme, port or path"),
                     ("chase.local:8080", "without scheme, port or path"), ("chase_laptop", "letters, digits"),
                     ("-chase", "letters, digits"), ("", "letters, digits")):
        with pytest.raises(ValueError, match=why):
            check_name(bad)


# --------------------------------------------------------------------------- over HTTP


def test_a_rebound_name_cannot_queue_set_mode_survival(start, ground_db):  # noqa: F811
    dashboard = start()
    port = dashboard.server_address[1]
    for name in ("evil.local", "attacker.example"):
        # what a rebound page sends: its own name as Host and Origin, the page's token it read
        status, answer = post_command(dashboard, SURVIVAL, Host=f"{name}:{port}", Origin=f"http://{name}:{port}")
        assert status == 403, answer
        assert f"does not answer to the name '{name}'" in answer["error"]
        assert f"`serve --allow-host {name}`" in answer["error"]
        assert f'[dashboard] allow_hosts = ["{name}"]' in answer["error"]
        status, _, body = request(dashboard, "/", headers={"Host": f"{name}:{port}"})
        assert status == 403 and b"stratoecho-token" not in body  # nor may it read the token
    assert outbox_rows(ground_db) == []
    assert post_command(dashboard, SURVIVAL)[0] == 201  # from this machine, by 127.0.0.1


def test_an_allowed_name_works_and_its_origin_too(start, ground_db):  # noqa: F811
    dashboard = start("127.0.0.1", ["chase-laptop.local"])
    port = dashboard.server_address[1]
    host = f"chase-laptop.local:{port}"
    assert request(dashboard, "/api/summary", headers={"Host": host})[0] == 200
    assert post_command(dashboard, SURVIVAL, Host=host, Origin=f"http://{host}")[0] == 201
    status, answer = post_command(dashboard, SURVIVAL, Host=host, Origin=f"http://evil.local:{port}")
    assert status == 403 and "cross-site request from http://evil.local" in answer["error"]
    assert len(outbox_rows(ground_db)) == 1


def test_listening_everywhere_answers_by_ip_address_but_not_by_a_local_name(start):
    dashboard = start("0.0.0.0")
    port = dashboard.server_address[1]
    assert request(dashboard, "/api/summary", headers={"Host": f"192.168.4.2:{port}"})[0] == 200
    assert request(dashboard, "/api/summary", headers={"Host": f"evil.local:{port}"})[0] == 403


def raw_status(server, head: str) -> int:
    with socket.create_connection(server.server_address[:2], timeout=10) as sock:
        sock.sendall(f"GET /api/summary HTTP/1.1\r\n{head}Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    return int(data.split(b" ", 2)[1])


def test_no_host_or_two_hosts_are_refused(start):
    dashboard = start()
    port = dashboard.server_address[1]
    assert raw_status(dashboard, f"Host: 127.0.0.1:{port}\r\n") == 200
    assert raw_status(dashboard, "") == 403
    assert raw_status(dashboard, f"Host: 127.0.0.1:{port}\r\nHost: evil.local:{port}\r\n") == 403


def test_serve_allow_host_from_the_command_line(ground_db, capsys):  # noqa: F811
    parser = argparse.ArgumentParser(prog="python -m groundstation")
    register_cli(parser.add_subparsers(dest="command"))
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--db", "g.db", "--allow-host", "*.local"])
    assert "a wildcard would let rebound names of that kind in too" in capsys.readouterr().err
    args = parser.parse_args(["serve", "--db", str(ground_db), "--port", "0", "--host", "0.0.0.0",
                              "--allow-host", "chase-laptop.local", "--allow-host", "ground.lan"])
    stop, result = threading.Event(), []
    runner = threading.Thread(target=lambda: result.append(cmd_serve(args, stop)))
    runner.start()
    try:
        deadline, err = time.monotonic() + 10, ""
        while "answers to" not in err and time.monotonic() < deadline:
            time.sleep(0.05)
            err += capsys.readouterr().err
        assert ("answers to localhost, 127.0.0.1, [::1], any IP address, chase-laptop.local and ground.lan "
                "(--allow-host NAME adds a name)") in err
        port = int(re.search(r"dashboard: http://127\.0\.0\.1:(\d+)/", err)[1])

        class At:
            url = f"http://127.0.0.1:{port}/"

        assert request(At, "/api/summary", headers={"Host": f"chase-laptop.local:{port}"})[0] == 200
        status, _, body = request(At, "/api/summary", headers={"Host": f"evil.local:{port}"})
        assert status == 403 and "--allow-host evil.local" in json.loads(body)["error"]
    finally:
        stop.set()
        runner.join(5)
    assert result == [0]
