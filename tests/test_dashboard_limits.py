"""The dashboard stays up for everyone while one client misbehaves (issue 31): connections and
event streams are capped per address and in all (503 + Retry-After beyond), idle and slow
requests time out, and a base-map view costs at most a screen's worth at its zoom, cached.

The limits are made small here so each test takes a second or two; clients on other addresses
are 127.0.0.2, 127.0.0.3 (all of 127/8 is loopback on Linux)."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from groundstation.web import serve
from groundstation.web.limits import Limits
from groundstation.web.maps import MapLayers, MapRequestError, view_tiles

SAFETY_S = 10.0  # what any one wait may take before the test fails (never a speed claim)


@pytest.fixture
def start(tmp_path):
    servers = []

    def start(**limits):
        limits.setdefault("local_reserve", 0)  # every client here is loopback: the totals alone
        limits.setdefault("operator_reserve", 0)
        stop = threading.Event()
        server = serve(tmp_path / "ground.db", "127.0.0.1", 0, stop, map_layers=MapLayers(basemap=None),
                       limits=Limits(**limits))
        servers.append(stop)
        return server

    yield start
    for stop in servers:
        stop.set()


def test_the_station_itself_is_served_past_the_totals_the_field_network_filled():
    """Every slot taken by clients on the field network: this machine's own (its screen, the
    operator at it) still gets `local_reserve` more, each within its own per-client cap."""
    from groundstation.web.limits import Slots

    slots = Slots(Limits(connections=4, client_connections=2, streams=2, client_streams=1, local_reserve=2,
                         operator_reserve=0))
    for client in ("10.0.0.2", "10.0.0.2", "10.0.0.3", "fd00::7"):
        assert slots.take("connection", client)
    assert not slots.take("connection", "10.0.0.4")  # the total
    assert slots.take("connection", "127.0.0.1") and slots.take("connection", "::1")
    assert not slots.take("connection", "127.0.0.2")  # the reserve is spent too
    assert not slots.take("connection", "192.168.1.9")
    slots.give("connection", "10.0.0.2")
    assert not slots.take("connection", "10.0.0.4")  # the station's own count in the total too
    slots.give("connection", "127.0.0.1")
    slots.give("connection", "::1")
    assert slots.take("connection", "10.0.0.4")  # below the total again: anyone
    assert slots.take("stream", "10.0.0.2") and slots.take("stream", "10.0.0.3")
    assert not slots.take("stream", "10.0.0.4")
    assert slots.take("stream", "127.0.0.1") and not slots.take("stream", "127.0.0.1")  # one per client still
    assert slots.take("stream", "::ffff:127.0.0.1")  # the station itself, heard by a dashboard on `::`
    assert not slots.take("stream", "::ffff:10.0.0.5")  # the field network, likewise


def connect(server, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(server.server_address[:2], timeout=SAFETY_S, source_address=(source, 0))
    return sock


def ask(sock: socket.socket, server, path: str = "/api/session") -> None:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.server_address[1]}\r\n\r\n".encode())


def head(sock: socket.socket) -> tuple[int, dict[str, str]]:
    """The status and headers of the answer on `sock`."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    lines = data.split(b"\r\n\r\n")[0].decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers


def get(server, source: str = "127.0.0.1", path: str = "/api/session") -> tuple[int, dict[str, str]]:
    with connect(server, source) as sock:
        ask(sock, server, path)
        return head(sock)


