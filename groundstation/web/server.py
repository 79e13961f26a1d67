"""`python -m groundstation serve`: the web dashboard, for a field with no internet.

Standard library only (`http.server`, `sqlite3`); the page, its script and its style
sheet come from `static/` beside this file, and nothing else is ever fetched: no
CDN, no fonts, no map tiles (the track is drawn as SVG from the positions).

Endpoints (all JSON unless said otherwise; ``since`` is a row id, rows after it)::

    GET  /                          the page (with this server's command token in a <meta>)
    GET  /app.js, /style.css        its script and style (and /dom.js, /charts.js, /map.js, /flights.js,
                                    /commands.js beside it)
    GET  /api/summary               counts, cursor (newest row ids), launch, latest position, latest health
    GET  /api/telemetry?since=ID    telemetry rows, each with `t`: the sentence time as a full UTC date
    GET  /api/musings?since=ID      musings, each with `paths`: which way it was heard ("home",
                                    "home via NEAR1": in NEAR1's relay envelope)
    GET  /api/records?kind=K&since=ID   records of one kind: health `fields`, image `image` (its URL)
    GET  /api/flights               every flight this station follows, the primary (--db) first, then
                                    each ground.CALLSIGN.db beside it and each --flight-db (flights.py):
                                    callsign, latest position, track (at most 500 points), counts, and
                                    how its frames came (`paths`: heard directly, by relay, per relayer)
    GET  /api/conversation          the newest 500 musings of all those flights, oldest first by when
                                    they were made, each with its callsign and `paths`
    GET  /api/images/BOOT/SEQ.jpg   an image record's JPEG (image/jpeg)
    GET  /api/link                  frames heard and bad per minute, telemetry lost per minute,
                                    per station (frames, signal, records heard), missing records
    GET  /api/outbox                commands queued for the payload, queued or sent
    GET  /api/commands              the commands the operator may queue, as stratoecho/wire/commands.py
                                    declares them: name, label, help, risky, and each field's type and
                                    bounds (min/max, max_bytes, choices); the page draws its form from it
    GET  /api/prediction            the predicted landing (groundstation/predict.py) with its 95 % ellipse,
                                    the burst, the rates, and with `serve --station` distance, bearing and
                                    elevation from the station (and from every station whose position
                                    the database holds, `stations`); null until there is enough track
    GET  /api/events                Server-Sent Events: `telemetry` and `record` (lists of new rows),
                                    `outbox` (the whole outbox when it changes), `link` (frames grew),
                                    `flights` (another flight's database appeared or was written)
    GET  /api/session               {"operator": may this browser queue commands, "expires_in": its
                                    session's seconds left, "login": can anyone log in here}
    POST /api/login                 {"password": ...}: an operator session (a cookie), or 403;
                                    429 with Retry-After while wrong passwords from this address,
                                    or for the account from any, must wait (access.LoginLimits)
    POST /api/logout                ends this browser's operator session
    POST /api/commands              queue a command (JSON: "command", one of GET /api/commands' names,
                                    and its fields by name), checked by that same declaration; operator only

The server (this file) accepts connections within the caps (limits.py, connections.py) and hands each to
handler.py, which routes its requests: the API's answers are built in api.py, the live feed
in events.py.

Reading: every request (and every event stream) opens its own read-only
`store.GroundReader`; the database is in WAL mode, so the dashboard reads while the listener
writes, and never blocks it. The event stream asks SQLite once a second whether
anyone committed (``PRAGMA data_version``) and only then looks for rows past its
cursor (the newest telemetry and record ids it sent, also its SSE event id, so a
browser that reconnects resumes where it was).

Writing: only ``POST /api/commands``, which makes the command from its declaration in the wire
package (`stratoecho.wire.commands`: the same fields and bounds the form was drawn from) and queues it with
`Store.outbox.queue`. The listener holds the key and the counter: it signs and
sends queued commands in the payload's next listen window and marks them sent.

Who may write (`access.py`): everyone who reaches the page may watch; queuing a command
needs an operator session, from the password set at the station
(`python -m groundstation operator-password`). With no password set, commands are taken only
on a dashboard that listens on a loopback address, from this machine; on any other address
the dashboard is then read-only for everyone.

Cross-site requests: every POST needs the token this server put in the page (header
``X-Stratoecho-Token``), a JSON body, and, where the browser says where it comes
from (``Origin``, ``Sec-Fetch-Site``), the same origin, itself an allowed one. Every
request must name in its ``Host`` header a name the dashboard answers to (`hosts.py`:
the loopback names, its ``--host``, any IP address when it listens on all of them, and
the ``--allow-host`` names), so a web page cannot reach the dashboard under a DNS name
of its own (DNS rebinding); others get 403 saying how to allow a name. Text from the
air is only ever shown as text by the page.
"""

from __future__ import annotations

