"""`python -m groundstation serve`: the web dashboard, for a field with no internet.

Standard library only (`http.server`, `sqlite3`); the page, its script and its style
sheet come from `static/` beside this file, and nothing else is ever fetched: no
CDN, no fonts, no map tiles (the track is drawn as SVG from the positions).

Endpoints (all JSON unless said otherwise; ``since`` is a row id, rows after it)::

    GET  /                          the page (with this server's command token in a <meta>)
    GET  /app.js, /style.css        its script and style
    GET  /api/summary               counts, cursor (newest row ids), launch, latest position, latest health
    GET  /api/telemetry?since=ID    telemetry rows, each with `t`: the sentence time as a full UTC date
    GET  /api/musings?since=ID      musings
    GET  /api/records?kind=K&since=ID   records of one kind: health `fields`, image `image` (its URL)
    GET  /api/images/BOOT/SEQ.jpg   an image record's JPEG (image/jpeg)
    GET  /api/link                  frames heard and bad per minute, telemetry lost per minute,
                                    per station (frames, signal, records heard), missing records
    GET  /api/outbox                commands queued for the payload, queued or sent
    GET  /api/prediction            the predicted landing (groundstation/predict.py) with its 95 % ellipse,
                                    the burst, the rates, and with `serve --station` distance, bearing and
                                    elevation from the station (and from every station whose position
                                    the database holds, `stations`); null until there is enough track
    GET  /api/events                Server-Sent Events: `telemetry` and `record` (lists of new rows),
                                    `outbox` (the whole outbox when it changes), `link` (frames grew)
    GET  /api/session               {"operator": may this browser queue commands, "expires_in": its
                                    session's seconds left, "login": can anyone log in here}
    POST /api/login                 {"password": ...}: an operator session (a cookie), or 403;
                                    429 with Retry-After while wrong passwords from this address,
                                    or for the account from any, must wait (access.LoginLimits)
    POST /api/logout                ends this browser's operator session
    POST /api/commands              queue a command (JSON: command = ping | set_mode |
                                    set_intervals | memory_note, and its arguments); operator only

Reading: every request (and every event stream) opens its own read-only
`reading.GroundReader`; the database is in WAL mode, so the dashboard reads while the listener
writes, and never blocks it. The event stream asks SQLite once a second whether
anyone committed (``PRAGMA data_version``) and only then looks for rows past its
cursor (the newest telemetry and record ids it sent, also its SSE event id, so a
browser that reconnects resumes where it was).

Writing: only ``POST /api/commands``, which validates the command with the wire
format's own classes (`stratoecho.wire.uplink`) and queues it with
`Store.queue_command`. The listener holds the key and the counter: it signs and
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

import bisect
import collections
import hmac
import io
import ipaddress
import json
import math
import re
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import structlog

from stratoecho import geo
from stratoecho.wire.sentence import telemetry_datetime
from stratoecho.wire.uplink import MemoryNote, Ping, PowerMode, SetIntervals, SetMode

from .. import predict
from ..db import Store, StoreError, utc_now
from ..exports.base import utc_time
from ..reading import GroundReader, OutboxRow, RecordRow, SentenceHeard, TelemetryRow
from . import access
from .hosts import HostAllowList
from .maps import MapLayers, MapRequestError

log = structlog.get_logger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
PAGES = {  # path -> (file in STATIC_DIR, content type)
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/map.js": ("map.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
TOKEN_PLACEHOLDER = "{{COMMAND_TOKEN}}"
TOKEN_HEADER = "X-Stratoecho-Token"
# The page may load only from this server; inline script and style are refused, so
# even markup that slipped into the page could not run.
# Images may also be data: URLs (Leaflet's blank tile) and, when the user named one, come from
# the tile server (--tile-url): the map's only way off this machine, and only on request.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:{tiles}; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

POLL_S = 1.0  # how often an event stream asks the database whether anything was committed
KEEPALIVE_S = 15.0  # an idle event stream sends a comment this often (finds closed browsers)
BATCH_ROWS = 500  # rows per event; a stream far behind catches up without waiting a poll
MAX_ROWS = 20000  # rows per JSON answer
MAX_BODY_BYTES = 4096  # a command's JSON, or a login's
LINK_MINUTES = 720  # per-minute link statistics cover the last 12 hours heard
MISSING_RANGES = 20  # ranges of missing seqs listed per stream (the count covers all)

# Health fields that name the newest record of a stream the payload made this boot:
# a record lost after the last one heard still counts as missing.
ANNOUNCED = {"musing_seq": "musing", "event_seq": "event", "api_request_seq": "api_request",
             "image_seq": "image"}
RECORD_KIND = re.compile(r"[a-z_]{1,32}")
IMAGE_PATH = re.compile(r"/api/images/(\d{1,10})/(\d{1,10})\.jpg")
COMMANDS = ("ping", "set_mode", "set_intervals", "memory_note")
# The interpreter hands its lock from a busy thread (a base-map view being drawn) to a waiting
# one after this long (Python's default 5 ms): a watcher's request, which waits for it a dozen
# times, is not held up by one heavy request. `serve` (cli.py) sets it for its process.
SWITCH_INTERVAL_S = 0.001
REFUSED_LINGER_S = 1.0  # a refused connection stays half-open this long, so its 503 is read, not reset
REFUSED_KEPT = 256  # refused connections lingering at most; beyond, the oldest is closed at once


@dataclass(frozen=True)
class Limits:
    """What one dashboard lets its clients hold (docs/ground.md "Limits"). A client is one IP
    address. Every connection is a thread and a file descriptor, an event stream also a
    database reader (up to 3 more descriptors): the totals keep it well inside the unit's
    LimitNOFILE and TasksMax. Beyond a cap the answer is 503 with Retry-After, at once."""

    connections: int = 512  # open connections in all
    client_connections: int = 32  # from one address (a browser opens ~6; a field NAT a few browsers)
    streams: int = 128  # event streams (/api/events) in all
    client_streams: int = 4  # from one address (one per open tab)
    idle_s: float = 30.0  # waiting for a request's first line (a kept-alive connection too), or for any byte
    header_s: float = 10.0  # a request's headers and body, from its first line
    retry_after_s: int = 5  # what a refused client is told to wait


class _Slots:
    """Counts of what each client holds, of each kind, under one lock."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.lock = threading.Lock()
        self.total = {"connection": 0, "stream": 0}
        self.per_client: dict[tuple[str, str], int] = {}

    def take(self, kind: str, client: str) -> bool:
        cap, client_cap = ((self.limits.connections, self.limits.client_connections) if kind == "connection"
                           else (self.limits.streams, self.limits.client_streams))
        with self.lock:
            held = self.per_client.get((kind, client), 0)
            if self.total[kind] >= cap or held >= client_cap:
                return False
            self.total[kind] += 1
            self.per_client[(kind, client)] = held + 1
            return True

    def give(self, kind: str, client: str) -> None:
        with self.lock:
            self.total[kind] -= 1
            held = self.per_client.pop((kind, client)) - 1
            if held:
                self.per_client[(kind, client)] = held


