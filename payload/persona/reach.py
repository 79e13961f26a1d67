"""The persona reaching out: questions for the ground (weather, news, a word's meaning)
sent down as API request records, answers heard in listen windows, and what became of
each in short plain lines the persona's prompt can carry.

Mostly nothing comes back, and that is the normal case, not an error: the request may
wait behind telemetry, a frame may be lost, the ground may miss the listen window. So::

    ask(api, query)  -> record queued (its seq is the request id), answer due in answer_timeout_s
    on_answer(seq, status, text)      (uplink API_ANSWER, any thread)  -> Outcome
    tick(now)        an attempt unanswered by its due time: re-ask after a jittered,
                     growing delay (new record, new seq; an answer to any earlier seq
                     still counts), at most max_attempts, all within overall_deadline_s;
                     then the outcome is "silent_link"

Each API has a circuit breaker: after `failures_to_open` failures in a row it opens and
the persona stops asking it; after `cooldown_s` it goes half-open and lets one trial
request through (one attempt, no re-asks): success closes it, failure opens it again.

Retry delays come from the project's one back-off policy (`stratoecho.backoff`), not a
retry loop: tenacity's sleeps in the caller's thread, and here the "call" is a record that
may be answered minutes later on the radio's thread. Reach only computes when to re-ask;
`tick` acts.

Nothing raises out of Reach at run time: bad answers, store failures and a clock that
steps back are counted and logged. The policy (`ReachPolicy`) is the one place its
timings live; tests pass a fast one.
"""

from __future__ import annotations

import enum
import functools
import math
import re
import threading
import unicodedata
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from random import Random
from typing import Annotated, Callable, Iterable

import structlog
from pydantic import BaseModel, ConfigDict, Field

from stratoecho.backoff import Backoff
from stratoecho.languages import words as words_for
from stratoecho.wire.uplink import ApiStatus

log = structlog.get_logger(__name__)

DEFAULT_APIS = ("weather", "news", "define")
MAX_LINE_CHARS = 200  # one describe() line in the prompt
_QUERY_IN_LINE_CHARS = 40


# --------------------------------------------------------------------------- policy


Seconds = Annotated[float, Field(ge=0)]
Count = Annotated[int, Field(ge=1)]


class ReachPolicy(BaseModel):
    """Every timing and limit of Reach, in seconds of the clock Reach is given."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, strict=True)

    answer_timeout_s: Seconds = 600.0  # one attempt: the record may wait behind telemetry, then a listen window
    overall_deadline_s: Seconds = 3600.0  # first send to giving up, all attempts
    max_attempts: Count = 3
    retry_initial_s: Seconds = 120.0  # delay before the 2nd attempt; doubles each time
    retry_max_s: Seconds = 900.0
    retry_jitter_s: Seconds = 60.0  # added at random; at most retry_initial_s keeps delays growing
    failures_to_open: Count = 5  # consecutive failures that open an API's breaker
    cooldown_s: Seconds = 1800.0  # open -> half-open
    max_outstanding: Count = 2  # requests in flight, all APIs together: airtime is scarce
    max_query_bytes: Count = 120  # UTF-8; keeps the request record inside one frame at MTU 255
    max_answer_chars: Count = 160  # answer text kept for the prompt
    history: Count = 32  # outcomes kept for recent_outcomes()
    remember_finished: Count = 256  # finished seqs kept to tell late/duplicate answers from unknown ones
    every_n_musings: Count = 10  # consider(): at most one request per this many musings

    def retry_delay_s(self, attempts_made: int) -> float:
        """Seconds to wait, after attempt `attempts_made` went unanswered, before the next:
        retry_initial_s * 2**(attempts_made-1) + uniform(0, retry_jitter_s), capped at retry_max_s
        (jitter included: the cap is the longest any re-ask waits)."""
        grown = Backoff(initial_s=self.retry_initial_s, factor=2.0, max_s=math.inf, jitter_s=self.retry_jitter_s)
        return min(self.retry_max_s, grown.delay_s(max(1, attempts_made)))


# --------------------------------------------------------------------------- outcomes


class OutcomeKind(enum.StrEnum):
    # What the ground said (ApiStatus, by name) ...
    OK = "ok"
    NOT_FOUND = "not_found"
    REFUSED = "refused"
    TIMEOUT = "timeout"
    UPSTREAM_ERROR = "upstream_error"
    BAD_REQUEST = "bad_request"
    RATE_LIMITED = "rate_limited"
    OFFLINE = "offline"
    # ... and what happened on our side.
    SILENT_LINK = "silent_link"  # no answer to any attempt
    CIRCUIT_OPEN = "circuit_open"  # the breaker opened: this API is not asked for a while
    NOT_SENT = "not_sent"  # the store would not take the request record


assert {s.name for s in ApiStatus} <= {k.name for k in OutcomeKind}

# Outcomes that say the API (or the way to it) is not working: they open the breaker.
# not_found and bad_request are answers from a working API; not_sent is our card's fault.
_BREAKER_FAILURES = frozenset({
    OutcomeKind.SILENT_LINK, OutcomeKind.TIMEOUT, OutcomeKind.UPSTREAM_ERROR, OutcomeKind.OFFLINE,
    OutcomeKind.RATE_LIMITED, OutcomeKind.REFUSED,
})
_BREAKER_SUCCESSES = frozenset({OutcomeKind.OK, OutcomeKind.NOT_FOUND, OutcomeKind.BAD_REQUEST})


@dataclass(frozen=True)
class Outcome:
    """How one request ended. `text` is cleaned and clipped; `attempts` is how many records
    were sent (for circuit_open: how many failures in a row opened the breaker)."""

    api: str
    query: str
    kind: OutcomeKind
    text: str
    at: float
    attempts: int = 1


_ESCAPE_SEQUENCE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x9b[0-?]*[ -/]*[@-~]")


def clean_text(text, limit: int) -> str:
    """Text safe for a prompt: control and format characters (bidi overrides, zero-width,
    escape sequences) become spaces, whitespace runs one space, at most `limit` characters."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", "replace")
    elif not isinstance(text, str):
        return ""
    text = _ESCAPE_SEQUENCE.sub(" ", text)  # whole sequences, not just the ESC: "[31m" is noise too
    text = "".join(" " if unicodedata.category(ch)[0] == "C" else ch for ch in text)
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[:max(0, limit - 1)].rstrip() + "…"
    return text