import collections
import json
import secrets
import socket
import sys
import threading
import time
from collections.abc import Iterable
from http.server import ThreadingHTTPServer
from pathlib import Path

import structlog

from .. import predict
from ..store import Store
from . import access
from .connections import Waiting
from .flights import FlightFiles
from .handler import Handler
from .hosts import HostAllowList, is_loopback
from .limits import NETWORK, TOTAL, Feeds, Limits, Slots, is_station, network_of
from .maps import MapLayers

__all__ = ["SWITCH_INTERVAL_S", "Dashboard", "serve"]  # serve, the server it returns, and the CLI's switch interval

log = structlog.get_logger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
PAGES = {"/": "index.html", **{f"/{name}": name for name in (  # path -> file in STATIC_DIR
    "index.html", "app.js", "map.js", "dom.js", "charts.js", "flights.js", "commands.js", "style.css")}}
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8"}
TOKEN_PLACEHOLDER = "{{COMMAND_TOKEN}}"
# The page may load only from this server; inline script and style are refused, so
# even markup that slipped into the page could not run.
# Images may also be data: URLs (Leaflet's blank tile) and, when the user named one, come from
# the tile server (--tile-url): the map's only way off this machine, and only on request.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:{tiles}; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

# The interpreter hands its lock from a busy thread (a base-map view being drawn) to a waiting
# one after this long (Python's default 5 ms): a watcher's request, which waits for it a dozen
# times, is not held up by one heavy request. `serve` (cli.py) sets it for its process.
SWITCH_INTERVAL_S = 0.001
REFUSED_LINGER_S = 1.0  # a refused connection stays half-open this long, so its 503 is read, not reset
REFUSED_KEPT = 256  # refused connections lingering at most; beyond, the oldest is closed at once
# A crowd can have connections closed for room a thousand times a second: each is a debug line, and
# an info line says so when it starts again after this long without one (a transition, not a flood).
ROOM_QUIET_S = 60.0


