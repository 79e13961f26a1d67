"""The ground's API proxy: the payload's questions answered from an allow-list of real APIs.

The payload sends an API_REQUEST record (fields `api`, `query`; the record's seq is the
request id); the ground looks the answer up on the internet and queues a signed
API_ANSWER uplink command for the payload's next listen window::

    on_record(record, store)            (listener thread) new api_request, not answered before
      -> worker thread: answer(seq, api, query, boot=boot) -> uplink.ApiAnswer
      -> its own connection to the database: queue_command(API_ANSWER, answer.pack(), what,
                                                           answers=(boot, seq))

`answer` never raises. What the payload hears back (`uplink.ApiStatus`):

    api not on the allow-list                      REFUSED
    query that makes no sense for that api         BAD_REQUEST (also HTTP 400/422)
    HTTP 404, or an empty result                   NOT_FOUND
    HTTP 429                                       RATE_LIMITED
    HTTP 5xx, a reset connection (retried briefly  UPSTREAM_ERROR
      within the timeout), unreadable JSON/XML, other HTTP errors
    no answer within timeout_s                     TIMEOUT
    connection refused / DNS failure, and every    OFFLINE  (one API down while others
      allow-listed host unreachable                          answer: UPSTREAM_ERROR)

Answers are cleaned of control characters, clipped at a word boundary to what one
uplink frame carries at the configured MTU and tag length, cached per (api, normalised
query) for `cache_s` when they succeeded, and remembered per request: the same request
answered twice gets the same answer.

One class per backend (`WeatherApi`, `DefineApi`, `NewsApi`): each turns a query into a
URL and a response body into one short line. Base URLs come from a TOML file or flags
(`add_proxy_arguments`, `proxy_from_args`)::

    timeout_s = 8
    cache_s = 600
    [apis.weather]                      # a table per allowed api; without [apis]: all three
    url = "https://api.open-meteo.com/v1/forecast"
    [apis.define]
    url = "https://api.dictionaryapi.dev/api/v2/entries/en"
    [apis.news]
    url = "https://feeds.bbci.co.uk/news/world/rss.xml"
    headlines = 3
    # type = "weather" | "define" | "news": when the table's name is not one of these
"""

from __future__ import annotations

import argparse
import errno
import http.client
import json
import math
import queue
import re
import socket
import threading
import time
import unicodedata
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import structlog
import tenacity
from pydantic import Field

from stratoecho import wire
from stratoecho.config import ConfigError, Section, load_toml
from stratoecho.wire import DEFAULT_MTU
from stratoecho.wire.uplink import DEFAULT_TAG_LEN, HEADER_BYTES, ApiAnswer, ApiStatus, CommandId

log = structlog.get_logger(__name__)

DEFAULT_WEATHER_URL = "https://api.open-meteo.com/v1/forecast"
DEFAULT_DEFINE_URL = "https://api.dictionaryapi.dev/api/v2/entries/en"
DEFAULT_NEWS_URL = "https://feeds.bbci.co.uk/news/world/rss.xml"
USER_AGENT = "stratoecho-ground/0.1 (balloon API proxy)"
MAX_BODY_BYTES = 1 << 20  # a feed or a definition is far smaller; more is not something to parse
MAX_QUERY_CHARS = 120


# --------------------------------------------------------------------------- text


_ESCAPE_SEQUENCE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x9b[0-?]*[ -/]*[@-~]")


def clean(text: str) -> str:
    """Control and format characters (escape sequences whole) become spaces; whitespace
    runs become one space."""
    text = _ESCAPE_SEQUENCE.sub(" ", text)
    text = "".join(" " if unicodedata.category(ch)[0] == "C" else ch for ch in text)
    return " ".join(text.split())


def answer_room(tag_len: int = DEFAULT_TAG_LEN, mtu: int = DEFAULT_MTU) -> int:
    """UTF-8 bytes of answer text one API_ANSWER frame carries: the MTU less the uplink
    header, the tag and the answer's own request_seq and status (234 at MTU 255, tag 8)."""
    return mtu - HEADER_BYTES - tag_len - len(ApiAnswer(0, 0).pack())


