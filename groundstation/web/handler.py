"""The dashboard's requests: each routed to what answers it (the page, the API's JSON, the map,
the live feed, a login, a command), after the checks every request passes (the Host it names,
and for a POST the token, the origin and a JSON body), with the deadlines of connections.py
and the caps of limits.py. server.py's docstring lists the endpoints and says who may write."""

from __future__ import annotations

import hmac
import io
import json
import math
import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import structlog

from ..store import GroundReader, Store, StoreError
from . import access, events
from .api import (
    commands_json,
    link,
    outbox_json,
    parse_command,
    prediction_json,
    record_json,
    summary,
    telemetry_json,
)
from .connections import RequestReader
from .flights import conversation_json, flights_json
from .hosts import is_loopback
from .limits import ADDRESS, NETWORK, TOTAL
from .maps import MapRequestError

log = structlog.get_logger(__name__)

TOKEN_HEADER = "X-Stratoecho-Token"
MAX_ROWS = 20000  # rows per JSON answer
MAX_BODY_BYTES = 4096  # a command's JSON, or a login's
RECORD_KIND = re.compile(r"[a-z_]{1,32}")
IMAGE_PATH = re.compile(r"/api/images/(\d{1,10})/(\d{1,10})\.jpg")
FULL_SAYS = {ADDRESS: "from this address", NETWORK: "from this network", TOTAL: "in all"}  # a cap reached


class RequestError(Exception):
    """A request this server refuses: `status` and a message the page shows (`retry_after`:
    seconds, sent as Retry-After)."""

    def __init__(self, status: HTTPStatus, message: str, retry_after: int | None = None):
        self.retry_after = retry_after
        super().__init__(message)
        self.status = status