class Dashboard(ThreadingHTTPServer):
    """The dashboard's HTTP server; `url` is where a browser on this machine finds it."""

    daemon_threads = True  # event streams never hold up shutdown
    block_on_close = False
    request_queue_size = 1024  # a burst of connections waits in the kernel to be served or refused (a full
    # backlog drops a newcomer's SYN, and its browser tries again only a second later)

    def __init__(self, db_path: Path, host: str, port: int, stop: threading.Event,
                 sessions: access.Sessions | None = None, chase: predict.Chase | None = None,
                 map_layers: MapLayers | None = None, limits: Limits | None = None,
                 allowed_hosts: Iterable[str] = (), flight_dbs: Iterable[Path] = ()):
        self.db_path = db_path
        self.flight_files = FlightFiles(db_path, flight_dbs)  # the other flights' databases, read only
        self.hosts = HostAllowList(host, allowed_hosts)
        self.limits = limits or Limits()
        self.slots = Slots(self.limits)
        self.waiting = Waiting(self.trusted)
        self.feeds = Feeds(self.slots, stop)
        self.refused: collections.deque[tuple[float, socket.socket]] = collections.deque()
        self.room_made_at = -ROOM_QUIET_S  # when a connection was last closed for room
        self.refusal = self._refusal_bytes()
        self.map_layers = map_layers or MapLayers()
        origin = self.map_layers.extra_img_origin
        self.csp = CSP.format(tiles=f" {origin}" if origin else "")
        self.stop = stop
        self.token = secrets.token_urlsafe(32)
        self.sessions = sessions or access.Sessions(None, time.monotonic)
        self.landing = predict.Landing(chase or predict.Chase())
        self.pages = {path: ((STATIC_DIR / name).read_bytes(), CONTENT_TYPES[Path(name).suffix])
                      for path, name in PAGES.items()}
        index, ctype = self.pages["/"]
        index = index.replace(TOKEN_PLACEHOLDER.encode(), self.token.encode())
        self.pages["/"] = self.pages["/index.html"] = (index, ctype)
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), Handler)

    # ------------------------------------------------------------- connection caps
    # process_request and service_actions run in the one thread that accepts connections.

    def process_request(self, request, client_address) -> None:
        client = client_address[0]
        # The operator's way in: a connection is accepted before its cookie can be read, so an
        # address a live session was used from is what the crowd cannot take (Limits.operator_reserve).
        full = self.slots.claim("connection", client, operator=self.sessions.seen_from(client))
        if full in (NETWORK, TOTAL) and self._made_room(client, full):
            full = None
        if full is not None:
            log.debug("connection refused", client=client, why=f"too many connections ({full})")
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread for it (RuntimeError: can't start new thread)
            self.slots.give("connection", client)
            self.shutdown_request(request)
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.give("connection", client_address[0])

    def _made_room(self, client: str, full: str) -> bool:
        """Every slot is taken (in all, or in `client`'s network: `full`) but `client` is within
        its own cap: its slot is taken past them and a slow or idle connection of another address
        (in its network, when that is what is full) is closed for it; or False (all are busy: the
        newcomer gets its 503)."""
        if self.slots.claim("connection", client, (TOTAL, NETWORK)) is not None:
            return False
        if self.waiting.close_one(client, network_of(client) if full == NETWORK else None):
            now = time.monotonic()
            quiet, self.room_made_at = now - self.room_made_at >= ROOM_QUIET_S, now
            (log.info if quiet else log.debug)("waiting connection closed to make room", client=client, full=full,
                                               closed=self.waiting.closed)
            return True
        self.slots.give("connection", client)
        return False

    def trusted(self, client: str) -> bool:
        """The station's own address, or one a live operator session was used from: its
        connections are never closed for room."""
        return is_station(client) or self.sessions.seen_from(client)

    def handle_error(self, request, client_address) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            # A client that went away or stalled (a phone losing the field network, a connection
            # closed to make room): its own affair, not a fault of the station's to log as one.
            log.debug("client gone", client=client_address[0], error=type(error).__name__)
            return
        log.warning("request failed", client=client_address[0], exc_info=True)

    def _refusal_bytes(self) -> bytes:
        body = json.dumps({"error": "the dashboard is serving too many connections (from this address or its "
                                    f"network, or in all): try again in {self.limits.retry_after_s} s"}).encode()
        return (f"HTTP/1.1 503 Service Unavailable\r\nRetry-After: {self.limits.retry_after_s}\r\n"
                f"Content-Type: application/json; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
                "Cache-Control: no-store\r\nConnection: close\r\n\r\n").encode() + body

    def _refuse(self, sock: socket.socket) -> None:
        """Answer 503 without a thread, never waiting: the request is not read (what already
        came is dropped), the answer sent and the connection half-closed, then left to linger
        a moment before it is closed (closing it with unread bytes would reset it, and the
        client might never see the 503)."""
        try:
            sock.setblocking(False)
            self._drain(sock)
            sock.send(self.refusal)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            sock.close()
            return
        self.refused.append((time.monotonic(), sock))
        while len(self.refused) > REFUSED_KEPT:
            self.refused.popleft()[1].close()

    @staticmethod
    def _drain(sock: socket.socket) -> None:
        try:
            while sock.recv(65536):
                pass
        except OSError:  # nothing more for now (BlockingIOError), or gone
            pass

    def service_actions(self) -> None:
        super().service_actions()
        now = time.monotonic()
        while self.refused and now - self.refused[0][0] >= REFUSED_LINGER_S:
            sock = self.refused.popleft()[1]
            self._drain(sock)
            sock.close()

    def server_close(self) -> None:
        super().server_close()
        while self.refused:
            self.refused.popleft()[1].close()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

    @property
    def loopback_only(self) -> bool:
        """Whether it listens on a loopback address only: then, with no operator password,
        this machine's own browser may queue commands."""
        return is_loopback(self.server_address[0])


def serve(db_path: str | Path, host: str = "127.0.0.1", port: int = 8080,
          stop_event: threading.Event | None = None, sessions: access.Sessions | None = None,
          chase: predict.Chase | None = None, map_layers: MapLayers | None = None,
          limits: Limits | None = None, allowed_hosts: Iterable[str] = (),
          flight_dbs: Iterable[str | Path] = ()) -> Dashboard:
    """Start the dashboard in background threads and return its server (`.url`,
    `.server_address`; port 0 picks a free one). Setting `stop_event` shuts it down and
    ends every event stream within a poll. The database is created if missing (as the
    listener would), so the page can be opened before the first frame is heard;
    StoreError if it is not a ground database, OSError if the address cannot be bound.
    `sessions`: who may queue commands (access.py); None: nobody can log in. `chase`: the
    prediction's settings and the station's position (predict.Chase). `map_layers`: what the
    map is drawn from (maps.MapLayers; default: the base map alone). `limits`: the caps on
    connections and event streams and the timeouts (Limits; default: Limits()). `allowed_hosts`:
    names it answers to besides the loopback names and `host` (hosts.HostAllowList). `flight_dbs`:
    followed flights' databases kept elsewhere than beside `db_path` (flights.FlightFiles finds
    those beside it); they are only ever read, and one missing is shown with its error."""
    db_path = Path(db_path)
    Store(db_path).close()  # makes or migrates the schema, or says why this file will not do
    stop = stop_event or threading.Event()
    server = Dashboard(db_path, host, port, stop, sessions, chase, map_layers, limits, allowed_hosts,
                       [Path(p) for p in flight_dbs])
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="dashboard",
                     daemon=True).start()

    def shut_down() -> None:
        stop.wait()
        server.feeds.end_all()
        server.shutdown()
        server.server_close()

    threading.Thread(target=shut_down, name="dashboard-stop", daemon=True).start()
    log.info("dashboard serving", url=server.url, db=str(db_path))
    return server
