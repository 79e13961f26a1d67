"""What every upload to a HAB server shares: a queue, a background thread that sends it in
batches of JSON, retries with back-off, and a bad item split out of its batch so it never
holds up the others. SondeHub's telemetry (`sondehub.py`) and the SSDV server's picture
packets (`ssdv_upload.py`) are both this, with their own body, key and log fields.

Delivery: `_enqueue()` puts an item (built in the caller's thread) in the queue; one thread
sends a batch every `batch_interval_s` or as soon as `batch_max_items` wait, so a slow server
never stalls decoding. 5xx answers and connection errors are retried with exponential
back-off and jitter (tenacity, bounded attempts); any other non-2xx answer (4xx, a redirect)
never is. A redirect is never followed: urllib would turn a POST into a GET without its body,
and the server's answer to that would look like success.

One bad item never holds up the others. A batch that is refused (4xx) or still failing (5xx)
after its retries is split in halves, each sent on its own, down to the item the server will
not take: refused, it is dropped at once; failing, it is dropped as soon as the server has
taken another item in the same round (then the fault is that item's, not the server's). Two
items in a row failing with nothing taken looks like the server, not the data: they go back
to the front of the queue with a strike, and an item is dropped at its `failing_rounds`-th
strike, so even a long outage answered with 5xx costs a bounded number of requests per
round. Without any answer (the network) the batch goes back to the front of the queue,
whole, for the next round. Every drop is counted and logged with the server's answer.
`close()` sends what is queued until its deadline, a round every `retry_initial_s` while the
server does not take them (it may come back in time); what is left is counted and logged.

Counters in `stats` (a Counter): queued, sent, batches_sent, retries, rejected_batches,
rejected_items (refused, 4xx), failed_items (given up after 5xx), dropped_overflow (beyond
`max_queue`), failed_rounds, requeued_batches, skipped_duplicate, after_close,
unsent_at_close; `summary()` folds them into sent / refused / dropped / unsent.
Log events are named `<name>_<what>` (`sondehub_rejected`, `ssdv_packet_dropped`...).
"""

from __future__ import annotations

import enum
import http.client
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from abc import ABC, abstractmethod
from collections import Counter, deque
from collections.abc import Hashable
from dataclasses import dataclass
from email.utils import formatdate
from typing import Generic, TypeVar

import structlog
import tenacity

log = structlog.get_logger(__name__)

BODY_LOG_CHARS = 2000  # of a server's answer, in a log line

T = TypeVar("T")


@dataclass(frozen=True)
class UploadPolicy:
    """Every timing and limit of an uploader, in seconds; tests pass a fast one."""

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
    failing_rounds: int = 3  # strikes (rounds failing with nothing taken) before an item is given up

    def __post_init__(self) -> None:
        check_seconds(self, ("batch_interval_s", "request_timeout_s", "retry_initial_s", "retry_max_s",
                              "retry_jitter_s", "flush_timeout_s", "close_deadline_s"))
        for name in ("batch_max_items", "retry_attempts", "max_queue", "failing_rounds"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")


def check_seconds(policy: object, names: tuple[str, ...]) -> None:
    for name in names:
        v = getattr(policy, name)
        if isinstance(v, bool) or not (isinstance(v, (int, float)) and v >= 0):
            raise ValueError(f"{name} must be a number of seconds >= 0, got {v!r}")


def check_url(url: str, what: str, default: str) -> str:
    """`url` if it is http(s) with a host; ValueError naming `what` and its usual URL otherwise."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{url!r} is not an http(s) URL ({what}'s is {default})")
    return url


class _ServerError(Exception):
    """A 5xx answer: worth another try."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}")
        self.status, self.body = status, body