class _DeadlineReader(io.RawIOBase):
    """The request side of a connection: every read waits at most `idle_s`, and none goes on
    past `deadline` (a client trickling a byte at a time cannot hold its thread)."""

    def __init__(self, sock: socket.socket, idle_s: float):
        super().__init__()
        self.sock, self.idle_s = sock, idle_s
        self.deadline = math.inf

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request took too long")
        self.sock.settimeout(min(self.idle_s, left))
        try:
            return self.sock.recv_into(buffer)
        finally:
            self.sock.settimeout(self.idle_s)  # what writes wait at most


class RequestError(Exception):
    """A request this server refuses: `status` and a message the page shows (`retry_after`:
    seconds, sent as Retry-After)."""

    def __init__(self, status: HTTPStatus, message: str, retry_after: int | None = None):
        self.retry_after = retry_after
        super().__init__(message)
        self.status = status


# --------------------------------------------------------------------------- reading


def _finite(value):
    """JSON has no NaN or infinity: a health field that held one reads as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def sentence_time(hms: str, received_at: str) -> str:
    """A telemetry sentence's HH:MM:SS as a full UTC time (ISO), dated nearest to when it was
    received (stratoecho.wire.sentence.telemetry_datetime); `received_at` itself if either is
    unreadable."""
    try:
        return telemetry_datetime(hms, utc_time(received_at)).isoformat()
    except ValueError:  # WireError too
        return received_at


def _holes(seqs: list[int], last_known: int) -> tuple[int, list[list[int]]]:
    """Missing numbers between the first of sorted `seqs` and `last_known`: (count, first ranges)."""
    count, ranges = 0, []
    for prev, nxt in zip(seqs, [*seqs[1:], last_known + 1]):
        if nxt > prev + 1:
            count += nxt - prev - 1
            if len(ranges) < MISSING_RANGES:
                ranges.append([prev + 1, nxt - 1])
    return count, ranges


def telemetry_json(row: TelemetryRow) -> dict:
    return {**row.as_dict(), "t": sentence_time(row.time, row.received_at)}


def record_json(row: RecordRow) -> dict:
    """A record as the page reads it: `fields` where it has them, `image` (its URL) for a picture."""
    out = {"id": row.id, "kind": row.kind, "boot": row.boot, "seq": row.seq, "created": row.created,
           "text": row.text, "received_at": row.received_at, "authentic": row.authentic}
    if row.fields is not None:
        out["fields"] = _finite(row.fields)
    if row.jpeg_bytes is not None:
        out["image"] = {"url": f"/api/images/{row.boot}/{row.seq}.jpg", "bytes": row.jpeg_bytes}
    return out


def outbox_json(rows: list[OutboxRow]) -> list[dict]:
    return [{"id": r.id, "queued_at": r.queued_at, "command": r.command, "what": r.what, "sent_at": r.sent_at,
             "state": r.state} for r in rows]


def prediction_json(landing: predict.Landing, db: GroundReader) -> dict | None:
    """/api/prediction: the landing as `predict.Prediction` has it, its UTC times, and the
    crew's numbers from the station when one was given (`station`) and from every station
    the database knows the position of (`stations`)."""
    p = landing(db.telemetry())
    if p is None:
        return None
    as_of = datetime.fromtimestamp(p.t_s, timezone.utc)
    answer = {
        "phase": p.phase, "lat": round(p.lat, 6), "lon": round(p.lon, 6),
        "ellipse": {"semi_major_m": round(p.ellipse.semi_major_m), "semi_minor_m": round(p.ellipse.semi_minor_m),
                    "bearing_deg": round(p.ellipse.bearing_deg, 1)},
        "as_of": as_of.isoformat(), "landing_in_s": round(p.landing_in_s),
        "landing_at": (as_of + timedelta(seconds=p.landing_in_s)).isoformat(),
        "burst_alt_m": round(p.burst_alt_m), "burst_seen": p.burst_seen,
        "burst_in_s": None if p.burst_in_s is None else round(p.burst_in_s),
        "vertical_rate_m_s": round(p.vertical_rate_m_s, 2), "descent_rate_m_s": round(p.descent_rate_m_s, 2),
        "descent_rate_measured": p.descent_rate_measured, "ground_alt_m": round(p.ground_alt_m), "layers": p.layers,
        "station": None,
    }
    home, latest = landing.chase.home, db.latest_position()
    if home is not None:
        answer["station"] = _seen_from(*home, p, latest)
    # every station that said where it is (listen --station-position, shared over the network)
    answer["stations"] = [{"name": s.name, **_seen_from(s.lat, s.lon, s.alt_m, p, latest)} for s in db.stations()]
    return answer


def _seen_from(lat: float, lon: float, alt: float, p: predict.Prediction, latest: TelemetryRow | None) -> dict:
    """The crew's numbers from one place: to the landing, and to the balloon with its elevation."""
    seen = {"lat": lat, "lon": lon, "alt_m": alt,
            "landing": {"distance_m": round(geo.distance_m(lat, lon, p.lat, p.lon)),
                        "bearing_deg": round(geo.bearing_deg(lat, lon, p.lat, p.lon), 1)}}
    if latest is not None:
        seen["balloon"] = {
            "distance_m": round(geo.distance_m(lat, lon, latest.lat, latest.lon)),
            "bearing_deg": round(geo.bearing_deg(lat, lon, latest.lat, latest.lon), 1),
            "elevation_deg": round(geo.elevation_deg(lat, lon, alt, latest.lat, latest.lon, latest.alt), 1)}
    return seen