def clip(text: str, room_bytes: int) -> str:
    """`text` if its UTF-8 fits `room_bytes`, else cut at a word boundary with "…" added."""
    data = text.encode("utf-8")
    if len(data) <= room_bytes:
        return text
    ellipsis = "…"
    budget = room_bytes - len(ellipsis.encode("utf-8"))
    if budget <= 0:
        return ""
    head = data[:budget].decode("utf-8", "ignore")  # never half a character
    cut = head.rfind(" ")
    if cut > 0 and data[len(head.encode("utf-8")):len(head.encode("utf-8")) + 1] != b" ":
        head = head[:cut]  # the cut fell inside a word: drop that word
    return head.rstrip(" ,;:-") + ellipsis


# --------------------------------------------------------------------------- outcomes of one lookup


class ApiFailure(Exception):
    """A lookup that ends in `status`; the message is for the log."""

    def __init__(self, status: ApiStatus, detail: str = ""):
        super().__init__(detail or status.name.lower())
        self.status = status


class _Transient(Exception):
    """Worth one more try within the timeout: 5xx, a reset connection. Carries the failure
    to report if the tries run out."""

    def __init__(self, failure: ApiFailure):
        super().__init__(str(failure))
        self.failure = failure


def _bad(detail: str) -> ApiFailure:
    return ApiFailure(ApiStatus.BAD_REQUEST, detail)


def _upstream(detail: str) -> ApiFailure:
    return ApiFailure(ApiStatus.UPSTREAM_ERROR, detail)


# --------------------------------------------------------------------------- backends


class ApiSpec(ABC):
    """One allowed API: how a query becomes a URL, and a response body one short line.
    `normalise` raises ApiFailure(BAD_REQUEST); `summarise` raises ApiFailure (NOT_FOUND for
    an empty result, UPSTREAM_ERROR for a body it cannot read)."""

    def __init__(self, url: str):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"API URL {url!r} is not an http(s) URL with a host")
        self.url = url

    @abstractmethod
    def normalise(self, query: str) -> str:
        """Each API says this its own way."""

    @abstractmethod
    def url_for(self, normalised: str) -> str:
        """Each API says this its own way."""

    @abstractmethod
    def summarise(self, body: bytes, normalised: str) -> str:
        """Each API says this its own way."""

    def host_port(self) -> tuple[str, int]:
        parts = urllib.parse.urlsplit(self.url)
        return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


def _json(body: bytes):
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise _upstream(f"not JSON: {e}") from None


def _with_query(url: str, params: dict[str, str]) -> str:
    parts = urllib.parse.urlsplit(url)
    query = "&".join(filter(None, (parts.query, urllib.parse.urlencode(params, safe=","))))
    return urllib.parse.urlunsplit(parts._replace(query=query))


# WMO weather interpretation codes, as Open-Meteo reports them.
WMO_CODES = {
    0: "clear sky", 1: "mainly clear", 2: "partly cloudy", 3: "overcast", 45: "fog", 48: "rime fog",
    51: "light drizzle", 53: "drizzle", 55: "dense drizzle", 56: "freezing drizzle", 57: "freezing drizzle",
    61: "light rain", 63: "rain", 65: "heavy rain", 66: "freezing rain", 67: "freezing rain",
    71: "light snow", 73: "snow", 75: "heavy snow", 77: "snow grains",
    80: "light showers", 81: "showers", 82: "violent showers", 85: "snow showers", 86: "heavy snow showers",
    95: "thunderstorm", 96: "thunderstorm with hail", 99: "thunderstorm with heavy hail",
}