def _times(n: int, words) -> str:
    return words.times[n - 1] if 1 <= n <= len(words.times) else words.times_more.format(n=n)


def describe(outcome: Outcome, language: str | None = None) -> str:
    """One short line for the persona's prompt, e.g. "asked for the news: nobody answered", in the
    persona's language: the [outcomes] of its file (stratoecho/languages/). A language without a
    file has no words for it: the answer's own text where one came, else nothing (the prompt
    leaves an empty line out), never a line in another language."""
    own = words_for(language)
    if own is None:
        return clean_text(outcome.text, MAX_LINE_CHARS) if outcome.kind is OutcomeKind.OK else ""
    words = own.outcomes
    api = clean_text(outcome.api, 20) or "?"
    query = clean_text(outcome.query, _QUERY_IN_LINE_CHARS)
    result = words.result
    if outcome.kind is OutcomeKind.CIRCUIT_OPEN:
        line = result["stopped"].format(topic=words.topic.get(api, api), times=_times(outcome.attempts, words))
    else:
        asked = words.asked.get(api, words.asked["other"]).format(api=api, query=query)
        if outcome.kind is OutcomeKind.SILENT_LINK and outcome.attempts > 1:
            asked += f" ({_times(outcome.attempts, words)})"
        said = result.get(outcome.kind.value, result["unknown"])  # a language's word for each kind, by its value
        if outcome.kind is OutcomeKind.OK and not outcome.text:
            said = result["empty"]
        line = f"{asked}: " + said.format(text=clean_text(outcome.text, MAX_LINE_CHARS))
    return clean_text(line, MAX_LINE_CHARS)


# --------------------------------------------------------------------------- choosing

# Long words a musing uses all the time: not worth a define request.
COMMON_LONG_WORDS = frozenset("""
    something everything everywhere somewhere sometimes beautiful wonderful yesterday tomorrow
    different important interesting experience afternoon knowledge understand understanding
    remember wondering everybody somebody anything anywhere nothing together themselves
    ourselves yourself yourselves community information beginning certainly definitely
    especially generally immediately particular particularly perfectly possibility probably
    suddenly temperature altitude atmosphere horizon pressure completely absolutely
    """.split())
_WORD = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*")


def pick_word(text: str | None, min_len: int = 9) -> str | None:
    """The longest uncommon word of `text` (lower case; the first of equals), or None."""
    if not isinstance(text, str):
        return None
    words = [w.lower() for w in _WORD.findall(text)]
    words = [w for w in words if len(w) >= min_len and w not in COMMON_LONG_WORDS]
    return max(words, key=len) if words else None