def held(server, kind: str = "connection") -> int:
    with server.slots.lock:
        return server.slots.total[kind]


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + SAFETY_S
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server ends the connection (what it still sends first is read and dropped);
    TimeoutError after SAFETY_S if it never does."""
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    return True


def test_one_address_cannot_hold_every_connection(start):
    server = start(connections=10, client_connections=3)
    idle = [connect(server) for _ in range(3)]
    try:
        wait_for(lambda: held(server) == 3, "the idle connections were accepted")
        status, headers = get(server)  # a fourth from the same address: refused at once
        assert status == 503 and headers["Retry-After"] == "5"
        assert get(server, "127.0.0.2")[0] == 200  # another address is served meanwhile
        refused = connect(server)  # one that sends nothing still reads its 503
        assert head(refused)[0] == 503
        refused.close()
    finally:
        for sock in idle:
            sock.close()
    wait_for(lambda: held(server) == 0, "closed connections give their slots back")
    assert get(server)[0] == 200


def test_connections_are_capped_in_all(start):
    """Every slot held by requests under way (live feeds: busy, never closed for room): a newcomer gets 503."""
    server = start(connections=4, client_connections=3)
    busy = [connect(server) for _ in range(3)] + [connect(server, "127.0.0.2")]
    try:
        for sock in busy:
            ask(sock, server, "/api/events")
            assert head(sock)[0] == 200
        status, headers = get(server, "127.0.0.3")
        assert status == 503 and int(headers["Retry-After"]) > 0
    finally:
        for sock in busy:
            sock.close()


def slow_request(server, source: str) -> socket.socket:
    """A connection whose request came only in part: its first line, the rest never."""
    sock = connect(server, source)
    sock.sendall(b"GET /api/session HTTP/1.1\r\n")
    return sock


def test_slow_requests_are_capped_per_address_and_network_and_closed_for_room(start):
    """Issue 50: a request whose head trickles in holds a slow slot, a few per address and per
    network; beyond them its connection is closed at once, and those within them are the first
    closed for a newcomer: nobody, in the crowd's network or elsewhere, is refused for them."""
    server = start(connections=6, client_connections=4, slow=4, client_slow=2, network_slow=3)
    socks = [slow_request(server, source) for source in ("127.0.1.1", "127.0.1.1", "127.0.1.2")]
    try:
        wait_for(lambda: held(server, "slow") == 3, "three slow requests")
        for source in ("127.0.1.1", "127.0.1.3"):  # past its address's cap, past its network's
            over = slow_request(server, source)
            socks.append(over)
            assert closed_by_server(over)
        socks.append(slow_request(server, "127.0.2.1"))  # another network's: the total's fourth
        wait_for(lambda: held(server, "slow") == 4, "four slow requests")
        assert closed_by_server(slow_request(server, "127.0.3.1"))  # past the total
        socks += [connect(server, "127.0.2.2"), connect(server, "127.0.2.3")]  # idle: every connection taken
        wait_for(lambda: held(server) == 6, "every connection taken")
        assert get(server, "127.0.1.9")[0] == 200  # in the crowd's network: a slow one closed for it
        wait_for(lambda: held(server) == 5, "the closed one's slot and the newcomer's came back")
        socks.append(connect(server, "127.0.2.4"))
        wait_for(lambda: held(server) == 6, "every connection taken again")
        assert get(server, "127.0.4.1")[0] == 200  # another network's
        # Slow ones first, never the idle ones; a closed one's slot comes back after its close (as above).
        wait_for(lambda: held(server, "slow") == 2, "the second closed slow request's slot back")
        assert server.waiting.closed == 2
    finally:
        for sock in socks:
            sock.close()


def test_idle_connections_of_a_few_addresses_make_room_for_anyone_else(start):
    """Issue 41, attack 7, small: two addresses hold every slot with connections that send
    nothing. A third address is served at once: the oldest idle connection of the address that
    holds the most is closed for it. A holder's own extra connection still meets its own cap."""
    server = start(connections=6, client_connections=4)
    hogs = [connect(server, "127.0.0.2") for _ in range(4)] + [connect(server, "127.0.0.3") for _ in range(2)]
    try:
        wait_for(lambda: held(server) == 6 and len(server.waiting.waiting) == 6, "the idle connections were accepted")
        assert get(server, "127.0.0.4")[0] == 200  # the operator's phone, say
        assert closed_by_server(hogs[0])  # 127.0.0.2's oldest made the room
        assert server.waiting.closed == 1
        wait_for(lambda: held(server) == 5, "the newcomer's and the closed connection's slots came back")
        hogs.append(connect(server, "127.0.0.2"))  # back at its own cap of 4 (one slot was free)
        wait_for(lambda: len(server.waiting.waiting) == 6, "its fourth was accepted")
        assert get(server, "127.0.0.2")[0] == 503  # a fifth: its own cap, nobody else's room taken
        assert server.waiting.closed == 1
    finally:
        for sock in hogs:
            sock.close()


