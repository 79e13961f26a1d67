"""SondeHub-Amateur uploader: our telemetry on the public tracker (amateur.sondehub.org).

What SondeHub documents (sondehub-infra swagger, `amateur_telemetry_format`) and this sends:
a JSON array of objects, by HTTP PUT to https://api.v2.sondehub.org/amateur/telemetry,
optionally gzip-compressed (Content-Encoding: gzip)::

    software_name "stratoecho", software_version, uploader_callsign,
    uploader_position [lat, lon, alt], uploader_radio, uploader_antenna   the station, where given
    time_received  when we heard it, YYYY-MM-DDTHH:MM:SS.ffffffZ
    payload_callsign, datetime (the sentence's GPS time with its date, same format),
    lat, lon, alt (m), sats, batt (V),
    temp (°C), pressure (hPa)         only when the sensor had a reading
    frequency (MHz), modulation       the receiver's, when given
    snr (dB), rssi (dBm)              the frame's own signal, when the radio reported it
    raw                               when given
    comment                           the last musing heard (`musing_comment`), when given
    historical true                   for data uploaded after the fact (`export`)
    dev "true"                        test uploads: SondeHub does not store them

and the station itself (`station.py`) by PUT to /amateur/listeners at start and every
`listener_interval_s`, when it has a position (never with `dev`: that endpoint has no test mode).

200 is stored; 202 is stored with data warnings (logged). SondeHub merges the same
(payload_callsign, datetime) from many receivers, so sending a position again after a
failure is harmless; this uploader still never queues the same pair twice itself.

Delivery: `add()` builds the object in the caller's thread and queues it; one background
thread sends a batch every `batch_interval_s` or as soon as `batch_max_items` wait, so a
slow server never stalls decoding. 5xx answers and connection errors are retried with
exponential back-off and jitter (tenacity, bounded attempts); 4xx never is.

One bad position never holds up the others. SondeHub's handler fails a whole request
(500) when one object in it is malformed, so a batch that is refused (4xx) or still
failing (5xx) after its retries is split in halves, each sent on its own, down to the
position the server will not take: refused, it is dropped at once; failing, it is dropped
as soon as the server has taken another position in the same round (then the fault is that
position's, not the server's). Two positions in a row failing with nothing taken looks
like the server, not the data: they go back to the front of the queue with a strike, and
a position is dropped at its `failing_rounds`-th strike, so even a long outage answered with
5xx costs a bounded number of requests per round. Without any answer (the network) the
batch goes back to the front of the queue, whole, for the next round. Every drop is
counted and logged with the server's answer. `close()` sends what is queued until its
deadline; what is left is logged (every row is in the database: `export --format sondehub`
uploads them later).
"""

from __future__ import annotations

import enum
import gzip as gzip_module
import http.client
import json
import math
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate

import structlog
import tenacity

from groundstation.heard import Heard
from stratoecho import __version__, wire
from stratoecho.wire.musing_sentence import fold_text

from .base import has_fix, iso_z, received_time, telemetry_datetime
from .station import SOFTWARE_NAME, Station, listener_object

log = structlog.get_logger(__name__)

DEFAULT_URL = "https://api.v2.sondehub.org/amateur/telemetry"
DEFAULT_METHOD = "PUT"  # what the SondeHub API documents for /amateur/telemetry
COMMENT_CHARS = 300  # the longest musing put in a position's comment
_BODY_LOG_CHARS = 2000