def _position(row: TelemetryRow | None) -> dict | None:
    if row is None:
        return None
    return {"boot": row.boot, "seq": row.seq, "time": row.time, "lat": row.lat, "lon": row.lon, "alt": row.alt,
            "received_at": row.received_at, "t": sentence_time(row.time, row.received_at)}


def summary(db: GroundReader) -> dict:
    counts, cursor, health = db.counts(), db.newest_ids(), db.latest_record("health")
    return {
        "counts": {"frames": counts.frames, "frames_bad": counts.frames_bad, "telemetry": counts.telemetry,
                   **{f"{kind}s": counts.of(kind) for kind in ("musing", "event", "image")},
                   "health": counts.of("health")},
        "cursor": {"telemetry": cursor.telemetry, "records": cursor.records},
        "callsign": db.callsign(),
        "launch": _position(db.first_position()),
        "latest": _position(db.latest_position()),
        "max_alt": db.max_altitude(),
        "health": record_json(health) if health else None,
        "last_heard": db.last_heard(),
        "outbox_queued": db.commands_queued(),
        "server_time": utc_now(),
    }


def flight_offsets(db: GroundReader) -> dict[str, float]:
    """For each minute of reception (YYYY-MM-DDTHH:MM) that heard telemetry, the median of
    (sentence time - time heard) in seconds: what moves a minute of reception onto flight time.
    Live it is a few seconds; on a replayed or imported database it is the days in between."""
    by_minute: dict[str, list[float]] = {}
    for r in db.telemetry():
        try:
            heard = datetime.fromisoformat(r.received_at)
            sent = datetime.fromisoformat(sentence_time(r.time, r.received_at))
        except ValueError:
            continue
        if heard.tzinfo is None:
            heard = heard.replace(tzinfo=timezone.utc)
        if sent.tzinfo is None:
            sent = sent.replace(tzinfo=timezone.utc)
        by_minute.setdefault(r.received_at[:16], []).append((sent - heard).total_seconds())
    return {m: sorted(v)[len(v) // 2] for m, v in by_minute.items()}


def _on_flight_time(minute: str, offsets: dict[str, float], known: list[str]) -> str:
    """The minute of reception `minute` as a flight time (ISO, UTC): moved by its own offset, or
    by that of the nearest minute that heard telemetry; unmoved when none did."""
    start = datetime.fromisoformat(minute + ":00").replace(tzinfo=timezone.utc)
    if not known:
        return start.isoformat()
    i = bisect.bisect_left(known, minute)
    near = min(known[max(i - 1, 0):i + 1], key=lambda k: abs((datetime.fromisoformat(k + ":00").replace(
        tzinfo=timezone.utc) - start).total_seconds()))
    return (start + timedelta(seconds=offsets[near])).isoformat()


def link(db: GroundReader) -> dict:
    """Frames and telemetry lost per minute, per station figures, and the records still missing.
    Each minute is the minute the frames were heard, with `t`, that minute on flight time (the
    sentences' own clock), where the page draws it beside the other charts."""
    offsets = flight_offsets(db)
    known = sorted(offsets)
    minutes = {m.minute: {"minute": m.minute, "t": _on_flight_time(m.minute, offsets, known), "frames": m.frames,
                          "bad": m.bad, "rssi_dbm": m.rssi_dbm, "snr_db": m.snr_db, "telemetry": 0,
                          "telemetry_missing": 0}
               for m in db.frames_per_minute(LINK_MINUTES)}
    # A sentence is one frame: the holes in its numbers are frames lost, minute by minute.
    prev: SentenceHeard | None = None
    seqs: dict[int, list[int]] = {}
    for s in db.sentences():
        seqs.setdefault(s.boot, []).append(s.seq)
        minute = minutes.get(s.received_at[:16])
        if minute is not None:
            minute["telemetry"] += 1
            if prev is not None and prev.boot == s.boot:
                minute["telemetry_missing"] += s.seq - prev.seq - 1
        prev = s
    heard = db.records_heard_per_station()
    stations = [
        {"station": s.station, "frames": s.frames, "bad": s.bad, "rssi_dbm": s.rssi_dbm, "snr_db": s.snr_db,
         "last_rssi_dbm": s.last_rssi_dbm, "last_heard": s.last_heard, "records_heard": heard.get(s.station, 0)}
        for s in sorted(db.station_stats(), key=lambda s: -s.frames)
    ]
    streams = {("telemetry", boot): s for boot, s in seqs.items()}
    streams.update(db.record_numbers(except_kinds=("health",)))
    return {"minutes": list(minutes.values()), "stations": stations,
            "missing": missing(streams, db.records("health"))}


def missing(streams: dict[tuple[str, int], list[int]], health: list[RecordRow]) -> list[dict]:
    """Per (kind, boot): records between the first heard and the newest known (heard, or announced
    by a health record of that boot) that never arrived."""
    announced: dict[tuple[str, int], int] = {}
    for record in health:
        for name, kind in ANNOUNCED.items():
            value = (record.fields or {}).get(name)
            key = (kind, record.boot)
            if isinstance(value, int) and key in streams:  # before the first heard: unknowable
                announced[key] = max(announced.get(key, 0), value)
    out = []
    for (kind, boot), seqs in sorted(streams.items()):
        last = max(seqs[-1], announced.get((kind, boot), 0))
        count, ranges = _holes(seqs, last)
        out.append({"kind": kind, "boot": boot, "first": seqs[0], "last": last, "heard": len(seqs),
                    "missing": count, "ranges": ranges})
    return out


# --------------------------------------------------------------------------- commands


def parse_command(body: object) -> tuple[Ping | SetMode | SetIntervals | MemoryNote, str]:
    """A command from the page's JSON, validated by the wire format's own classes, and the line
    the outbox shows for it. ValueError says what is wrong."""
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    name = body.get("command")
    if name == "ping":
        nonce = body.get("nonce", secrets.randbelow(1 << 16))
        cmd = Ping(nonce)
        return cmd, f"ping (nonce {cmd.nonce})"
    if name == "set_mode":
        mode = body.get("mode")
        if not isinstance(mode, str) or mode.upper() not in PowerMode.__members__:
            raise ValueError(f"mode must be one of {', '.join(m.lower() for m in PowerMode.__members__)}, got {mode!r}")
        cmd = SetMode(PowerMode[mode.upper()])
        return cmd, f"set mode {cmd.mode.name.lower()}"
    if name == "set_intervals":
        cmd = SetIntervals(body.get("telemetry_s"), body.get("musing_s"))
        return cmd, f"set intervals: telemetry every {cmd.telemetry_s} s, musing every {cmd.musing_s} s"
    if name == "memory_note":
        text = body.get("text")
        if not isinstance(text, str):
            raise ValueError("a memory note needs its text")
        cmd = MemoryNote(text)
        return cmd, f"memory note: {text}"
    raise ValueError(f"unknown command {name!r}: use one of {', '.join(COMMANDS)}")


# --------------------------------------------------------------------------- the server


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.partition("%")[0]).is_loopback
    except ValueError:
        return address == "localhost"


class Dashboard(ThreadingHTTPServer):
    """The dashboard's HTTP server; `url` is where a browser on this machine finds it."""

    daemon_threads = True  # event streams never hold up shutdown
    block_on_close = False
    request_queue_size = 1024  # a burst of connections waits in the kernel to be served or refused (a full
    # backlog drops a newcomer's SYN, and its browser tries again only a second later)

    def __init__(self, db_path: Path, host: str, port: int, stop: threading.Event,
                 sessions: access.Sessions | None = None, chase: predict.Chase | None = None,
                 map_layers: MapLayers | None = None, limits: Limits | None = None,
                 allowed_hosts: Iterable[str] = ()):
        self.db_path = db_path
        self.hosts = HostAllowList(host, allowed_hosts)
        self.limits = limits or Limits()
        self.slots = _Slots(self.limits)
        self.refused: collections.deque[tuple[float, socket.socket]] = collections.deque()
        self.refusal = self._refusal_bytes()
        self.map_layers = map_layers or MapLayers()
        origin = self.map_layers.extra_img_origin
        self.csp = CSP.format(tiles=f" {origin}" if origin else "")
        self.stop = stop
        self.token = secrets.token_urlsafe(32)
        self.sessions = sessions or access.Sessions(None, time.monotonic)
        self.landing = predict.Landing(chase or predict.Chase())
        self.pages = {path: ((STATIC_DIR / name).read_bytes(), ctype) for path, (name, ctype) in PAGES.items()}
        index, ctype = self.pages["/"]
        index = index.replace(TOKEN_PLACEHOLDER.encode(), self.token.encode())
        self.pages["/"] = self.pages["/index.html"] = (index, ctype)
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), _Handler)

    # ------------------------------------------------------------- connection caps
    # process_request and service_actions run in the one thread that accepts connections.

    def process_request(self, request, client_address) -> None:
        client = client_address[0]
        if not self.slots.take("connection", client):
            log.debug("connection refused", client=client, why="too many connections")
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

    def handle_error(self, request, client_address) -> None:
        log.warning("request failed", client=client_address[0], exc_info=True)

    def _refusal_bytes(self) -> bytes:
        body = json.dumps({"error": "the dashboard is serving too many connections (from this address, or in all): "
                                    f"try again in {self.limits.retry_after_s} s"}).encode()
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
        return _is_loopback(self.server_address[0])