class WeatherApi(ApiSpec):
    """Open-Meteo's current weather at "lat,lon" (rounded to 0.1° again: no finer than it needs)."""

    def normalise(self, query: str) -> str:
        try:
            lat_s, lon_s = query.split(",")
            lat, lon = float(lat_s), float(lon_s)
        except ValueError:
            raise _bad(f"weather query {query!r} is not 'lat,lon'") from None
        if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
            raise _bad(f"weather position {query!r} is off the globe")
        return f"{lat:.1f},{lon:.1f}".replace("-0.0", "0.0")

    def url_for(self, normalised: str) -> str:
        lat, lon = normalised.split(",")
        return _with_query(self.url, {"latitude": lat, "longitude": lon,
                                      "current": "temperature_2m,wind_speed_10m,weather_code"})

    def summarise(self, body: bytes, normalised: str) -> str:
        doc = _json(body)
        current = doc.get("current") if isinstance(doc, dict) else None
        if not isinstance(current, dict):
            raise _upstream("no 'current' object")
        units = doc.get("current_units") if isinstance(doc.get("current_units"), dict) else {}
        parts = []
        code = current.get("weather_code")
        if isinstance(code, (int, float)) and not isinstance(code, bool):
            parts.append(WMO_CODES.get(int(code), f"weather code {int(code)}"))
        temp, wind = current.get("temperature_2m"), current.get("wind_speed_10m")
        if isinstance(temp, (int, float)) and not isinstance(temp, bool):
            parts.append(f"{temp:.0f} {units.get('temperature_2m', '°C')}")
        if isinstance(wind, (int, float)) and not isinstance(wind, bool):
            parts.append(f"wind {wind:.0f} {units.get('wind_speed_10m', 'km/h')}")
        if not parts:
            raise _upstream("current weather without temperature, wind or code")
        return f"Weather at {normalised}: " + ", ".join(parts) + "."


_WORD = re.compile(r"[^\W\d_]+(?:[-'][^\W\d_]+)*")


class DefineApi(ApiSpec):
    """The Free Dictionary API: the first definition of one word."""

    def normalise(self, query: str) -> str:
        word = query.strip().lower()
        if not 1 <= len(word) <= 40 or not _WORD.fullmatch(word):
            raise _bad(f"define query {query!r} is not one word")
        return word

    def url_for(self, normalised: str) -> str:
        return self.url.rstrip("/") + "/" + urllib.parse.quote(normalised)

    def summarise(self, body: bytes, normalised: str) -> str:
        doc = _json(body)
        if not isinstance(doc, list):
            raise _upstream("dictionary answer is not a list of entries")
        for entry in doc:
            for meaning in (entry.get("meanings") or []) if isinstance(entry, dict) else []:
                if not isinstance(meaning, dict):
                    continue
                for d in meaning.get("definitions") or []:
                    text = d.get("definition") if isinstance(d, dict) else None
                    if isinstance(text, str) and text.strip():
                        pos = meaning.get("partOfSpeech")
                        word = entry.get("word") if isinstance(entry.get("word"), str) else normalised
                        return f"{word} ({pos}): {text}" if isinstance(pos, str) and pos else f"{word}: {text}"
        raise ApiFailure(ApiStatus.NOT_FOUND, f"no definition of {normalised!r}")


_ATOM = "{http://www.w3.org/2005/Atom}"


class NewsApi(ApiSpec):
    """The first headlines of an RSS (or Atom) feed; every query means "headlines"."""

    def __init__(self, url: str, headlines: int = 3):
        super().__init__(url)
        if isinstance(headlines, bool) or not isinstance(headlines, int) or headlines < 1:
            raise ValueError(f"headlines must be a whole number >= 1, got {headlines!r}")
        self.headlines = headlines

    def normalise(self, query: str) -> str:
        return "headlines"

    def url_for(self, normalised: str) -> str:
        return self.url

    def summarise(self, body: bytes, normalised: str) -> str:
        if b"<!ENTITY" in body:  # entity expansion is for attacks, never for a news feed
            raise _upstream("feed declares entities")
        try:
            root = ET.fromstring(body)
        except ET.ParseError as e:
            raise _upstream(f"feed is not XML: {e}") from None
        titles = [el.text for el in (*root.iterfind("./channel/item/title"), *root.iterfind("./item/title"),
                                     *root.iterfind(f"./{_ATOM}entry/{_ATOM}title"))]
        titles = [clean(t) for t in titles if t and clean(t)]
        if root.tag not in ("rss", f"{_ATOM}feed") and not titles and not root.tag.endswith("RDF"):
            raise _upstream(f"feed root <{root.tag}> is neither RSS nor Atom")
        if not titles:
            raise ApiFailure(ApiStatus.NOT_FOUND, "feed has no items")
        return "Headlines: " + "; ".join(titles[:self.headlines]) + "."