def test_an_idle_connection_is_closed(start):
    server = start(idle_s=0.3)
    sock = connect(server)
    wait_for(lambda: held(server) == 1, "accepted")
    assert closed_by_server(sock)  # recv would raise TimeoutError (SAFETY_S) if it were kept
    wait_for(lambda: held(server) == 0, "its slot is given back")
    kept = connect(server)  # between two requests of a kept-alive connection likewise
    ask(kept, server)
    assert head(kept)[0] == 200
    kept.settimeout(SAFETY_S)
    assert closed_by_server(kept)


def test_a_request_trickled_a_byte_at_a_time_is_cut_off(start):
    """One deadline for the whole request from its first byte: the first line trickled too."""
    server = start(idle_s=2.0, head_s=0.5)
    sock = connect(server)
    sock.sendall(b"G")
    started = time.monotonic()
    with pytest.raises((BrokenPipeError, ConnectionResetError)):
        while time.monotonic() - started < SAFETY_S:  # each byte well inside idle_s: only the deadline ends it
            sock.sendall(b"X")
            time.sleep(0.1)
    wait_for(lambda: held(server) == 0, "its slot is given back")


def test_event_streams_are_capped_per_address_and_in_all(start):
    server = start(streams=3, client_streams=2)
    streams = []
    try:
        for source in ("127.0.0.1", "127.0.0.1", "127.0.0.2"):
            sock = connect(server, source)
            ask(sock, server, "/api/events")
            assert head(sock)[0] == 200
            streams.append(sock)
        status, headers = get(server, "127.0.0.1", "/api/events")  # a third from one address
        assert status == 503 and headers["Retry-After"] == "5" and headers["Connection"] == "close"
        status, headers = get(server, "127.0.0.3", "/api/events")  # a fourth in all
        assert status == 503 and headers["Retry-After"] == "5"
        assert get(server, "127.0.0.3")[0] == 200  # the rest of the dashboard answers
    finally:
        for sock in streams:
            sock.close()


def test_view_tiles():
    assert view_tiles((-180, -85.0511, 180, 85.0511), 0) == pytest.approx(1, rel=1e-3)
    assert view_tiles((-180, -85.0511, 180, 85.0511), 3) == pytest.approx(64, rel=1e-3)
    assert view_tiles((170, 0, -170, 1), 10) == view_tiles((0, 0, 20, 1), 10)  # across the antimeridian
    assert view_tiles((0, 0, 0, 0), 19) == 1  # a point costs a tile


class CountingBaseMap:
    def __init__(self):
        self.calls = 0
        self.release = threading.Event()
        self.release.set()

    def features(self, bbox, zoom):
        self.calls += 1
        self.release.wait(SAFETY_S)
        return {"type": "FeatureCollection", "features": [], "zoom": zoom}


def basemap(layers: MapLayers, bbox: str, zoom: int) -> bytes:
    return layers.basemap_json({"bbox": [bbox], "zoom": [str(zoom)]})


def test_a_view_bigger_than_a_screen_at_its_zoom_is_refused():
    drawn = CountingBaseMap()
    layers = MapLayers(basemap=drawn)
    with pytest.raises(MapRequestError) as refused:
        basemap(layers, "-180,-85,180,85", 19)  # the whole world at street level
    assert refused.value.status == 400 and "view too big for zoom 19" in str(refused.value)
    assert drawn.calls == 0
    assert json.loads(basemap(layers, "-180,-85,180,85", 4))["zoom"] == 4  # the world, zoomed out
    assert json.loads(basemap(layers, "-0.5,51.9,0.9,52.6", 9))["zoom"] == 9  # a chase's view


def test_views_are_cached_and_drawn_a_few_at_a_time():
    drawn = CountingBaseMap()
    layers = MapLayers(basemap=drawn, basemap_jobs=1, basemap_wait_s=0.2)
    first = basemap(layers, "-0.5,51.9,0.9,52.6", 9)
    assert basemap(layers, "-0.5,51.9,0.9,52.6", 9) == first and drawn.calls == 1
    drawn.release.clear()
    busy = threading.Thread(target=basemap, args=(layers, "0,50,1,51", 9))
    busy.start()
    wait_for(lambda: drawn.calls == 2, "the first view is being drawn")
    with pytest.raises(MapRequestError) as refused:
        basemap(layers, "1,50,2,51", 9)
    assert refused.value.status == 503 and refused.value.retry_after
    assert basemap(layers, "-0.5,51.9,0.9,52.6", 9) == first  # a cached view needs no turn
    drawn.release.set()
    busy.join(SAFETY_S)
    assert drawn.calls == 2