class _Handler(BaseHTTPRequestHandler):
    server: Dashboard
    protocol_version = "HTTP/1.1"
    server_version = "stratoecho-dashboard"
    sys_version = ""

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        log.debug("http", client=self.client_address[0], request=format % args)

    def setup(self) -> None:
        super().setup()
        limits = self.server.limits
        self.connection.settimeout(limits.idle_s)
        self.reader = _DeadlineReader(self.connection, limits.idle_s)
        self.rfile.close()  # the base class's reader, replaced (it holds a reference on the socket)
        self.rfile = io.BufferedReader(self.reader)

    def handle_one_request(self) -> None:
        self.reader.deadline = time.monotonic() + self.server.limits.idle_s  # for its first line
        super().handle_one_request()

    def parse_request(self) -> bool:
        self.reader.deadline = time.monotonic() + self.server.limits.header_s  # for its headers and body
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
            self._refuse_other_hosts()
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
        if match := IMAGE_PATH.fullmatch(path):
            with self._reader() as db:
                jpeg = db.image(int(match[1]), int(match[2]))
            if jpeg is None:
                raise RequestError(HTTPStatus.NOT_FOUND, f"no image record {match[1]}/{match[2]}")
            self._send(jpeg, "image/jpeg", cache="max-age=86400")  # a record never changes
            return
        with self._reader() as db:
            if path == "/api/summary":
                answer = summary(db)
            elif path == "/api/telemetry":
                answer = [telemetry_json(r) for r in db.telemetry_since(self._since(query), MAX_ROWS)]
            elif path == "/api/musings":
                answer = [record_json(r) for r in db.records_since(self._since(query), "musing", MAX_ROWS)]
            elif path == "/api/records":
                kind = query.get("kind", [""])[0]
                if kind and not RECORD_KIND.fullmatch(kind):
                    raise RequestError(HTTPStatus.BAD_REQUEST, f"kind {kind!r} is not a record kind")
                answer = [record_json(r) for r in db.records_since(self._since(query), kind or None, MAX_ROWS)]
            elif path == "/api/link":
                answer = link(db)
            elif path == "/api/outbox":
                answer = outbox_json(db.outbox())
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
            row = store.queue_command(cmd.command_id, cmd.pack(), what)
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
            local = self.server.loopback_only and _is_loopback(self.client_address[0])
            return math.inf if local else None
        return sessions.valid(self._session_id())

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
        client, slots = self.client_address[0], self.server.slots
        if not slots.take("stream", client):
            raise RequestError(HTTPStatus.SERVICE_UNAVAILABLE,
                               "too many live feeds open (from this address, or in all): close a tab, or wait",
                               retry_after=self.server.limits.retry_after_s)
        try:
            self._open_stream(cursor)
        finally:
            slots.give("stream", client)

    def _open_stream(self, cursor: list[int]) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        self.wfile.write(b"retry: 2000\n\n")
        self.wfile.flush()
        try:
            self._stream(cursor)
        except (sqlite3.Error, StoreError) as e:  # the headers are gone: end the stream, the browser reconnects
            log.warning("event stream ended", error=str(e))

    def _stream(self, cursor: list[int]) -> None:
        stop = self.server.stop
        with self._reader() as db:
            version = outbox = frames = None
            last_sent = time.monotonic()
            while not stop.is_set():
                sent = False
                if (now_version := db.data_version()) != version:
                    version = now_version
                    telemetry = [telemetry_json(r) for r in db.telemetry_since(cursor[0], BATCH_ROWS)]
                    records = [record_json(r) for r in db.records_since(cursor[1], None, BATCH_ROWS)]
                    if telemetry:
                        cursor[0] = telemetry[-1]["id"]
                    if records:
                        cursor[1] = records[-1]["id"]
                    if len(telemetry) == BATCH_ROWS or len(records) == BATCH_ROWS:
                        version = None  # more to send: look again without waiting for a commit
                    event_id = f"{cursor[0]}.{cursor[1]}"
                    for name, rows in (("telemetry", telemetry), ("record", records)):
                        if rows:
                            self._event(name, rows, event_id)
                            sent = True
                    if (now_outbox := db.outbox_state()) != outbox:
                        outbox = now_outbox
                        self._event("outbox", outbox_json(db.outbox()))
                        sent = True
                    if (now_frames := db.newest_frame_id()) != frames:
                        frames = now_frames
                        self._event("link", {"frames": frames})
                        sent = True
                if not sent and time.monotonic() - last_sent >= KEEPALIVE_S:
                    self.wfile.write(b": keepalive\n\n")
                    sent = True
                if sent:
                    self.wfile.flush()
                    last_sent = time.monotonic()
                if version is not None and stop.wait(POLL_S):
                    break

    def _event(self, name: str, data, event_id: str | None = None) -> None:
        head = f"event: {name}\n" + (f"id: {event_id}\n" if event_id else "")
        self.wfile.write((head + "data: " + json.dumps(data, ensure_ascii=False, allow_nan=False) + "\n\n").encode())

    def _stream_cursor(self, query: dict) -> list[int]:
        """Where the stream starts: the browser's Last-Event-ID when it reconnects, else the
        page's ?telemetry=&records= (the cursor of the summary it loaded first)."""
        last = self.headers.get("Last-Event-ID", "")
        if re.fullmatch(r"\d{1,18}\.\d{1,18}", last):
            return [int(x) for x in last.split(".")]
        return [self._since(query, "telemetry"), self._since(query, "records")]

    # ------------------------------------------------------------- helpers

    @contextmanager
    def _reader(self) -> Iterator[GroundReader]:
        db = GroundReader.open(self.server.db_path)
        try:
            yield db
        finally:
            db.close()

    @staticmethod
    def _since(query: dict, name: str = "since") -> int:
        text = query.get(name, ["0"])[0]
        if not text.isdigit() or len(text) > 18:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"{name} must be a row id (a whole number), got {text!r}")
        return int(text)

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