BACKENDS: dict[str, type[ApiSpec]] = {"weather": WeatherApi, "define": DefineApi, "news": NewsApi}


def default_apis(weather_url: str = DEFAULT_WEATHER_URL, define_url: str = DEFAULT_DEFINE_URL,
                 news_url: str = DEFAULT_NEWS_URL, headlines: int = 3) -> dict[str, ApiSpec]:
    return {"weather": WeatherApi(weather_url), "define": DefineApi(define_url),
            "news": NewsApi(news_url, headlines)}


# --------------------------------------------------------------------------- the proxy


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
        self._pending = 0
        self._idle = threading.Condition(self._lock)
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

        def wait_s(state: tenacity.RetryCallState) -> float:
            return self.retry_wait_s * 2 ** (state.attempt_number - 1)

        def stop(state: tenacity.RetryCallState) -> bool:
            return (state.attempt_number >= self.retry_attempts or self._stop.is_set()
                    or deadline - self._clock() <= wait_s(state) + 0.05)

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_Transient), wait=wait_s, stop=stop,
            sleep=self._stop.wait, reraise=True,
            before_sleep=lambda s: log.info("api_retry", url=url, attempt=s.attempt_number,
                                            error=str(s.outcome.exception())[:120]),
        )
        try:
            return retrying(self._fetch_once, url, deadline)
        except _Transient as e:
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
                        raise _upstream(f"body over {MAX_BODY_BYTES} bytes")
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
                raise _Transient(_upstream(f"connection broke: {e}")) from None
            if _is_network_down(e):
                offline = self._offline_check()
                raise ApiFailure(ApiStatus.OFFLINE if offline else ApiStatus.UPSTREAM_ERROR,
                                 f"cannot reach {url}: {e}") from None
            raise _upstream(f"{type(e).__name__}: {e}") from None

    @staticmethod
    def _http_failure(code: int) -> ApiFailure | _Transient:
        if code == 404 or code == 410:
            return ApiFailure(ApiStatus.NOT_FOUND, f"HTTP {code}")
        if code == 429:
            return ApiFailure(ApiStatus.RATE_LIMITED, "HTTP 429")
        if code in (400, 422):
            return ApiFailure(ApiStatus.BAD_REQUEST, f"HTTP {code}")
        if code >= 500:
            return _Transient(_upstream(f"HTTP {code}"))
        return _upstream(f"HTTP {code}")

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
                    self._taken = store.answered_requests()
                if (boot, seq) in self._taken:
                    log.debug("api_request_already_answered", boot=boot, seq=seq)
                    return False
                self._taken.add((boot, seq))
                self._pending += 1
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
        from .db import Store  # the worker's own connection: the listener's is the listener's

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
            stores[job.db_path].queue_command(CommandId.API_ANSWER, result.pack(),
                                              what=f"api answer to request {job.boot}/{job.seq}: {status}",
                                              answers=(job.boot, job.seq))
            self.queued += 1
        except Exception:
            self.queue_errors += 1
            log.exception("api_answer_not_queued", boot=job.boot, seq=job.seq)
        finally:
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout_s: float | None = None) -> bool:
        """Wait until every request taken so far has its answer queued; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout=timeout_s)

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


# --------------------------------------------------------------------------- configuration


class ProxyConfigError(ValueError):
    """A proxy configuration file or flag that cannot be used; the message says which and why."""


class ApiTable(Section):
    """One ``[apis.NAME]`` table: the backend that answers NAME and where it asks."""

    type: Literal["weather", "define", "news"] | None = Field(None, description="the backend (default: NAME)")
    url: str | None = Field(None, description="the endpoint (default: the backend's public one)")
    headlines: int | None = Field(None, ge=1, description="news: headlines in one answer (default 3)")


def _all_apis() -> dict[str, ApiTable]:
    return {name: ApiTable() for name in BACKENDS}


class ProxyFile(Section):
    """The file `--api-config` names. Only the APIs listed under [apis] are answered."""

    timeout_s: float | None = Field(None, ge=0, strict=True, description="longest one lookup may take, retries included")
    cache_s: float | None = Field(None, ge=0, strict=True, description="how long an answer is reused")
    apis: dict[str, ApiTable] = Field(default_factory=_all_apis)


def load_config(path: str | Path | None, *, weather_url: str | None = None, define_url: str | None = None,
                news_url: str | None = None) -> dict:
    """ApiProxy keyword arguments (with `apis`) from a TOML file (None: defaults), then flags."""
    try:
        doc = load_toml(path, ProxyFile) if path is not None else ProxyFile()
    except ConfigError as e:
        raise ProxyConfigError(f"API proxy config {e}") from e
    defaults = {"weather": DEFAULT_WEATHER_URL, "define": DEFAULT_DEFINE_URL, "news": DEFAULT_NEWS_URL}
    overrides = {"weather": weather_url, "define": define_url, "news": news_url}
    apis: dict[str, ApiSpec] = {}
    for name, table in doc.apis.items():
        kind = table.type or name
        if kind not in BACKENDS:
            raise ProxyConfigError(f"API proxy config {path}: apis.{name} has no type among "
                                   f"{', '.join(BACKENDS)} (set type = ...)")
        if table.headlines is not None and kind != "news":
            raise ProxyConfigError(f"API proxy config {path}: apis.{name}: headlines is for news only")
        url = overrides.get(name) or table.url or defaults[kind]
        try:
            apis[name] = NewsApi(url, table.headlines or 3) if kind == "news" else BACKENDS[kind](url)
        except ValueError as e:
            raise ProxyConfigError(f"API proxy config {path}: apis.{name}: {e}") from e
    out: dict = {"apis": apis}
    for key in ("timeout_s", "cache_s"):
        if getattr(doc, key) is not None:
            out[key] = float(getattr(doc, key))
    return out


def add_proxy_arguments(parser: argparse.ArgumentParser) -> None:
    """`--api-proxy` and its options, on the `listen` parser."""
    group = parser.add_argument_group(
        "API proxy (with --flight-key)",
        "With --api-proxy the ground answers the payload's API requests (weather, define, news) "
        "from real HTTP APIs and queues each answer as a signed API_ANSWER for the payload's next "
        "listen window. Default sources: Open-Meteo, the Free Dictionary API, BBC world news RSS.")
    group.add_argument("--api-proxy", action="store_true", help="answer the payload's API requests")
    group.add_argument("--api-config", type=Path, metavar="FILE",
                       help="TOML file: timeout_s, cache_s and an [apis.NAME] table (url, type, headlines) "
                            "per allowed API; only the APIs listed there are answered")
    group.add_argument("--api-timeout", type=float, metavar="SECONDS",
                       help="longest one lookup may take, retries included (default 8)")
    group.add_argument("--api-weather-url", metavar="URL", help="Open-Meteo forecast endpoint")
    group.add_argument("--api-define-url", metavar="URL", help="Free Dictionary API base (…/entries/en)")
    group.add_argument("--api-news-url", metavar="URL", help="RSS or Atom feed for the news")


def proxy_from_args(args: argparse.Namespace) -> ApiProxy | None:
    """The ApiProxy `listen` asked for, or None without --api-proxy. ProxyConfigError (a
    ValueError) for a bad file, URL or timeout: a start-up error."""
    if not getattr(args, "api_proxy", False):
        return None
    kwargs = load_config(getattr(args, "api_config", None), weather_url=getattr(args, "api_weather_url", None),
                         define_url=getattr(args, "api_define_url", None),
                         news_url=getattr(args, "api_news_url", None))
    if getattr(args, "api_timeout", None) is not None:
        kwargs["timeout_s"] = args.api_timeout
    try:
        return ApiProxy(kwargs.pop("apis"), tag_len=getattr(args, "tag_len", DEFAULT_TAG_LEN),
                        mtu=getattr(args, "uplink_mtu", DEFAULT_MTU), **kwargs)
    except ValueError as e:
        raise ProxyConfigError(str(e)) from e