@dataclass(frozen=True)
class SondeHubPolicy:
    """Every timing and limit of the uploader, in seconds; tests pass a fast one."""

    batch_interval_s: float = 5.0  # send what is queued at least this often
    batch_max_items: int = 50  # ...or as soon as this many wait; also the most per request
    request_timeout_s: float = 20.0
    retry_attempts: int = 5  # tries per request, first included, on 5xx or no answer
    retry_initial_s: float = 1.0  # back-off: initial * 2**n + uniform(0, jitter), at most retry_max_s
    retry_max_s: float = 30.0
    retry_jitter_s: float = 1.0
    flush_timeout_s: float = 120.0  # flush() waits at most this long for a round to finish
    close_deadline_s: float = 15.0  # close() sends what is queued for at most this long
    max_queue: int = 20_000  # a long outage: beyond this the oldest are dropped (they stay in the database)
    failing_rounds: int = 3  # strikes (rounds failing with nothing taken) before a position is given up
    listener_interval_s: float = 6 * 3600.0  # the station upload again; SondeHub forgets a station after ~12 h
    listener_retry_s: float = 600.0  # ...or this soon after one that failed

    def __post_init__(self) -> None:
        for name in ("batch_interval_s", "request_timeout_s", "retry_initial_s", "retry_max_s",
                     "retry_jitter_s", "flush_timeout_s", "close_deadline_s", "listener_interval_s",
                     "listener_retry_s"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and v >= 0):
                raise ValueError(f"{name} must be a number of seconds >= 0, got {v!r}")
        for name in ("batch_max_items", "retry_attempts", "max_queue", "failing_rounds"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")


def sondehub_object(heard: Heard, station: Station, *, software_version: str = __version__,
                    frequency_mhz: float | None = None, modulation: str | None = None,
                    snr_db: float | None = None, rssi_dbm: float | None = None, raw: str | None = None,
                    comment: str | None = None, historical: bool = False, dev: bool = False) -> dict | None:
    """One position as a SondeHub-Amateur telemetry object; None without a fix (SondeHub
    must never get a zero or made-up position). The signal is the one given, else the one
    the frame was heard with (`heard.snr_db`, `heard.rssi_dbm`). WireError for a bad time."""
    t = heard.record
    if not has_fix(t):
        return None
    received = received_time(heard)
    obj: dict = {
        "software_name": SOFTWARE_NAME,
        "software_version": software_version,
        **station.telemetry_fields(),
        "time_received": iso_z(received, micro=True),
        "payload_callsign": t.callsign,
        "datetime": iso_z(telemetry_datetime(t.time, received), micro=True),
        "lat": float(t.lat),
        "lon": float(t.lon),
        "alt": float(t.alt),
        "sats": t.sats,
    }
    if t.batt_mv != 0:  # 0: no current reading, never a flat battery
        obj["batt"] = round(t.batt_mv / 1000.0, 3)
    if not math.isnan(t.temp_c):
        obj["temp"] = float(t.temp_c)
    if not math.isnan(t.pressure_hpa):
        obj["pressure"] = float(t.pressure_hpa)
    if frequency_mhz is not None:
        obj["frequency"] = float(frequency_mhz)
    if modulation:
        obj["modulation"] = str(modulation)
    snr_db = heard.snr_db if snr_db is None else snr_db
    rssi_dbm = heard.rssi_dbm if rssi_dbm is None else rssi_dbm
    if snr_db is not None and math.isfinite(snr_db):
        obj["snr"] = float(snr_db)
    if rssi_dbm is not None and math.isfinite(rssi_dbm):
        obj["rssi"] = float(rssi_dbm)
    if raw:
        obj["raw"] = raw
    if comment:
        obj["comment"] = comment
    if historical:
        obj["historical"] = True
    if dev:
        obj["dev"] = "true"
    return obj


def musing_comment(record: wire.Record) -> str:
    """A musing as a position's `comment`, which the SondeHub tracker shows in the payload's popup
    as HTML, unescaped: folded to plain ASCII as gateways carry it, without < > &."""
    text = fold_text(record.text).replace("<", "(").replace(">", ")").replace("&", "and")
    text = text if len(text) <= COMMENT_CHARS else text[:COMMENT_CHARS - 3].rstrip() + "..."
    return f"musing {record.boot}.{record.seq}: {text}"


class _ServerError(Exception):
    """A 5xx answer: worth another try."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}")
        self.status, self.body = status, body


class _Rejected(Exception):
    """Any other non-2xx answer (4xx, a redirect we cannot follow with a PUT): never retried."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}")
        self.status, self.body = status, body


