"""`ApiProxy`: the payload's requests answered from the allowed APIs, in a worker thread of its
own, and queued as API_ANSWER commands in the outbox (the package's docstring tells the whole)."""

from __future__ import annotations

import errno
import http.client
import math
import queue
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import structlog
import tenacity

from stratoecho import wire
from stratoecho.backoff import Backoff
from stratoecho.wire import DEFAULT_MTU
from stratoecho.wire.uplink import DEFAULT_TAG_LEN, ApiAnswer, ApiStatus, CommandId

from .answer_text import answer_room, clean, clip
from .backends import ApiFailure, ApiSpec, Transient, upstream_error

log = structlog.get_logger(__name__)

USER_AGENT = "stratoecho-ground/0.1 (balloon API proxy)"
MAX_BODY_BYTES = 1 << 20  # a feed or a definition is far smaller; more is not something to parse
MAX_QUERY_CHARS = 120


def _is_network_down(e: BaseException) -> bool:
    """Connection refused, name not resolved, no route: the kind of failure that, everywhere
    at once, means the ground has no internet."""
    if isinstance(e, urllib.error.URLError) and not isinstance(e, urllib.error.HTTPError):
        e = e.reason if isinstance(e.reason, BaseException) else e
    return isinstance(e, (ConnectionRefusedError, socket.gaierror)) or (
        isinstance(e, OSError) and e.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN))


def _is_timeout(e: BaseException) -> bool:
    if isinstance(e, urllib.error.URLError) and not isinstance(e, urllib.error.HTTPError):
        e = e.reason if isinstance(e.reason, BaseException) else e
    return isinstance(e, TimeoutError)


def _is_reset(e: BaseException) -> bool:
    if isinstance(e, urllib.error.URLError) and not isinstance(e, urllib.error.HTTPError):
        e = e.reason if isinstance(e.reason, BaseException) else e
    return isinstance(e, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError, http.client.IncompleteRead,
                          http.client.BadStatusLine))


@dataclass
class _Job:
    boot: int
    seq: int
    api: str
    query: str
    db_path: str