class _Rejected(Exception):
    """Any other non-2xx answer (4xx, a redirect we do not follow): never retried."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}")
        self.status, self.body = status, body


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # urllib then raises the 3xx as an HTTPError: refused, with the server's answer


def _transient(e: BaseException) -> bool:
    # HTTPError is a URLError is an OSError, but it never gets here: _request turns it
    # into _ServerError or _Rejected. What remains is the network (refused, reset, timed out).
    return isinstance(e, (_ServerError, urllib.error.URLError, OSError, http.client.HTTPException))


class Outcome(enum.Enum):
    SENT = "sent"
    REFUSED = "refused"  # 4xx: the server's word on what we sent
    FAILING = "failing"  # 5xx after every retry
    NO_ANSWER = "no answer"  # the network, after every retry, or close() gave up waiting


@dataclass(frozen=True)
class Answer:
    outcome: Outcome
    status: int | None = None
    body: str = ""


class BatchUploader(ABC, Generic[T]):
    """The queue, the thread, the retries and the splitting; see the module docstring.

    A subclass names itself (`name`, `item_noun`, the hints for what was not sent), says how an
    item is known (`_key`: never queued twice) and logged (`_describe`), builds a request body
    from a batch (`_encode`), and calls `_start()` at the end of its `__init__`. It may have a
    chore the thread does between rounds (`_chore_due`, `_chore`: SondeHub's station upload)."""

    name = "upload"  # log events are `<name>_<what>`; the thread is `<name>-upload`
    item_noun = "item"  # `<name>_<item_noun>_dropped`
    drop_hint = "it is in the database"
    unsent_hint = "they are in the database"

    def __init__(self, url: str, *, method: str, policy: UploadPolicy, user_agent: str) -> None:
        self.url, self.method, self.policy = url, method, policy
        self._user_agent = user_agent
        self._opener = urllib.request.build_opener(_NoRedirect)
        self.stats: Counter[str] = Counter()
        self._queue: deque[T] = deque()
        self._seen: set[Hashable] = set()  # keys ever queued: a flight's worth
        self._strikes: Counter[Hashable] = Counter()  # rounds an item failed in with nothing taken
        self._cond = threading.Condition()
        self._flush_asked = self._flush_done = 0  # generations: flush() waits for a round begun after it asked
        self._closing = False
        self._close_by = float("inf")
        self._abort = threading.Event()  # the close deadline passed: stop retrying and back-off sleeps at once
        self._last_round_failed = False
        p = policy
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
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-upload", daemon=True)

    def _start(self) -> None:
        self._thread.start()

    # ------------------------------------------------------------------ what a subclass says

    @abstractmethod
    def _key(self, item: T) -> Hashable:
        ...

    @abstractmethod
    def _describe(self, item: T) -> dict:
        """The item in a log line: a few fields that name it."""
        ...

    @abstractmethod
    def _encode(self, batch: list[T]) -> tuple[bytes, dict[str, str]]:
        """The request body for `batch`, and any headers beyond Content-Type and User-Agent."""
        ...

    def _log_sent(self, batch: list[T], answer: Answer) -> None:
        log.info(f"{self.name}_uploaded", items=len(batch), status=answer.status)

    def _chore_due(self) -> float:
        """When (time.monotonic()) the thread should next do its chore; inf for never."""
        return float("inf")

    def _chore(self, closing: bool) -> None:
        """Work the thread does before a round once `_chore_due()` has passed."""

    # ------------------------------------------------------------------ caller's side

    def _enqueue(self, item: T) -> bool:
        """Queue `item` unless one with its key was queued before or close() has begun."""
        key = self._key(item)
        with self._cond:
            if self._closing:
                self.stats["after_close"] += 1
                return False
            if key in self._seen:
                self.stats["skipped_duplicate"] += 1
                return False
            self._seen.add(key)
            self._queue.append(item)
            self.stats["queued"] += 1
            if len(self._queue) > self.policy.max_queue:
                self._queue.popleft()  # its strikes, if any, stay: the thread alone touches them
                self.stats["dropped_overflow"] += 1
                if self.stats["dropped_overflow"] == 1:
                    log.warning(f"{self.name}_queue_full", max_queue=self.policy.max_queue,
                                hint="oldest dropped; they are in the database for a later export")
            if len(self._queue) >= self.policy.batch_max_items:
                self._cond.notify_all()
        return True

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._queue)

    def summary(self) -> dict[str, int]:
        """sent; refused (4xx); dropped (given up after 5xx, or beyond max_queue); unsent at close."""
        s = self.stats
        return {"sent": s["sent"], "refused": s["rejected_items"],
                "dropped": s["failed_items"] + s["dropped_overflow"], "unsent": s["unsent_at_close"]}

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
            log.warning(f"{self.name}_unsent", items=unsent, url=self.url, hint=self.unsent_hint)
        log.info(f"{self.name}_closed", **dict(self.stats))

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        p = self.policy
        while True:
            with self._cond:
                wake_at = time.monotonic() + p.batch_interval_s
                while not (self._closing or self._flush_asked > self._flush_done
                           or (len(self._queue) >= p.batch_max_items and not self._last_round_failed)):
                    left = min(wake_at, self._chore_due()) - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                generation, closing = self._flush_asked, self._closing
            if time.monotonic() >= self._chore_due():
                self._chore(closing)
            ok = self._round()
            with self._cond:
                self._last_round_failed = not ok
                self._flush_done = max(self._flush_done, generation)
                self._cond.notify_all()
                if closing and (not self._queue or self._abort.is_set() or time.monotonic() >= self._close_by):
                    return
            if closing and not ok:  # the server is away: a pause before the next round, not a spin
                self._abort.wait(min(p.retry_initial_s, max(0.0, self._close_by - time.monotonic())))

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

    def _deliver(self, batch: list[T]) -> bool:
        """One batch, split around whatever the server will not take (see the module docstring).
        False when the round should end: what is left is back at the front of the queue."""
        work: deque[list[T]] = deque([batch])
        taken_any = False
        suspect: tuple[T, Answer] | None = None  # an item that failed alone, before anything was taken
        while work:
            part = work.popleft()
            answer = self._send(part)
            if answer.outcome is Outcome.SENT:
                taken_any = True
                if suspect is not None:  # the server works: the fault is the suspect's
                    self._drop(*suspect)
                    suspect = None
                continue
            if answer.outcome is Outcome.NO_ANSWER:
                self._requeue([*(suspect[:1] if suspect else ()), *part, *(o for rest in work for o in rest)])
                return False
            if len(part) > 1:
                mid = len(part) // 2
                work.extendleft((part[mid:], part[:mid]))  # first half first: order kept
                continue
            if answer.outcome is Outcome.REFUSED or taken_any:
                self._drop(part[0], answer)
            elif suspect is None:
                suspect = (part[0], answer)
            else:  # two in a row failing, nothing taken: more likely the server than both items
                self._strike([suspect, (part[0], answer)], [o for rest in work for o in rest])
                return False
        if suspect is not None:  # it was the last, and nothing else was taken: the same doubt
            self._strike([suspect], [])
            return False
        return True

    def _drop(self, item: T, answer: Answer) -> None:
        refused = answer.outcome is Outcome.REFUSED
        self.stats["rejected_items" if refused else "failed_items"] += 1
        self._strikes.pop(self._key(item), None)
        log.error(f"{self.name}_{self.item_noun}_dropped",
                  why="refused by the server" if refused else "the server fails on it, and takes the others",
                  status=answer.status, **self._describe(item), url=self.url,
                  body=answer.body[:BODY_LOG_CHARS], hint=self.drop_hint)

    def _strike(self, failed: list[tuple[T, Answer]], rest: list[T]) -> None:
        """The failing items get a strike and go back (the last strike drops them), then the rest."""
        self.stats["failed_rounds"] += 1
        back = []
        for item, answer in failed:
            key = self._key(item)
            self._strikes[key] += 1
            if self._strikes[key] >= self.policy.failing_rounds:
                self._drop(item, answer)
            else:
                back.append(item)
        log.warning(f"{self.name}_upload_failed", status=failed[-1][1].status, url=self.url,
                    body=failed[-1][1].body[:BODY_LOG_CHARS], items=len(back) + len(rest),
                    will_retry=not self._abort.is_set())
        self._requeue(back + rest)

    def _requeue(self, items: list[T]) -> None:
        with self._cond:
            self._queue.extendleft(reversed(items))  # first in line next round, order kept
            self.stats["requeued_batches"] += 1

    def _send(self, batch: list[T]) -> Answer:
        body, headers = self._encode(batch)
        answer = self._post(self.url, body, headers, self.method)
        if answer.outcome is Outcome.SENT:
            for item in batch:
                self._strikes.pop(self._key(item), None)
            self.stats["sent"] += len(batch)
            self.stats["batches_sent"] += 1
            self._log_sent(batch, answer)
        elif answer.outcome is Outcome.REFUSED:
            self.stats["rejected_batches"] += 1
            log.warning(f"{self.name}_rejected", status=answer.status, items=len(batch), url=self.url,
                        body=answer.body[:BODY_LOG_CHARS])
        return answer

    def _post(self, url: str, body: bytes, headers: dict[str, str], method: str) -> Answer:
        """One request with its retries, as an answer: never raises for what the server or network does."""
        try:
            status, text = self._retrying(self._request, url, body, headers, method)
        except _Rejected as e:
            return Answer(Outcome.REFUSED, e.status, e.body)
        except _ServerError as e:
            if self._abort.is_set():  # close() cut the retries short: no judgement on the data
                return Answer(Outcome.NO_ANSWER, e.status, e.body)
            return Answer(Outcome.FAILING, e.status, e.body)
        except Exception as e:  # noqa: BLE001 - retries ran out on the network, or the close deadline passed
            log.warning(f"{self.name}_no_answer", error=str(e) or type(e).__name__, url=url,
                        will_retry=not self._abort.is_set())
            return Answer(Outcome.NO_ANSWER, None, str(e) or type(e).__name__)
        return Answer(Outcome.SENT, status, text)

    def _request(self, url: str, body: bytes, headers: dict[str, str], method: str) -> tuple[int, str]:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": self._user_agent,
            "Date": formatdate(usegmt=True),  # lets a server spot an uploader with a wrong clock (SondeHub does)
            **headers,
        }
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
        log.warning(f"{self.name}_retry", attempt=state.attempt_number, error=str(e) or type(e).__name__,
                    wait_s=round(state.upcoming_sleep, 2), body=getattr(e, "body", "")[:BODY_LOG_CHARS])