def test_load_bench_runs_small():
    # `make bench`'s row at a few percent of its load (sim/bench/measure/dashboard.py): every watcher's
    # page and operator's command is answered; the times are the bench's business.
    from sim.bench.measure import dashboard as dashboard_bench

    r = dashboard_bench.measure(idle=60, streams=12, maps=2, seconds=2.0)
    assert r["failed"] == 0 and r["samples"] >= 3
    assert r["idle_opened"] >= 60 and r["streams_opened"] >= 12
    assert r["maps"].get("400", 0) >= 1  # the whole world at zoom 19 is refused


def test_views_asked_back_to_back_leave_the_pages_half_the_time():
    class Slow:
        def __init__(self):
            self.spans = []

        def features(self, bbox, zoom):
            started = time.monotonic()
            time.sleep(0.2)
            self.spans.append((started, time.monotonic()))
            return {"type": "FeatureCollection", "features": []}

    drawn = Slow()
    layers = MapLayers(basemap=drawn)
    basemap(layers, "0,50,1,51", 9)
    basemap(layers, "1,50,2,51", 9)
    (_, first_end), (second_start, _) = drawn.spans
    assert second_start - first_end >= 0.19  # rested as long as the first view took (BASEMAP_DUTY 0.5)
    basemap(layers, "0,50,1,51", 9)  # a cached view rests for nothing
    assert len(drawn.spans) == 2


def test_the_operators_live_feed_is_kept_room_for_when_the_field_network_fills_them(tmp_path):
    """Issue 41, attack 7, feeds: every live feed taken by other addresses, a logged-in operator
    (a session, whatever the address) still gets one; anyone else still gets 503."""
    import http.client

    from groundstation.web import access

    password = "velvet quarry oboe sprocket"
    stop = threading.Event()
    server = serve(tmp_path / "ground.db", "127.0.0.1", 0, stop, access.Sessions(
        access.Credential.from_password(password), time.monotonic), map_layers=MapLayers(basemap=None),
        limits=Limits(streams=2, client_streams=1, local_reserve=0, operator_reserve=1))
    streams = []
    try:
        for source in ("127.0.0.2", "127.0.0.3"):
            sock = connect(server, source)
            ask(sock, server, "/api/events")
            assert head(sock)[0] == 200
            streams.append(sock)
        assert get(server, "127.0.0.5", "/api/events")[0] == 503
        host, port = server.server_address[:2]
        conn = http.client.HTTPConnection(host, port, timeout=SAFETY_S, source_address=("127.0.0.4", 0))
        conn.request("POST", "/api/login", json.dumps({"password": password}),
                     {"Content-Type": "application/json", "X-Stratoecho-Token": server.token})
        answer = conn.getresponse()
        assert answer.status == 200
        cookie = answer.headers["Set-Cookie"].split(";", 1)[0]
        answer.read()
        conn.close()
        sock = connect(server, "127.0.0.4")
        sock.sendall(f"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {cookie}\r\n\r\n".encode())
        assert head(sock)[0] == 200  # past the total: the operator's
        streams.append(sock)
        assert get(server, "127.0.0.5", "/api/events")[0] == 503  # still nobody else's
    finally:
        for sock in streams:
            sock.close()
        stop.set()


def test_serve_takes_its_limits_by_name():
    from groundstation.web.limits import parse_limit

    assert parse_limit("head_s=1.5") == ("head_s", 1.5) and parse_limit("streams=12") == ("streams", 12)
    assert parse_limit("operator_reserve=0") == ("operator_reserve", 0)
    for bad, says in (("nope=1", "no dashboard limit; one of connections"), ("streams=1.5", "a whole number"),
                      ("head_s=0", "at least 0.001"), ("head_s=nan", "seconds"), ("streams=-1", "at least 1")):
        with pytest.raises(ValueError, match=says):
            parse_limit(bad)