def _cookie(session_id: str, max_age: float) -> str:
    # HttpOnly: no script reads it; SameSite=Strict: no other site's page sends it. Not Secure:
    # the dashboard speaks plain HTTP on a field network (docs/ground.md says what that means).
    return f"{access.COOKIE}={session_id}; Path=/; Max-Age={int(max_age)}; HttpOnly; SameSite=Strict"


def serve(db_path: str | Path, host: str = "127.0.0.1", port: int = 8080,
          stop_event: threading.Event | None = None, sessions: access.Sessions | None = None,
          chase: predict.Chase | None = None, map_layers: MapLayers | None = None,
          limits: Limits | None = None, allowed_hosts: Iterable[str] = ()) -> Dashboard:
    """Start the dashboard in background threads and return its server (`.url`,
    `.server_address`; port 0 picks a free one). Setting `stop_event` shuts it down and
    ends every event stream within a poll. The database is created if missing (as the
    listener would), so the page can be opened before the first frame is heard;
    StoreError if it is not a ground database, OSError if the address cannot be bound.
    `sessions`: who may queue commands (access.py); None: nobody can log in. `chase`: the
    prediction's settings and the station's position (predict.Chase). `map_layers`: what the
    map is drawn from (maps.MapLayers; default: the base map alone). `limits`: the caps on
    connections and event streams and the timeouts (Limits; default: Limits()). `allowed_hosts`:
    names it answers to besides the loopback names and `host` (hosts.HostAllowList)."""
    db_path = Path(db_path)
    Store(db_path).close()  # makes or migrates the schema, or says why this file will not do
    stop = stop_event or threading.Event()
    server = Dashboard(db_path, host, port, stop, sessions, chase, map_layers, limits, allowed_hosts)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="dashboard",
                     daemon=True).start()

    def shut_down() -> None:
        stop.wait()
        server.shutdown()
        server.server_close()

    threading.Thread(target=shut_down, name="dashboard-stop", daemon=True).start()
    log.info("dashboard serving", url=server.url, db=str(db_path))
    return server
