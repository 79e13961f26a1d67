"""Issue 50, item 4: a dashboard no crowd locks out. Each crowd as the issue tried it, against
the real `python -m groundstation serve` with its shipped limits, over real sockets from many
loopback addresses (sim/bench/measure/crowds.py: every address of 127/8 but 127.0.0.1 counts as another
machine's, 127.0.1.x is the field network's /24). The operator is logged in from 127.0.1.250,
inside the crowd's network. Before: every answer below was a 503, or the operator's kept-alive
connection was the one closed for room.

The crowds trickle a byte every 0.5 s instead of the issue's 2 s: the same crowd, at its steady
state sooner. Nothing is timed: each step waits for what it needs (SAFETY_S at most)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from sim.bench.measure import crowds, lockout
from sim.bench.run.flood import Crowd

SAFETY_S = 30.0
TRICKLE_S = 0.5


@contextmanager
def crowded(tmp_path, name: str, **limits) -> Iterator[tuple[int, str, Crowd]]:
    """The dashboard, its operator's cookie and crowd `name` at its steady state."""
    with lockout.dashboard(tmp_path, settle=False, limits=limits) as port:
        cookie = lockout.log_in(port, crowds.OPERATOR)
        c = crowds.crowd(port, name, TRICKLE_S)
        c.start()
        try:
            yield port, cookie, c
        finally:
            c.stop.set()
            c.join(SAFETY_S)


def page(port: int, source: str, cookie: str = "") -> int:
    with lockout.send(port, source, "/", cookie, timeout=SAFETY_S) as sock:
        status, body = lockout.read_answer(sock)
    assert status != 200 or b"<html" in body.lower()
    return status


def feed(port: int, source: str, cookie: str = "") -> int:
    with lockout.send(port, source, "/api/events", cookie, timeout=SAFETY_S) as sock:
        return lockout.read_head(sock)[0]


def test_slow_header_bytes_from_8x32_addresses_in_the_operators_24(tmp_path):
    """The operator's phone on the attacker's /24 gets its page, and so does a watcher there."""
    with crowded(tmp_path, "one-net") as (port, cookie, crowd):
        crowd.wait_on(SAFETY_S)
        for _ in range(3):
            assert page(port, crowds.OPERATOR, cookie) == 200  # the operator's address: its reserve
            assert page(port, crowds.FIELD_WATCHER) == 200  # a slow connection of the crowd's closed for it
            assert feed(port, crowds.FIELD_WATCHER) == 200
        assert crowd.ended > 0  # beyond the slow caps, its connections were closed as soon as they trickled


def test_slow_header_bytes_from_32_addresses_in_two_24s(tmp_path):
    """Every remote client gets its page, and the operator's kept-alive connection is never the
    one closed to make room."""
    with lockout.dashboard(tmp_path, settle=False) as port:
        cookie = lockout.log_in(port, crowds.OPERATOR)
        kept = crowds.kept_alive(port, cookie)
        c = crowds.crowd(port, "two-nets", TRICKLE_S)
        c.start()
        try:
            c.wait_on(SAFETY_S)
            for i in range(3):
                assert crowds.time_kept(kept, port, cookie)[1] == 200  # the same connection, still open
                assert page(port, crowds.WATCHERS.format(i)) == 200
            assert page(port, crowds.OPERATOR, cookie) == 200  # and a new one of the operator's
            assert c.ended > 0
        finally:
            c.stop.set()
            c.join(SAFETY_S)
            kept.close()


def test_128_feeds_from_128_24s(tmp_path):
    """New watchers get a live feed while 128 networks hold one each (half the feeds)."""
    with crowded(tmp_path, "feeds") as (port, cookie, crowd):
        crowd.wait_on(SAFETY_S)
        for i in range(3):
            assert feed(port, crowds.WATCHERS.format(i)) == 200
        assert feed(port, crowds.OPERATOR, cookie) == 200 and page(port, crowds.OPERATOR, cookie) == 200
        assert crowd.feeds_on == 128 and crowd.ended == 0  # the free half: nobody's was taken


def test_more_networks_than_feeds_take_turns(tmp_path):
    """Every feed held by the crowd's 128 networks (a pool of 128 here): a new watcher, as its
    browser tries again, gets one once the oldest has had its turn (feed_turn_s, 1 s here)."""
    with crowded(tmp_path, "feeds", streams=128, feed_turn_s=1) as (port, _, crowd):
        crowd.wait_on(SAFETY_S)
        assert feed(port, crowds.WATCHERS.format(1)) == 503  # every feed young, nobody more than one
        deadline = time.monotonic() + SAFETY_S
        while (status := feed(port, crowds.WATCHERS.format(2))) != 200:
            assert status == 503 and time.monotonic() < deadline, "the new watcher never got a live feed"
            time.sleep(0.2)  # as a browser tries again
        while crowd.ended < 1:  # the crowd's oldest feed was closed for it
            assert time.monotonic() < deadline
            time.sleep(0.05)