class ApiProxy:
    """Answers the payload's API requests from `apis` (the allow-list: name -> backend).

    `timeout_s` bounds one lookup, retries included; `cache_s` keeps successful answers per
    (api, normalised query); `offline_check() -> bool` says whether the ground is offline
    (default: no allow-listed host accepts a TCP connection). `tag_len` and `mtu` are the
    uplink's, and size the answer text. `retry_attempts` and `retry_wait_s` (doubling) are
    the retry policy on 5xx and reset connections; `retry_attempts=1` switches it off.
    """

    def __init__(self, apis: dict[str, ApiSpec], *, timeout_s: float = 8.0, cache_s: float = 600.0,
                 offline_check: Callable[[], bool] | None = None, tag_len: int = DEFAULT_TAG_LEN,
                 mtu: int = DEFAULT_MTU, retry_attempts: int = 3, retry_wait_s: float = 0.25,
                 clock: Callable[[], float] = time.monotonic, remember: int = 1024,
                 use_env_proxy: bool = True):
        if not (timeout_s > 0 and math.isfinite(timeout_s)):
            raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
        if not (cache_s >= 0 and math.isfinite(cache_s)):
            raise ValueError(f"cache_s must be a number of seconds >= 0, got {cache_s!r}")
        self.room = answer_room(tag_len, mtu)
        if self.room < 16:
            raise ValueError(f"MTU {mtu} with a {tag_len}-byte tag leaves {self.room} bytes for an answer")
        self.apis = dict(apis)
        self.timeout_s = float(timeout_s)
        self.cache_s = float(cache_s)
        self.retry_attempts = max(1, int(retry_attempts))
        self.retry_wait_s = float(retry_wait_s)
        self._backoff = Backoff(self.retry_wait_s, 2.0, math.inf)  # the lookup's timeout_s bounds it, not a cap
        self._offline_check = offline_check or self._no_host_reachable
        self._clock = clock
        self._remember = remember
        handlers = [] if use_env_proxy else [urllib.request.ProxyHandler({})]
        self._opener = urllib.request.build_opener(*handlers)
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[float, str]] = {}
        self._answers: OrderedDict[tuple, ApiAnswer] = OrderedDict()
        self._stop = threading.Event()
        self.fetches = 0  # HTTP requests made (attempts), for stats and tests
        # on_record's side: requests taken (boot, seq), the worker and its database connection.
        self._taken: set[tuple[int, int]] | None = None
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self.synchronous = False  # answer in the caller's thread (the bench's lockstep), not the worker
        self.queued = 0
        self.queue_errors = 0

    # ------------------------------------------------------------------ answering

    def answer(self, request_seq: int, api: str, query: str, *, boot: int | None = None) -> ApiAnswer:
        """The answer to request `request_seq` (of `boot`, when known). Never raises."""
        key = (boot, request_seq, api, query)
        with self._lock:
            done = self._answers.get(key)
        if done is not None:
            return done
        started = self._clock()
        cached = False
        try:
            status, text, cached = self._look_up(api, query)
        except Exception:  # a backend bug must not take the listener down
            log.exception("api_proxy_internal_error", api=api, seq=request_seq)
            status, text = ApiStatus.UPSTREAM_ERROR, ""
        try:
            result = ApiAnswer(request_seq, int(status), clip(clean(text), self.room))
        except ValueError:  # a request_seq that is no u32: answer what can be answered
            result = ApiAnswer(request_seq & 0xFFFFFFFF if isinstance(request_seq, int) else 0,
                               int(ApiStatus.BAD_REQUEST))
        with self._lock:
            result = self._answers.setdefault(key, result)  # a racing twin's answer wins once
            while len(self._answers) > self._remember:
                self._answers.popitem(last=False)
        log.info("api_answer", api=api, seq=request_seq, boot=boot, status=ApiStatus(result.status).name.lower(),
                 cached=cached, took_s=round(self._clock() - started, 3), chars=len(result.text))
        return result

    def _look_up(self, api, query) -> tuple[ApiStatus, str, bool]:
        spec = self.apis.get(api) if isinstance(api, str) else None
        if spec is None:
            log.info("api_refused", api=api)
            return ApiStatus.REFUSED, "", False
        if not isinstance(query, str) or not query.strip() or len(query) > MAX_QUERY_CHARS:
            return ApiStatus.BAD_REQUEST, "", False
        try:
            normalised = spec.normalise(query)
            key = (api, normalised)
            with self._lock:
                hit = self._cache.get(key)
            if hit is not None and self._clock() - hit[0] < self.cache_s:
                return ApiStatus.OK, hit[1], True
            body = self._fetch(spec.url_for(normalised))
            text = spec.summarise(body, normalised)
        except ApiFailure as e:
            log.info("api_failed", api=api, status=e.status.name.lower(), detail=str(e)[:200])
            return e.status, "", False
        if self.cache_s > 0:
            with self._lock:
                self._cache[key] = (self._clock(), text)
        return ApiStatus.OK, text, False

    def _fetch(self, url: str) -> bytes:
        """The body at `url`, with retries on transient failures, all within timeout_s."""
        deadline = self._clock() + self.timeout_s

        def stop(state: tenacity.RetryCallState) -> bool:
            return (state.attempt_number >= self.retry_attempts or self._stop.is_set()
                    or deadline - self._clock() <= self._backoff.wait(state) + 0.05)

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(Transient), wait=self._backoff.wait, stop=stop,
            sleep=self._stop.wait, reraise=True,
            before_sleep=lambda s: log.info("api_retry", url=url, attempt=s.attempt_number,
                                            error=str(s.outcome.exception())[:120]),
        )
        try:
            return retrying(self._fetch_once, url, deadline)
        except Transient as e:
            raise e.failure from None

    def _fetch_once(self, url: str, deadline: float) -> bytes:
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise ApiFailure(ApiStatus.TIMEOUT, "no time left")
        self.fetches += 1
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        try:
            with self._opener.open(request, timeout=remaining) as response:
                chunks, size = [], 0
                while chunk := response.read(65536):
                    size += len(chunk)
                    if size > MAX_BODY_BYTES:
                        raise upstream_error(f"body over {MAX_BODY_BYTES} bytes")
                    if self._clock() > deadline:
                        raise ApiFailure(ApiStatus.TIMEOUT, "body still arriving at the deadline")
                    chunks.append(chunk)
                return b"".join(chunks)
        except urllib.error.HTTPError as e:
            e.close()
            raise self._http_failure(e.code) from None
        except ApiFailure:
            raise
        except Exception as e:  # URLError, OSError, http.client errors, ValueError for odd URLs
            if _is_timeout(e):
                raise ApiFailure(ApiStatus.TIMEOUT, f"no answer in {self.timeout_s:g} s") from None
            if _is_reset(e):
                raise Transient(upstream_error(f"connection broke: {e}")) from None
            if _is_network_down(e):
                offline = self._offline_check()
                raise ApiFailure(ApiStatus.OFFLINE if offline else ApiStatus.UPSTREAM_ERROR,
                                 f"cannot reach {url}: {e}") from None
            raise upstream_error(f"{type(e).__name__}: {e}") from None

    @staticmethod
    def _http_failure(code: int) -> ApiFailure | Transient:
        if code == 404 or code == 410:
            return ApiFailure(ApiStatus.NOT_FOUND, f"HTTP {code}")
        if code == 429:
            return ApiFailure(ApiStatus.RATE_LIMITED, "HTTP 429")
        if code in (400, 422):
            return ApiFailure(ApiStatus.BAD_REQUEST, f"HTTP {code}")
        if code >= 500:
            return Transient(upstream_error(f"HTTP {code}"))
        return upstream_error(f"HTTP {code}")

    def _no_host_reachable(self) -> bool:
        """True when no allow-listed API's host accepts a TCP connection (or resolves)."""
        for host, port in dict.fromkeys(spec.host_port() for spec in self.apis.values()):
            try:
                with socket.create_connection((host, port), timeout=min(2.0, self.timeout_s)):
                    return False
            except OSError:
                continue
        return True

    # ------------------------------------------------------------------ from the listener

    def on_record(self, record: wire.Telemetry | wire.Record, store) -> bool:
        """A record new to the database: if it is an api_request not answered before, answer it
        in the worker thread and queue the API_ANSWER in `store`'s database. True if taken.
        Never raises. Requests answered in earlier runs are found in the outbox's `answers_*` columns."""
        try:
            if not isinstance(record, wire.Record) or record.kind is not wire.Kind.API_REQUEST:
                return False
            boot, seq, fields = record.boot, record.seq, record.content  # the declared fields, any subset
            with self._lock:
                if self._taken is None:
                    self._taken = store.outbox.answered_requests()
                if (boot, seq) in self._taken:
                    log.debug("api_request_already_answered", boot=boot, seq=seq)
                    return False
                self._taken.add((boot, seq))
                if self.synchronous:
                    self._worker = None
                elif self._worker is None:
                    self._worker = threading.Thread(target=self._work, name="api-proxy", daemon=True)
                    self._worker.start()
            job = _Job(boot, seq, fields.get("api"), fields.get("query"), str(store.path))
            if self.synchronous:
                self._do(job, {str(store.path): store})
            else:
                self._jobs.put(job)
            return True
        except Exception:
            log.exception("api_proxy_on_record_failed")
            return False

    def _work(self) -> None:
        from ..store import Store  # the worker's own connection: the listener's is the listener's

        stores: dict[str, Store] = {}
        try:
            while (job := self._jobs.get()) is not None:
                self._do(job, stores, Store)
        finally:
            for s in stores.values():
                s.close()

    def _do(self, job: _Job, stores: dict, open_store=None) -> None:
        """Answer one request and queue the answer in its database's outbox."""
        try:
            result = self.answer(job.seq, job.api, job.query, boot=job.boot)
            status = ApiStatus(result.status).name.lower()
            if job.db_path not in stores:
                stores[job.db_path] = open_store(job.db_path)
            stores[job.db_path].outbox.queue(CommandId.API_ANSWER, result.pack(),
                                              what=f"api answer to request {job.boot}/{job.seq}: {status}",
                                              answers=(job.boot, job.seq))
            self.queued += 1
        except Exception:
            self.queue_errors += 1
            log.exception("api_answer_not_queued", boot=job.boot, seq=job.seq)

    def close(self, timeout_s: float | None = None) -> None:
        """Stop the worker after the requests already taken (retry back-offs cut short)."""
        self._stop.set()
        with self._lock:
            worker = self._worker
        if worker is not None:
            self._jobs.put(None)
            worker.join(timeout_s)

    def stats(self) -> dict:
        return {"api_answers_queued": self.queued, "api_queue_errors": self.queue_errors,
                "api_fetches": self.fetches}