def rounded_position(readings_summary: dict) -> str | None:
    """'lat,lon' to 0.1° (~11 km: enough for weather, no finer than it needs); None without a fix."""
    try:
        lat, lon = float(readings_summary["lat"]), float(readings_summary["lon"])
    except (KeyError, TypeError, ValueError):
        return None
    if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    if lat == 0.0 and lon == 0.0:  # what a GPS without a fix reports
        return None
    return f"{lat:.1f},{lon:.1f}"


def choose_request(readings_summary: dict, last_musing: str | None, rng: Random, *,
                   musings_since_last: int | None = None, every_n_musings: int = 10,
                   apis: Iterable[str] = DEFAULT_APIS, min_word_len: int = 9) -> tuple[str, str] | None:
    """What the persona might ask now, or (most of the time) None. Pure: same inputs and rng
    state, same answer.

    With `musings_since_last` (musings since the last request was sent, this one included),
    nothing while it is below `every_n_musings`, then a coin flip each musing so the asking
    stays irregular: at most one request per `every_n_musings` musings. Without it, a request
    with probability 1/`every_n_musings`.

    Candidates: the weather at the rounded position (when there is a fix), the meaning of
    the last musing's longest uncommon word, the news headlines.
    """
    n = max(1, int(every_n_musings))
    if musings_since_last is not None:
        if musings_since_last < n or rng.random() >= 0.5:
            return None
    elif rng.random() >= 1.0 / n:
        return None
    apis = set(apis)
    options: list[tuple[str, str]] = []
    position = rounded_position(readings_summary) if isinstance(readings_summary, dict) else None
    if "weather" in apis and position:
        options.append(("weather", position))
    word = pick_word(last_musing, min_word_len)
    if "define" in apis and word:
        options.append(("define", word))
    if "news" in apis:
        options.append(("news", "headlines"))
    return rng.choice(options) if options else None


# --------------------------------------------------------------------------- the breaker


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class _Breaker:
    state: BreakerState = BreakerState.CLOSED
    failures: int = 0  # consecutive
    opened_at: float = 0.0
    trial: object | None = None  # the half-open trial request, while it is out


@dataclass(eq=False)
class _Request:
    api: str
    query: str
    started: float
    seqs: list[int] = field(default_factory=list)
    answer_due: float | None = None  # waiting for an answer until then
    reask_at: float | None = None  # or waiting to send the next attempt
    trial: bool = False


def _never_raises(default=None):
    """Run a public method under the lock; an unexpected error is logged and counted, never
    raised: Reach is called from the radio's listen callback, which must not die."""

    def wrap(fn):
        @functools.wraps(fn)
        def method(self, *args, **kwargs):
            with self._lock:
                try:
                    return fn(self, *args, **kwargs)
                except Exception:
                    self._counts["internal_errors"] += 1
                    log.exception("reach_internal_error", method=fn.__name__)
                    return default() if callable(default) else default
        return method
    return wrap


# --------------------------------------------------------------------------- Reach