def _transient(e: BaseException) -> bool:
    # HTTPError is a URLError is an OSError, but it never gets here: _request turns it
    # into _ServerError or _Rejected. What remains is the network (refused, reset, timed out).
    return isinstance(e, (_ServerError, urllib.error.URLError, OSError, http.client.HTTPException))


class _Outcome(enum.Enum):
    SENT = "sent"
    REFUSED = "refused"  # 4xx: the server's word on what we sent
    FAILING = "failing"  # 5xx after every retry
    NO_ANSWER = "no answer"  # the network, after every retry, or close() gave up waiting


@dataclass(frozen=True)
class _Answer:
    outcome: _Outcome
    status: int | None = None
    body: str = ""


class SondeHubUploader:
    """Exporter to SondeHub-Amateur; see the module docstring. Counters in `stats`.

    `station`: the receiving station (`Station`), or only its callsign; `comment`: what to put in
    each position's comment when it is queued (the listener's last musing, `musing_comment`)."""

    def __init__(self, station: Station | str, url: str = DEFAULT_URL, *, method: str = DEFAULT_METHOD,
                 gzip: bool = True, policy: SondeHubPolicy | None = None, frequency_mhz: float | None = None,
                 modulation: str | None = None, historical: bool = False, dev: bool = False,
                 software_version: str = __version__, listener_url: str | None = None,
                 comment: Callable[[], str | None] | None = None) -> None:
        self.station = station if isinstance(station, Station) else Station(station)
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{url!r} is not an http(s) URL (SondeHub's is {DEFAULT_URL})")
        method = method.upper()
        if method not in ("PUT", "POST"):
            raise ValueError(f"method {method!r}: use PUT (what SondeHub documents) or POST")
        if frequency_mhz is not None and not (math.isfinite(frequency_mhz) and frequency_mhz > 0):
            raise ValueError(f"frequency {frequency_mhz!r} MHz: give the receiver's frequency in MHz, e.g. 434.2")
        self.uploader_callsign = self.station.callsign
        self.url, self.method, self.gzip = url, method, gzip
        # /amateur/telemetry's sibling, so a local or test server gets both uploads
        self.listener_url = listener_url or urllib.parse.urljoin(url, "listeners")
        self.policy = policy or SondeHubPolicy()
        self._comment = comment  # the comment for each position queued now (the last musing), or None
        self._object_args = dict(station=self.station, software_version=software_version,
                                 frequency_mhz=frequency_mhz, modulation=modulation, historical=historical, dev=dev)
        self._listener = (listener_object(self.station, software_version)
                          if self.station.position is not None and not dev and not historical else None)
        self._user_agent = f"{SOFTWARE_NAME}-{software_version}"
        self._opener = urllib.request.build_opener()
        self.stats: Counter[str] = Counter()
        self._queue: deque[dict] = deque()
        self._seen: set[tuple[str, str]] = set()  # (payload_callsign, datetime) ever queued: a flight's worth
        self._strikes: Counter[tuple[str, str]] = Counter()  # rounds a position failed in with nothing taken
        self._cond = threading.Condition()
        self._flush_asked = self._flush_done = 0  # generations: flush() waits for a round begun after it asked
        self._closing = False
        self._close_by = float("inf")
        self._listener_due = time.monotonic() if self._listener is not None else float("inf")
        self._listener_tried = False
        self._abort = threading.Event()  # the close deadline passed: stop retrying and back-off sleeps at once
        self._last_round_failed = False
        p = self.policy
        self._retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_transient),
            wait=tenacity.wait_exponential_jitter(multiplier=p.retry_initial_s, max=p.retry_max_s,
                                                  jitter=p.retry_jitter_s),
            stop=tenacity.stop_any(tenacity.stop_after_attempt(p.retry_attempts),
                                   tenacity.stop_when_event_set(self._abort)),
            sleep=self._abort.wait,  # back-off ends the moment close() gives up
            before_sleep=self._before_retry,
            reraise=True,
        )
        if self._listener is None and not (dev or historical):
            log.info("sondehub_listener_off", uploader=self.uploader_callsign,
                     why="no station position: the station is not shown on SondeHub's map")
        self._thread = threading.Thread(target=self._run, name="sondehub-upload", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ caller's side

    def add(self, heard: Heard) -> None:
        try:
            obj = sondehub_object(heard, **self._object_args, comment=self._comment() if self._comment else None)
        except ValueError as e:  # WireError is one: a time that is not HH:MM:SS
            self.stats["skipped_invalid"] += 1
            log.warning("sondehub_skipped", reason=str(e), boot=heard.record.boot, seq=heard.record.seq)
            return
        if obj is None:
            self.stats["skipped_no_fix"] += 1
            return
        key = _key(obj)
        with self._cond:
            if self._closing:
                self.stats["after_close"] += 1
                return
            if key in self._seen:
                self.stats["skipped_duplicate"] += 1
                return
            self._seen.add(key)
            self._queue.append(obj)
            self.stats["queued"] += 1
            if len(self._queue) > self.policy.max_queue:
                self._queue.popleft()  # its strikes, if any, stay: the thread alone touches them
                self.stats["dropped_overflow"] += 1
                if self.stats["dropped_overflow"] == 1:
                    log.warning("sondehub_queue_full", max_queue=self.policy.max_queue,
                                hint="oldest dropped; they are in the database for a later export")
            if len(self._queue) >= self.policy.batch_max_items:
                self._cond.notify_all()

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._queue)

    def flush(self) -> None:
        """Send what is queued now and wait (at most `flush_timeout_s`) until that round ends:
        sent, dropped, or back in the queue after its retries ran out."""
        with self._cond:
            self._flush_asked += 1
            target = self._flush_asked
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._flush_done >= target or not self._thread.is_alive(),
                                timeout=self.policy.flush_timeout_s)

    def close(self, deadline_s: float | None = None) -> None:
        """Send what is queued for at most `deadline_s` (default `close_deadline_s`), then stop."""
        deadline_s = self.policy.close_deadline_s if deadline_s is None else deadline_s
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._close_by = time.monotonic() + deadline_s
            self._cond.notify_all()
        self._thread.join(deadline_s)
        if self._thread.is_alive():
            self._abort.set()
            # A request already on the wire had its timeout cut to the deadline; allow it a moment.
            self._thread.join(2.0)
        with self._cond:
            unsent = len(self._queue)
        self.stats["unsent_at_close"] = unsent
        if unsent:
            log.warning("sondehub_unsent", items=unsent, url=self.url,
                        hint="they are in the database: `python -m groundstation export --format sondehub` "
                             "uploads them later (SondeHub merges duplicates)")
        log.info("sondehub_closed", **dict(self.stats))

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        p = self.policy
        while True:
            with self._cond:
                wake_at = time.monotonic() + p.batch_interval_s
                while not (self._closing or self._flush_asked > self._flush_done
                           or (len(self._queue) >= p.batch_max_items and not self._last_round_failed)):
                    left = min(wake_at, self._listener_due) - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                generation, closing = self._flush_asked, self._closing
            # Closing: only a station never uploaded yet (a short run) is worth the time.
            if time.monotonic() >= self._listener_due and not (closing and self._listener_tried):
                self._upload_listener()
            ok = self._round()
            with self._cond:
                self._last_round_failed = not ok
                self._flush_done = max(self._flush_done, generation)
                self._cond.notify_all()
                if closing and (not self._queue or self._abort.is_set() or time.monotonic() >= self._close_by):
                    return

    def _upload_listener(self) -> None:
        """The station on SondeHub's map; again in `listener_interval_s`, or sooner after a failure."""
        assert self._listener is not None
        self._listener_tried = True
        body = json.dumps(self._listener, ensure_ascii=False).encode("utf-8")
        answer = self._put(self.listener_url, body, gzip=False, method="PUT")  # the only method it documents
        ok = answer.outcome is _Outcome.SENT
        self.stats["listener_uploads" if ok else "listener_failures"] += 1
        if ok:
            log.info("sondehub_listener_uploaded", uploader=self.uploader_callsign, status=answer.status)
        else:
            log.warning("sondehub_listener_failed", outcome=answer.outcome.value, status=answer.status,
                        url=self.listener_url, body=answer.body[:_BODY_LOG_CHARS])
        wait = self.policy.listener_interval_s if ok else self.policy.listener_retry_s
        with self._cond:
            self._listener_due = time.monotonic() + wait

    def _round(self) -> bool:
        """Send batches until the queue is empty (True) or the server stops answering (False)."""
        while True:
            with self._cond:
                n = min(len(self._queue), self.policy.batch_max_items)
                batch = [self._queue.popleft() for _ in range(n)]
            if not batch:
                return True
            if not self._deliver(batch):
                return False

    def _deliver(self, batch: list[dict]) -> bool:
        """One batch, split around whatever the server will not take (see the module docstring).
        False when the round should end: what is left is back at the front of the queue."""
        work: deque[list[dict]] = deque([batch])
        taken_any = False
        suspect: tuple[dict, _Answer] | None = None  # a position that failed alone, before anything was taken
        while work:
            part = work.popleft()
            answer = self._send(part)
            if answer.outcome is _Outcome.SENT:
                taken_any = True
                if suspect is not None:  # the server works: the fault is the suspect's
                    self._drop(*suspect)
                    suspect = None
                continue
            if answer.outcome is _Outcome.NO_ANSWER:
                self._requeue([*(suspect[:1] if suspect else ()), *part, *(o for rest in work for o in rest)])
                return False
            if len(part) > 1:
                mid = len(part) // 2
                work.extendleft((part[mid:], part[:mid]))  # first half first: order kept
                continue
            if answer.outcome is _Outcome.REFUSED or taken_any:
                self._drop(part[0], answer)
            elif suspect is None:
                suspect = (part[0], answer)
            else:  # two in a row failing, nothing taken: more likely the server than both positions
                self._strike([suspect, (part[0], answer)], [o for rest in work for o in rest])
                return False
        if suspect is not None:  # it was the last, and nothing else was taken: the same doubt
            self._strike([suspect], [])
            return False
        return True

    def _drop(self, obj: dict, answer: _Answer) -> None:
        refused = answer.outcome is _Outcome.REFUSED
        self.stats["rejected_items" if refused else "failed_items"] += 1
        self._strikes.pop(_key(obj), None)
        log.error("sondehub_position_dropped", why=("refused by the server" if refused
                                                    else "the server fails on it, and takes the others"),
                  status=answer.status, payload_callsign=obj["payload_callsign"], datetime=obj["datetime"],
                  url=self.url, body=answer.body[:_BODY_LOG_CHARS],
                  hint="it is in the database; `export --format sondehub` can try it again")

    def _strike(self, failed: list[tuple[dict, _Answer]], rest: list[dict]) -> None:
        """The failing positions get a strike and go back (the last strike drops them), then the rest."""
        self.stats["failed_rounds"] += 1
        back = []
        for obj, answer in failed:
            self._strikes[_key(obj)] += 1
            if self._strikes[_key(obj)] >= self.policy.failing_rounds:
                self._drop(obj, answer)
            else:
                back.append(obj)
        log.warning("sondehub_upload_failed", status=failed[-1][1].status, url=self.url,
                    body=failed[-1][1].body[:_BODY_LOG_CHARS], items=len(back) + len(rest),
                    will_retry=not self._abort.is_set())
        self._requeue(back + rest)

    def _requeue(self, objs: list[dict]) -> None:
        with self._cond:
            self._queue.extendleft(reversed(objs))  # first in line next round, order kept
            self.stats["requeued_batches"] += 1

    def _send(self, batch: list[dict]) -> _Answer:
        body = json.dumps(batch, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        answer = self._put(self.url, gzip_module.compress(body) if self.gzip else body, gzip=self.gzip,
                           method=self.method)
        if answer.outcome is _Outcome.SENT:
            for obj in batch:
                self._strikes.pop(_key(obj), None)
            self.stats["sent"] += len(batch)
            self.stats["batches_sent"] += 1
            if answer.status == 202:  # stored, but SondeHub found something to say about the data
                self.stats["batches_with_warnings"] += 1
                log.warning("sondehub_data_warnings", items=len(batch), body=answer.body[:_BODY_LOG_CHARS])
            else:
                log.info("sondehub_uploaded", items=len(batch), status=answer.status)
        elif answer.outcome is _Outcome.REFUSED:
            self.stats["rejected_batches"] += 1
            log.warning("sondehub_rejected", status=answer.status, items=len(batch), url=self.url,
                        body=answer.body[:_BODY_LOG_CHARS])
        return answer

    def _put(self, url: str, body: bytes, *, gzip: bool, method: str) -> _Answer:
        """One upload with its retries, as an answer: never raises for what the server or network does."""
        try:
            status, text = self._retrying(self._request, url, body, gzip, method)
        except _Rejected as e:
            return _Answer(_Outcome.REFUSED, e.status, e.body)
        except _ServerError as e:
            if self._abort.is_set():  # close() cut the retries short: no judgement on the data
                return _Answer(_Outcome.NO_ANSWER, e.status, e.body)
            return _Answer(_Outcome.FAILING, e.status, e.body)
        except Exception as e:  # noqa: BLE001 - retries ran out on the network, or the close deadline passed
            log.warning("sondehub_no_answer", error=str(e) or type(e).__name__, url=url,
                        will_retry=not self._abort.is_set())
            return _Answer(_Outcome.NO_ANSWER, None, str(e) or type(e).__name__)
        return _Answer(_Outcome.SENT, status, text)

    def _request(self, url: str, body: bytes, gzip: bool, method: str) -> tuple[int, str]:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": self._user_agent,
            "Date": formatdate(usegmt=True),  # lets SondeHub spot an uploader with a wrong clock
        }
        if gzip:
            headers["Content-Encoding"] = "gzip"
        timeout = self.policy.request_timeout_s
        if self._closing:  # never outlive close()'s deadline by a whole request timeout
            timeout = max(0.1, min(timeout, self._close_by - time.monotonic()))
        request = urllib.request.Request(url, data=body, method=method, headers=headers)
        try:
            with self._opener.open(request, timeout=timeout) as response:
                return response.status, response.read(65536).decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            try:
                text = e.read(65536).decode("utf-8", "replace")
            except OSError:
                text = ""
            finally:
                e.close()
            if e.code >= 500:
                raise _ServerError(e.code, text) from None
            raise _Rejected(e.code, text) from None

    def _before_retry(self, state: tenacity.RetryCallState) -> None:
        self.stats["retries"] += 1
        e = state.outcome.exception() if state.outcome else None
        log.warning("sondehub_retry", attempt=state.attempt_number, error=str(e) or type(e).__name__,
                    wait_s=round(state.upcoming_sleep, 2), body=getattr(e, "body", "")[:_BODY_LOG_CHARS])


def _key(obj: dict) -> tuple[str, str]:
    return obj["payload_callsign"], obj["datetime"]