class Handler(BaseHTTPRequestHandler):
    """One connection to the dashboard: its requests routed to what answers them."""

    server: Any  # the Dashboard (server.py) that made it: its limits, sessions, hosts, pages, token
    protocol_version = "HTTP/1.1"
    server_version = "stratoecho-dashboard"
    sys_version = ""

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        log.debug("http", client=self.client_address[0], request=format % args)

    def setup(self) -> None:
        super().setup()
        server = self.server
        self.connection.settimeout(server.limits.idle_s)
        self.incoming = RequestReader(self.connection, self.client_address[0], server.limits, server.slots,
                                    server.waiting, server.sessions.seen_from)
        self.rfile.close()  # the base class's reader, replaced (it holds a reference on the socket)
        self.rfile = io.BufferedReader(self.incoming)

    def handle_one_request(self) -> None:
        self.incoming.wait()  # may be closed to make room until its first byte comes
        try:
            super().handle_one_request()
        finally:
            self.incoming.done()

    def parse_request(self) -> bool:
        self.incoming.started()  # its first line came (perhaps already read with the last request)
        return super().parse_request()

    # ------------------------------------------------------------- dispatch

    def do_GET(self) -> None:
        self._handle(self._get)

    def do_HEAD(self) -> None:
        self.send_error(HTTPStatus.METHOD_NOT_ALLOWED)

    def do_POST(self) -> None:
        self._handle(self._post)

    def _handle(self, method) -> None:
        try:
            if self.command != "POST":
                self.incoming.done()  # read whole: never closed for room, its slow slot (if any) back
            self._refuse_other_hosts()
            if self.server.sessions.can_log_in and self._operator_seconds_left() is not None:
                self.incoming.kept = True  # the operator's connection: never the one closed for room
            method(urlsplit(self.path))
        except RequestError as e:
            if self.command == "POST":
                self.close_connection = True  # a refused body may be unread: never parse it as a request
            headers = None
            if e.retry_after is not None:  # over a cap: the connection too is given back
                self.close_connection = True
                headers = {"Retry-After": str(e.retry_after), "Connection": "close"}
            self._json({"error": str(e)}, e.status, headers=headers)
        except (sqlite3.Error, StoreError) as e:  # busy, or moved or replaced since the server started
            log.warning("database unavailable", error=str(e))
            self._json({"error": f"database unavailable: {e}"}, HTTPStatus.SERVICE_UNAVAILABLE)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the browser went away

    def _get(self, url) -> None:
        path, query = url.path, parse_qs(url.query)
        if path in self.server.pages:
            body, ctype = self.server.pages[path]
            self._send(body, ctype, cache="no-cache")
            return
        if path == "/favicon.ico":
            self._send(b"", "image/x-icon", status=HTTPStatus.NO_CONTENT)
            return
        if path.startswith(("/vendor/", "/tiles/", "/api/map", "/api/basemap")):
            self._map(path, query)
            return
        if path == "/api/events":
            self._events(query)
            return
        if path == "/api/session":
            left = self._operator_seconds_left()
            self._json({"operator": left is not None, "expires_in": None if left == math.inf else left,
                        "login": self.server.sessions.can_log_in})
            return
        if path == "/api/commands":  # what the operator may queue: no secret, so every watcher may read it
            self._json(commands_json())
            return
        if path in ("/api/flights", "/api/conversation"):  # every flight's database, each opened on its own
            files = self.server.flight_files
            self._json(flights_json(files) if path == "/api/flights" else conversation_json(files))
            return
        if match := IMAGE_PATH.fullmatch(path):
            with self._reader() as db:
                jpeg = db.pictures.image(int(match[1]), int(match[2]))
            if jpeg is None:
                raise RequestError(HTTPStatus.NOT_FOUND, f"no image record {match[1]}/{match[2]}")
            self._send(jpeg, "image/jpeg", cache="max-age=86400")  # a record never changes
            return
        with self._reader() as db:
            if path == "/api/summary":
                answer = summary(db)
            elif path == "/api/telemetry":
                answer = [telemetry_json(r) for r in db.track.telemetry_since(_since(query), MAX_ROWS)]
            elif path == "/api/musings":
                paths = db.link.heard_paths("musing")  # which way each came: ["home via NEAR1"]
                answer = [{**record_json(r), "paths": paths.get(("musing", r.boot, r.seq), [])}
                          for r in db.records.since(_since(query), "musing", MAX_ROWS)]
            elif path == "/api/records":
                kind = query.get("kind", [""])[0]
                if kind and not RECORD_KIND.fullmatch(kind):
                    raise RequestError(HTTPStatus.BAD_REQUEST, f"kind {kind!r} is not a record kind")
                answer = [record_json(r) for r in db.records.since(_since(query), kind or None, MAX_ROWS)]
            elif path == "/api/link":
                answer = link(db)
            elif path == "/api/outbox":
                answer = outbox_json(db.outbox.newest())
            elif path == "/api/prediction":
                answer = prediction_json(self.server.landing, db)
            else:
                raise RequestError(HTTPStatus.NOT_FOUND, f"nothing at {path}")
        self._json(answer)

    def _map(self, path: str, query: dict) -> None:
        layers = self.server.map_layers
        try:
            if path == "/api/map":
                self._json(layers.config())
            elif path == "/api/basemap":
                self._send(layers.basemap_json(query), "application/json; charset=utf-8", cache="max-age=3600")
            elif path.startswith("/vendor/"):
                body, ctype = layers.vendor_file(path)
                self._send(body, ctype, cache="max-age=86400")  # pinned versions: the bytes never change
            else:
                found = layers.tile(path)
                if found is None:
                    self._send(b"", "text/plain; charset=utf-8", status=HTTPStatus.NOT_FOUND, cache="max-age=3600")
                    return
                body, ctype, encoding = found
                self._send(body, ctype, cache="max-age=86400",
                           headers={"Content-Encoding": encoding} if encoding else None)
        except MapRequestError as e:
            raise RequestError(e.status, str(e), e.retry_after) from None

    def _post(self, url) -> None:
        if url.path not in ("/api/commands", "/api/login", "/api/logout"):
            raise RequestError(HTTPStatus.NOT_FOUND, f"nothing to post to at {url.path}")
        self._refuse_cross_site()
        body = self._body()  # read whole, even where unused: the connection goes on after it
        if url.path == "/api/logout":
            self.server.sessions.log_out(self._session_id())
            self._json({"operator": False}, headers={"Set-Cookie": _cookie("", 0)})
            return
        if url.path == "/api/login":
            self._log_in(body)
            return
        if self._operator_seconds_left() is None:
            raise RequestError(HTTPStatus.FORBIDDEN, self._read_only_why())
        try:
            cmd, what = parse_command(body)
        except ValueError as e:  # the command's own checks
            raise RequestError(HTTPStatus.BAD_REQUEST, str(e)) from None
        with Store(self.server.db_path) as store:
            row = store.outbox.queue(cmd.command_id, cmd.pack(), what)
        log.info("command queued", id=row, what=what, client=self.client_address[0])
        self._json({"id": row, "command": int(cmd.command_id), "what": what, "state": "queued"}, HTTPStatus.CREATED)

    def _body(self) -> object:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "a request needs its Content-Length") from None
        if not 0 < length <= MAX_BODY_BYTES:
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"a request is 1..{MAX_BODY_BYTES} bytes of JSON")
        try:
            return json.loads(self.rfile.read(length))
        except ValueError as e:  # JSON and UTF-8 alike
            raise RequestError(HTTPStatus.BAD_REQUEST, str(e)) from None
        finally:
            self.incoming.done()

    def _log_in(self, body: object) -> None:
        password = body.get("password") if isinstance(body, dict) else None
        if not isinstance(password, str) or not password:
            raise RequestError(HTTPStatus.BAD_REQUEST, 'a login is {"password": "..."}')
        sessions, client = self.server.sessions, self.client_address[0]
        if not sessions.can_log_in:
            raise RequestError(HTTPStatus.FORBIDDEN, self._read_only_why())
        try:
            session = sessions.log_in(password, client)
        except access.TooManyTries as e:
            log.warning("operator login refused", client=client, why="too many tries", held=e.held,
                        wait_s=e.retry_after)
            raise RequestError(HTTPStatus.TOO_MANY_REQUESTS, str(e), retry_after=e.retry_after) from None
        if session is None:
            log.warning("operator login failed", client=client)
            raise RequestError(HTTPStatus.FORBIDDEN, "wrong password")
        log.info("operator logged in", client=client)
        self._json({"operator": True, "expires_in": sessions.session_s},
                   headers={"Set-Cookie": _cookie(session.id, sessions.session_s)})

    def _session_id(self) -> str | None:
        try:
            morsel = SimpleCookie(self.headers.get("Cookie", "")).get(access.COOKIE)
        except CookieError:
            return None
        return morsel.value if morsel is not None else None

    def _operator_seconds_left(self) -> float | None:
        """Seconds left of this request's operator session; inf on a loopback dashboard without
        a password, for this machine's own requests; None: it may not queue commands."""
        sessions = self.server.sessions
        if not sessions.can_log_in:
            local = self.server.loopback_only and is_loopback(self.client_address[0])
            return math.inf if local else None
        return sessions.valid(self._session_id(), self.client_address[0])  # its address remembered

    def _read_only_why(self) -> str:
        if self.server.sessions.can_log_in:
            return "queuing commands needs the operator: log in with the station's operator password"
        return ("this dashboard is read-only: no operator password is set at the station "
                "(`python -m groundstation operator-password`, then restart `serve`)")

    def _refuse_other_hosts(self) -> None:
        """403 for a request to a name the dashboard does not answer to (DNS rebinding, hosts.py),
        or with more than one Host header (which one would a proxy have read?)."""
        hosts = self.headers.get_all("Host") or []
        host = hosts[0] if len(hosts) == 1 else None
        if not self.server.hosts.allows(host):
            log.info("request refused", client=self.client_address[0], why="host not allowed",
                     host=(hosts[0] if hosts else "")[:80])
            raise RequestError(HTTPStatus.FORBIDDEN, self.server.hosts.refusal(host))

    def _refuse_cross_site(self) -> None:
        origin = self.headers.get("Origin")
        if origin is not None and not self.server.hosts.origin_allowed(origin, self.headers["Host"]):
            raise RequestError(HTTPStatus.FORBIDDEN, f"cross-site request from {origin[:80]} refused")
        if self.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            raise RequestError(HTTPStatus.FORBIDDEN, "cross-site request refused")
        token = self.headers.get(TOKEN_HEADER, "")
        if not hmac.compare_digest(token.encode(), self.server.token.encode()):
            raise RequestError(HTTPStatus.FORBIDDEN, f"missing or wrong {TOKEN_HEADER}: reload the dashboard")
        if self.headers.get("Content-Type", "").partition(";")[0].strip() != "application/json":
            raise RequestError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "a command is sent as application/json")

    # ------------------------------------------------------------- the live feed

    def _events(self, query: dict) -> None:
        cursor = self._stream_cursor(query)
        # The operator's feed is kept room for past the total and its network's cap (a session,
        # not an address: the field network's feeds filling every slot once left the operator's
        # phone without one); a newcomer finding all taken may have another network's closed for
        # it (limits.Feeds).
        operator = self.server.sessions.can_log_in and self._operator_seconds_left() is not None
        feed = self.server.feeds.open(self.client_address[0], operator)
        if isinstance(feed, str):
            raise RequestError(HTTPStatus.SERVICE_UNAVAILABLE,
                               f"too many live feeds open ({FULL_SAYS[feed]}): close a tab, or wait",
                               retry_after=self.server.limits.retry_after_s)
        try:
            self._open_stream(cursor, feed.ended)
        finally:
            self.server.feeds.close(feed)

    def _open_stream(self, cursor: list[int], ended: threading.Event) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        self.wfile.write(b"retry: 2000\n\n")
        self.wfile.flush()
        try:
            self._stream(cursor, ended)
        except (sqlite3.Error, StoreError) as e:  # the headers are gone: end the stream, the browser reconnects
            log.warning("event stream ended", error=str(e))

    def _stream(self, cursor: list[int], ended: threading.Event) -> None:
        with self._reader() as db:
            events.stream(self.wfile, db, cursor, ended, watch=self.server.flight_files.signature)

    def _stream_cursor(self, query: dict) -> list[int]:
        """Where the stream starts: the browser's Last-Event-ID when it reconnects, else the
        page's ?telemetry=&records= (the cursor of the summary it loaded first)."""
        last = self.headers.get("Last-Event-ID", "")
        if re.fullmatch(r"\d{1,18}\.\d{1,18}", last):
            return [int(x) for x in last.split(".")]
        return [_since(query, "telemetry"), _since(query, "records")]

    # ------------------------------------------------------------- helpers

    @contextmanager
    def _reader(self) -> Iterator[GroundReader]:
        db = GroundReader.open(self.server.db_path)
        try:
            yield db
        finally:
            db.close()

    def _json(self, data, status: HTTPStatus = HTTPStatus.OK, headers: dict | None = None) -> None:
        body = json.dumps(data, ensure_ascii=False, allow_nan=False).encode("utf-8")
        self._send(body, "application/json; charset=utf-8", status=status, headers=headers)

    def _send(self, body: bytes, ctype: str, status: HTTPStatus = HTTPStatus.OK, cache: str = "no-store",
              headers: dict | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", ctype)
        if status != HTTPStatus.NO_CONTENT:
            self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        if ctype.startswith("text/html"):
            self.send_header("Content-Security-Policy", self.server.csp)
            self.send_header("X-Frame-Options", "DENY")
        self.end_headers()
        if status != HTTPStatus.NO_CONTENT:
            self.wfile.write(body)


def _since(query: dict, name: str = "since") -> int:
    """The row id a query asks to go on from (`?since=`, or `name`); 0 when it names none."""
    text = query.get(name, ["0"])[0]
    if not text.isdigit() or len(text) > 18:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"{name} must be a row id (a whole number), got {text!r}")
    return int(text)


def _cookie(session_id: str, max_age: float) -> str:
    # HttpOnly: no script reads it; SameSite=Strict: no other site's page sends it. Not Secure:
    # the dashboard speaks plain HTTP on a field network (docs/ground.md says what that means).
    return f"{access.COOKIE}={session_id}; Path=/; Max-Age={int(max_age)}; HttpOnly; SameSite=Strict"
