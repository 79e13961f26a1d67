"""Issue 41, attack 7, the rest: live feeds and connections bounded per network as well as per
address (an IPv4 /24, an IPv6 /64), room made for a newcomer from the network holding the most,
and a logged-in operator (its session, and the addresses it was used from) served under every flood.

The last test floods the real `python -m groundstation serve` (its shipped limits) over real
sockets from many loopback addresses: every address of 127/8 but 127.0.0.1 counts as another
machine's (limits.is_station), 127.0.1.x as one network, 127.0.2.x as another. Nothing is timed:
each step waits for what it needs (SAFETY_S at most, never a speed claim)."""

from __future__ import annotations

import json
import selectors
import socket
import threading
import time

from groundstation.web.connections import IDLE, Waiting
from groundstation.web.limits import NETWORK, TOTAL, Feeds, Limits, Slots, is_station, network_of
from sim.bench.measure import lockout

SAFETY_S = 20.0


def test_a_network_is_an_ipv4_24_or_an_ipv6_64():
    assert network_of("192.168.4.23") == network_of("192.168.4.200") == "192.168.4.0/24"
    assert network_of("192.168.5.23") != network_of("192.168.4.23")
    assert network_of("::ffff:192.168.4.9") == "192.168.4.0/24"  # heard by a dashboard on `::`
    assert network_of("2001:db8:1:2:aaaa::1") == network_of("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert network_of("2001:db8:1:3::1") != network_of("2001:db8:1:2::1")
    assert network_of("fe80::1%eth0") == "fe80::/64"
    assert is_station("127.0.0.1") and is_station("::1") and is_station("::ffff:127.0.0.1")
    assert not is_station("127.0.1.5") and not is_station("10.0.0.1")


def test_a_network_of_many_addresses_meets_its_cap_and_the_station_does_not():
    slots = Slots(Limits(streams=10, client_streams=2, network_streams=4, local_reserve=1, operator_reserve=0))
    for host in range(1, 5):
        assert slots.claim("stream", f"10.1.1.{host}") is None
    assert slots.claim("stream", "10.1.1.99") == NETWORK  # a fifth address, same /24
    assert slots.claim("stream", "::ffff:10.1.1.98") == NETWORK  # the same network, mapped
    assert slots.claim("stream", "10.1.1.1", (TOTAL, NETWORK)) is None  # the operator's, past it
    assert slots.claim("stream", "10.1.1.1", (TOTAL, NETWORK)) == "address"  # never past its address's
    assert slots.held("stream", "10.1.1.0/24") == 5
    for host in range(1, 5):
        assert slots.claim("stream", f"10.1.2.{host}") is None
    assert slots.claim("stream", "10.1.3.1") is None
    assert slots.claim("stream", "10.1.4.1") == TOTAL
    assert slots.claim("stream", "127.0.0.1") is None  # the station's reserve, no network
    slots.give("stream", "10.1.1.1")
    assert slots.claim("stream", "10.1.1.99") == NETWORK  # the operator's went past: 4 still
    slots.give("stream", "10.1.1.2")
    slots.give("stream", "10.1.3.1")  # and below the total
    assert slots.claim("stream", "10.1.1.99") is None  # below its network's cap again
    assert slots.claim("connection", "2001:db8::1") is None  # connections have their own counts


def test_a_session_remembers_where_it_was_used_until_it_ends():
    """The operator's way in (Limits.operator_reserve): the addresses a live session was used
    from, its login's and each request's with its cookie; forgotten when it ends."""
    from groundstation.web import access

    class Right:
        def verify(self, password: str) -> bool:
            return password == "right"

    now = [0.0]
    sessions = access.Sessions(Right(), lambda: now[0], session_s=100)
    session = sessions.log_in("right", "10.1.1.250")
    assert sessions.seen_from("10.1.1.250") and not sessions.seen_from("10.1.1.251")
    assert sessions.log_in("wrong", "10.1.1.251") is None and not sessions.seen_from("10.1.1.251")
    sessions.valid(session.id, "10.1.2.7")  # the phone moved to another network
    assert sessions.seen_from("10.1.2.7") and sessions.seen_from("10.1.1.250")
    for host in range(access.SEEN_ADDRESSES):
        sessions.valid(session.id, f"10.1.3.{host}")
    assert not sessions.seen_from("10.1.1.250")  # only the newest few
    sessions.valid("forged", "10.1.4.1")
    assert not sessions.seen_from("10.1.4.1")
    now[0] = 100.0
    assert not sessions.seen_from("10.1.3.0")  # expired
    other = sessions.log_in("right", "10.1.5.1")
    sessions.log_out(other.id)
    assert not sessions.seen_from("10.1.5.1")


def idle_socket():
    a, b = socket.socketpair()
    return a, b


def test_idle_connections_are_closed_from_the_network_holding_the_most():
    idle = Waiting()
    pairs = []
    for client in ["10.1.1.1"] * 3 + ["10.1.1.2"] * 2 + ["10.1.2.1"] * 4 + ["10.1.3.1"]:
        pairs.append(idle_socket())
        idle.put(pairs[-1][0], client, IDLE)
    try:
        assert idle.close_one("10.9.9.9")  # 10.1.1.0/24 holds 5: its biggest address's oldest
        assert pairs[0][1].recv(1) == b""
        assert idle.close_one("10.1.3.7", network="10.1.3.0/24")  # its own network full: from inside it
        assert pairs[-1][1].recv(1) == b""
        assert not idle.close_one("10.1.3.7", network="10.1.3.0/24")  # nothing idle left there
        assert not idle.close_one("10.1.3.1", network="10.1.3.0/24")
        assert idle.closed == 2
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_a_newcomer_finding_every_feed_taken_gets_one_of_the_biggest_networks():
    """A network holding more than the newcomer's would gives up its oldest feed, and in a full
    network an address holding more than the newcomer's would; as many only once that feed has
    had its turn. Never the operator's, never back and forth within a turn."""
    slots = Slots(Limits(streams=6, client_streams=3, network_streams=4, operator_reserve=1))
    feeds = Feeds(slots, threading.Event())
    flood = [feeds.open(f"10.1.1.{host}") for host in (1, 1, 2, 2)]  # one network's cap
    operator = feeds.open("10.1.2.1", operator=True)
    other = feeds.open("10.1.2.2")
    assert slots.held("stream") == 6
    assert feeds.open("10.1.1.1") == NETWORK  # nobody there holds more than its 2 + 1
    neighbour = feeds.open("10.1.1.3")  # holds none: 10.1.1.1, holding 2, gives up its oldest
    assert not isinstance(neighbour, str) and flood[0].ended.is_set()
    feeds.close(flood[0])
    assert not isinstance(feeds.open("10.1.1.4"), str) and flood[2].ended.is_set()  # then 10.1.1.2's
    feeds.close(flood[2])
    assert feeds.open("10.1.1.5") == NETWORK  # four addresses holding one each: none has had its turn
    newcomer = feeds.open("10.1.3.1")  # the total: 10.1.1.0/24 holds 4, more than 10.1.3.0/24 would (1)
    assert not isinstance(newcomer, str) and flood[1].ended.is_set()  # of equal addresses, the oldest
    feeds.close(flood[1])
    assert feeds.open("10.1.1.1") == TOTAL  # and not back: 3 is not more than 3 + 1
    assert feeds.open("10.1.2.3") == TOTAL  # 10.1.1.0/24 holds as many as 10.1.2.0/24 would, all young
    for feed in feeds.feeds:
        if feed.client.startswith("10.1.1."):
            feed.since -= 61  # past Limits.feed_turn_s (60 s)
    taken = feeds.open("10.1.2.3")  # 3 and 3: 10.1.1.0/24's oldest has had its turn
    assert not isinstance(taken, str) and flood[3].ended.is_set()
    feeds.close(flood[3])
    assert feeds.open("10.1.1.2") == TOTAL  # not back within a turn: 10.1.2.0/24's are young (or the operator's)
    assert not any(f.ended.is_set() for f in (operator, other, neighbour, newcomer, taken))
    assert slots.held("stream") == 6 and feeds.closed == 4
    extra = feeds.open("10.1.2.9", operator=True)  # the operator's feed goes into its reserve
    assert not isinstance(extra, str) and slots.held("stream") == 7
    stop_all = threading.Event()
    ending = Feeds(Slots(Limits()), stop_all)
    feed = ending.open("10.1.1.1")
    ending.end_all()
    assert feed.ended.is_set()
    stop_all.set()
    assert ending.open("10.1.1.2").ended.is_set()  # a feed opened as the dashboard stops ends at once


def open_feed(port: int, source: str, cookie: str | None = None) -> tuple[int, socket.socket, bytes]:
    """The status of a new feed's answer, its connection, and a refusal's body."""
    sock = lockout.send(port, source, "/api/events", cookie, timeout=SAFETY_S)
    status, headers, rest = lockout.read_head(sock)
    while status != 200 and len(rest) < int(headers["content-length"]):
        rest += sock.recv(65536)
    return status, sock, rest


def flood(port: int, net: int, hosts: int, each: int = 4, first: int = 1) -> tuple[list[socket.socket], list[bytes]]:
    """Feeds from 127.0.`net`.`first`..`hosts`, `each` from every address: those served, the refusals' bodies."""
    served, refused = [], []
    for host in range(first, hosts + 1):
        for _ in range(each):
            status, sock, rest = open_feed(port, f"127.0.{net}.{host}")
            if status == 200:
                served.append(sock)
                continue
            assert status == 503
            refused.append(rest)
            sock.close()
    return served, refused


def ended_by_server(socks: list[socket.socket], at_least: int) -> int:
    """Wait until the server has ended `at_least` of `socks` (what comes first is read and dropped)."""
    sel = selectors.DefaultSelector()
    for sock in socks:
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ)
    ended, deadline = 0, time.monotonic() + SAFETY_S
    try:
        while ended < at_least:
            assert time.monotonic() < deadline, f"only {ended} of {at_least} were ended by the server"
            for key, _ in sel.select(0.1):
                try:
                    if key.fileobj.recv(65536):
                        continue
                except OSError:  # reset by the server: ended, as a close is
                    pass
                sel.unregister(key.fileobj)
                ended += 1
    finally:
        sel.close()
    return ended