class Reach:
    """Requests to the ground's API proxy, their answers, re-asks and breakers.

    `enqueue_request(api, query) -> seq` queues one API_REQUEST record (the daemon's
    `emit`); `clock() -> seconds` is monotonic flight time, and `tick(now)` must
    be given the same clock. Thread-safe: `on_answer` may come from the radio's thread.
    """

    def __init__(self, enqueue_request: Callable[[str, str], int], clock: Callable[[], float], *,
                 apis: Iterable[str] = DEFAULT_APIS, policy: ReachPolicy | None = None,
                 rng: Random | None = None):
        self._enqueue = enqueue_request
        self._clock = clock
        self.apis = tuple(dict.fromkeys(apis))
        self.policy = policy or ReachPolicy()
        self._rng = rng or Random()
        self._lock = threading.RLock()
        self._breakers = {api: _Breaker() for api in self.apis}
        self._requests: list[_Request] = []
        self._by_seq: dict[int, _Request] = {}
        self._finished: OrderedDict[int, str] = OrderedDict()  # seq -> "answered" | "gave_up"
        self._outcomes: deque[Outcome] = deque(maxlen=self.policy.history)
        self._by_kind: Counter[str] = Counter()
        self._not_asked: Counter[str] = Counter()
        self._counts: Counter[str] = Counter()
        self._last_t: float | None = None
        self._clock_offset = 0.0
        self._musings_since = 0  # no request in the first musings after a boot: reboots must not spam

    # ------------------------------------------------------------------ time

    def _now(self, raw=None) -> float:
        """Flight seconds that never go backwards: a step back is absorbed into an offset, so
        deadlines keep their lengths instead of waiting for the clock to catch up."""
        try:
            t = float(self._clock() if raw is None else raw)
        except Exception:
            t = math.nan
        if not math.isfinite(t):
            self._counts["clock_faults"] += 1
            return self._last_t if self._last_t is not None else 0.0
        t += self._clock_offset
        if self._last_t is not None and t < self._last_t:
            self._counts["clock_backwards"] += 1
            log.warning("reach_clock_backwards", by_s=round(self._last_t - t, 3))
            self._clock_offset += self._last_t - t
            t = self._last_t
        self._last_t = t
        return t

    # ------------------------------------------------------------------ asking

    @_never_raises()
    def ask(self, api: str, query: str) -> int | None:
        """Queue a request; its record's seq, or None when not sent (reason counted in stats)."""
        now = self._now()
        reason = self._refusal(api, query, now)
        if reason is not None:
            self._not_asked[reason] += 1
            log.debug("api_not_asked", api=api, reason=reason)
            return None
        breaker = self._breakers[api]
        req = _Request(api, query, started=now, trial=breaker.state is BreakerState.HALF_OPEN)
        if req.trial:
            breaker.trial = req
        self._requests.append(req)
        return req.seqs[-1] if self._send(req, now) else None

    def _refusal(self, api, query, now: float) -> str | None:
        if not isinstance(api, str) or api not in self._breakers:
            return "unknown_api"
        if not isinstance(query, str) or not query.strip():
            return "empty_query"
        try:
            if len(query.encode("utf-8")) > self.policy.max_query_bytes:
                return "query_too_long"
        except UnicodeEncodeError:  # lone surrogates cannot go in a record
            return "bad_query"
        if not self._breaker_allows(api, now):
            return "circuit_open"
        if len(self._requests) >= self.policy.max_outstanding:
            return "too_many_outstanding"
        if any(r.api == api and r.query == query for r in self._requests):
            return "already_asked"
        return None

    def _breaker_allows(self, api: str, now: float) -> bool:
        b = self._breakers[api]
        if b.state is BreakerState.OPEN and now >= b.opened_at + self.policy.cooldown_s:
            self._transition(api, BreakerState.HALF_OPEN)
        return b.state is BreakerState.CLOSED or (b.state is BreakerState.HALF_OPEN and b.trial is None)

    def _send(self, req: _Request, now: float) -> bool:
        """One attempt: a new record. False (and the request finished as not_sent) if the
        store would not take it."""
        try:
            seq = self._enqueue(req.api, req.query)
            if isinstance(seq, bool) or not isinstance(seq, int):
                raise TypeError(f"enqueue returned {seq!r}, not a sequence number")
        except Exception as e:
            log.warning("api_request_not_sent", api=req.api, error=str(e))
            self._finish(req, OutcomeKind.NOT_SENT, clean_text(str(e), self.policy.max_answer_chars), now)
            return False
        if seq in self._by_seq:  # a store handing out a seq twice: the old request cannot be told apart
            self._counts["seq_reused"] += 1
        self._by_seq[seq] = req
        self._finished.pop(seq, None)
        req.seqs.append(seq)
        req.answer_due, req.reask_at = now + self.policy.answer_timeout_s, None
        log.info("api_request", api=req.api, query=req.query, seq=seq, attempt=len(req.seqs))
        return True

    @_never_raises()
    def consider(self, readings_summary: dict, last_musing: str | None) -> int | None:
        """After each musing: maybe ask something (`choose_request` at the policy's rate, among
        the APIs that may be asked now). The request's seq, or None."""
        now = self._now()
        self._musings_since += 1
        apis = [a for a in self.apis if self._breaker_allows(a, now)]
        choice = choose_request(readings_summary, last_musing, self._rng,
                                musings_since_last=self._musings_since,
                                every_n_musings=self.policy.every_n_musings, apis=apis)
        if choice is None:
            return None
        seq = self.ask(*choice)
        if seq is not None:
            self._musings_since = 0
        return seq

    # ------------------------------------------------------------------ answers

    @_never_raises()
    def on_answer(self, request_seq: int, status: int, text: str = "") -> None:
        """An API_ANSWER from the ground. Unknown, late and duplicate answers are counted only."""
        now = self._now()
        if isinstance(request_seq, bool) or not isinstance(request_seq, int):
            self._counts["answers_malformed"] += 1
            return
        req = self._by_seq.get(request_seq)
        if req is None:
            how = self._finished.get(request_seq)
            counter = {"answered": "answers_duplicate", "gave_up": "answers_late"}.get(how, "answers_unknown")
            self._counts[counter] += 1
            log.info("api_answer_ignored", seq=request_seq, status=status, why=counter.removeprefix("answers_"))
            return
        try:
            kind = OutcomeKind[ApiStatus(status).name]
        except (ValueError, TypeError):
            self._counts["answers_unknown_status"] += 1
            kind = OutcomeKind.UPSTREAM_ERROR
        self._finish(req, kind, clean_text(text, self.policy.max_answer_chars), now, answered=True)

    # ------------------------------------------------------------------ time passing

    @_never_raises()
    def tick(self, now: float | None = None) -> None:
        """Act on due deadlines: re-ask a silent request or give it up; half-open breakers."""
        now = self._now(now)
        p = self.policy
        for req in list(self._requests):
            if req.answer_due is not None and now >= req.answer_due:
                delay = p.retry_delay_s(len(req.seqs))
                if (not req.trial and len(req.seqs) < p.max_attempts
                        and now + delay + p.answer_timeout_s <= req.started + p.overall_deadline_s):
                    req.answer_due, req.reask_at = None, now + delay
                    log.info("api_request_silent", api=req.api, seq=req.seqs[-1], reask_in_s=round(delay, 1))
                else:
                    self._finish(req, OutcomeKind.SILENT_LINK, "", now)
            elif req.reask_at is not None and now >= req.reask_at:
                if self._breakers[req.api].state is not BreakerState.CLOSED:
                    self._finish(req, OutcomeKind.SILENT_LINK, "", now)  # others failed meanwhile: stop
                else:
                    self._counts["re_asks"] += 1
                    self._send(req, now)
        for api in self.apis:
            self._breaker_allows(api, now)  # open -> half-open shows in stats without waiting for an ask

    # ------------------------------------------------------------------ endings

    def _finish(self, req: _Request, kind: OutcomeKind, text: str, now: float, answered: bool = False) -> None:
        if req in self._requests:
            self._requests.remove(req)
        for seq in req.seqs:
            self._by_seq.pop(seq, None)
            self._finished[seq] = "answered" if answered else "gave_up"
            self._finished.move_to_end(seq)
        while len(self._finished) > self.policy.remember_finished:
            self._finished.popitem(last=False)
        self._record(Outcome(req.api, req.query, kind, text, now, attempts=max(1, len(req.seqs))))
        self._breaker_result(req, kind, now)

    def _record(self, outcome: Outcome) -> None:
        self._outcomes.append(outcome)
        self._by_kind[outcome.kind.value] += 1
        log.info("api_outcome", api=outcome.api, query=outcome.query, kind=outcome.kind.value,
                 attempts=outcome.attempts)

    def _breaker_result(self, req: _Request, kind: OutcomeKind, now: float) -> None:
        b = self._breakers[req.api]
        if kind not in _BREAKER_FAILURES and kind not in _BREAKER_SUCCESSES:
            if b.trial is req:  # the trial never went out: let another one try
                b.trial = None
            return
        failed = kind in _BREAKER_FAILURES
        if b.state is BreakerState.CLOSED:
            b.failures = b.failures + 1 if failed else 0
            if b.failures >= self.policy.failures_to_open:
                self._open(req, now)
        elif b.trial is req:  # only the trial decides a half-open breaker
            b.trial = None
            if failed:
                b.failures += 1
                self._open(req, now)
            else:
                b.failures = 0
                self._transition(req.api, BreakerState.CLOSED)
        # Other requests ending while open or half-open (sent before it opened) change nothing.

    def _open(self, req: _Request, now: float) -> None:
        b = self._breakers[req.api]
        b.opened_at = now
        self._transition(req.api, BreakerState.OPEN)
        self._record(Outcome(req.api, req.query, OutcomeKind.CIRCUIT_OPEN, "", now, attempts=b.failures))

    def _transition(self, api: str, state: BreakerState) -> None:
        b = self._breakers[api]
        if b.state is state:
            return
        log.warning("api_breaker", api=api, old=b.state.value, new=state.value, failures=b.failures)
        b.state = state

    # ------------------------------------------------------------------ reading

    @_never_raises(list)
    def recent_outcomes(self, k: int = 3) -> list[Outcome]:
        """The last `k` outcomes, oldest first."""
        return list(self._outcomes)[-k:] if k > 0 else []

    @_never_raises(dict)
    def stats(self) -> dict:
        """For health and logs: outcomes by kind, requests out, breaker states, odd answers."""
        return {
            "outcomes": {k.value: self._by_kind[k.value] for k in OutcomeKind},
            "outstanding": len(self._requests),
            "breakers": {api: b.state.value for api, b in self._breakers.items()},
            "not_asked": dict(self._not_asked),
            **{name: self._counts[name] for name in (
                "re_asks", "answers_unknown", "answers_late", "answers_duplicate", "answers_malformed",
                "answers_unknown_status", "clock_backwards", "clock_faults", "seq_reused", "internal_errors")},
        }