def test_the_real_dashboard_under_a_flood_of_feeds_and_idle_connections(tmp_path):
    held: list[socket.socket] = []
    with lockout.dashboard(tmp_path, settle=False) as port:
        cookie = lockout.log_in(port, "127.0.1.250")  # the operator, in the flood's own network
        try:
            served, refused = flood(port, 1, 16)  # 64 from sixteen addresses of one /24: its network's cap
            held += served
            assert len(served) == 64 and not refused
            flooded = list(held)
            served, refused = flood(port, 1, 17, first=17)  # a seventeenth address there gets 3 of its 4
            held += served
            assert len(served) == 3 and len(refused) == 1  # an address holding more gave one up for each
            assert all("from this network" in json.loads(body)["error"] for body in refused)
            assert ended_by_server(flooded, 3) == 3
            served, refused = flood(port, 2, 16)  # another network's cap: 128 feeds in all, half the total
            held += served
            assert len(served) == 64 and not refused
            status, sock, _ = open_feed(port, "127.0.3.1")  # a third network: a free feed
            held.append(sock)
            assert status == 200
            for source in ("127.0.1.99", "127.0.2.99"):  # a newcomer in a flooded network has room made there
                status, sock, _ = open_feed(port, source)
                held.append(sock)
                assert status == 200
            _the_operator_and_others_under_the_idle_flood(port, cookie, held)
        finally:
            for sock in held:
                sock.close()


def _the_operator_and_others_under_the_idle_flood(port: int, cookie: str, held: list[socket.socket]) -> None:
    """16 addresses x 32 connections that never send a byte on top of the 128 feeds: every
    connection slot taken (the server closes idle ones to make room), and still the operator
    gets its page and its feed, and another network's watcher its page."""
    idle = [socket.create_connection(("127.0.0.1", port), timeout=SAFETY_S, source_address=(source, 0))
            for source in lockout.IDLE_FROM for _ in range(lockout.IDLE_EACH)]
    held += idle
    assert ended_by_server(idle, 128) >= 128  # 512 + 128 feeds' connections: the total is reached
    status, page = lockout.read_answer(lockout.send(port, "127.0.1.250", "/", cookie, timeout=SAFETY_S))
    assert status == 200 and b"<html" in page.lower()
    status, sock, _ = open_feed(port, "127.0.1.250", cookie)  # past its network's cap, in the operator's reserve
    held.append(sock)
    assert status == 200
    assert lockout.read_answer(lockout.send(port, "127.0.3.3", "/", timeout=SAFETY_S))[0] == 200
    status, sock, _ = open_feed(port, "127.0.1.251")  # its neighbour is no operator, yet has room made
    held.append(sock)
    assert status == 200
