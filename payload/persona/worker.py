"""The persona worker: llama-cpp-python in a child process the daemon can kill.

A language model can hang, run out of memory or crash; none of that may take the
position beacon with it. The model lives in its own process (spawned, so no
locks are inherited), answers one request at a time over a pipe, and is killed
and restarted when it overruns its hard timeout, dies, or fails a request.

    daemon (PersonaWorker)                      worker (_serve)
    ----------------------                      ---------------
    start()  spawn ------------------------->   RLIMIT_DATA = memory_limit_mb
                                                open the GGUF, sha256 through that fd
                                                Llama(/proc/self/fd/N)   <- the bytes just hashed
             <----------------------------   ("ready", info) | ("error", why)
    generate()  {"op": "generate", ...} ---->   create_completion(max_tokens, stop, ...)
             <----------------------------   ("ok", text, tokens, seconds, finish) | ("error", why)
                                                | ("refused", why): prompt longer than the context
    ping()      {"op": "ping"} ------------>
             <----------------------------   ("pong", pid)
    close()     None ---------------------->    exit

Every failure (timeout, death by signal, refused sha256, load or generation error)
is a PersonaError for the caller, leaves the reason in `last_error`, and leaves the
object usable: the next generate() starts a fresh worker and counts a restart.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import signal
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

import structlog

from stratoecho.completion import complete, sampling

if TYPE_CHECKING:  # the spawned worker imports this module: keep its imports light
    from stratoecho.bundle import Bundle

log = structlog.get_logger(__name__)

MB = 1024 * 1024
LOAD_TIMEOUT_S = 120.0  # hashing and mapping a 400 MB GGUF from an SD card on a Zero 2 W
CANCEL_POLL_S = 0.2  # how often a load looks whether the daemon is stopping
PING_TIMEOUT_S = 5.0
_HASH_CHUNK = 1 << 20


class PersonaError(Exception):
    """The worker could not produce a musing (timeout, crash, load failure, refused model)."""


@dataclass(frozen=True)
class Generation:
    text: str
    tokens: int
    seconds: float
    finish_reason: str = ""


# ----------------------------------------------------------------------------- worker side


def _sha256_fd(fd: int) -> str:
    h = hashlib.sha256()
    buf = bytearray(_HASH_CHUNK)  # one reused buffer: hashing must fit under the memory limit
    view = memoryview(buf)
    offset = 0
    while n := os.preadv(fd, [buf], offset):
        h.update(view[:n])
        offset += n
    return h.hexdigest()


def proc_status_kb(pid: int | str = "self", keys: tuple[str, ...] = ("VmData", "VmRSS", "VmSize")) -> dict[str, int]:
    """A process's memory figures in kB from /proc/PID/status (Linux; {} elsewhere or once it is
    gone): by default this process's, for the ready message."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in keys:
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def _limit_memory(memory_limit_mb: int | None) -> None:
    """Cap the worker's own memory before anything big is imported or loaded.

    RLIMIT_DATA counts private writable memory (heap, KV cache, compute buffers, thread
    stacks): what actually runs a Pi out of RAM. RLIMIT_AS is not used: it also counts the
    model's read-only file mapping and glibc's 64 MB per-thread arena reservations, so it
    would measure the thread count rather than memory (4 threads: +224 MB address space,
    +27 MB data, measured on llama-cpp-python 0.3).
    """
    if memory_limit_mb is None:
        return
    import resource

    limit = int(memory_limit_mb * MB)
    _soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))


def _serve(conn: Connection, model_path: str, sha256: str, n_ctx: int, n_threads: int,
           memory_limit_mb: int | None) -> None:
    """Child process: check and load the model once, then answer requests until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the daemon's to handle, not ours
    # ggml's abort handler would attach gdb for a backtrace: seconds of CPU on a Pi for a log nobody reads.
    os.environ["GGML_NO_BACKTRACE"] = "1"
    try:
        # If memory runs out, the kernel should take the worker, never the daemon that beacons
        # (the unit lowers the daemon's score; a child inherits it, so the worker raises its own).
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("500")
    except OSError:
        pass  # not Linux, or not allowed: the memory limit below still bounds the worker
    try:
        _limit_memory(memory_limit_mb)
        fd = os.open(model_path, os.O_RDONLY)
        digest = _sha256_fd(fd)
        if digest != sha256:
            conn.send(("error", f"{model_path}: sha256 {digest} is not the verified {sha256}; refusing to load"))
            return
        from llama_cpp import Llama

        # llama.cpp opens /proc/self/fd/N: the inode just hashed, even if the path was replaced since.
        # n_threads_batch defaults to every core (it would starve the beacon during the prompt);
        # logits_all would keep n_ctx x n_vocab floats for nothing. More threads than this process
        # may run on (a board's three on a two-core bench) spin against each other: a generation of
        # a second took minutes.
        n_threads = max(1, min(n_threads, len(os.sched_getaffinity(0))))
        llm = Llama(model_path=f"/proc/self/fd/{fd}", n_ctx=n_ctx, n_threads=n_threads,
                    n_threads_batch=n_threads, logits_all=False, verbose=False)
    except BaseException as e:  # MemoryError under the limit included: report it, don't die silently
        conn.send(("error", f"cannot load {model_path}: {type(e).__name__}: {e}"))
        return
    conn.send(("ready", {"n_ctx": llm.n_ctx(), "pid": os.getpid(), **proc_status_kb()}))
    while True:
        try:
            req = conn.recv()
        except EOFError:
            return  # the daemon is gone
        if req is None:
            return
        op = req.pop("op")
        if op == "ping":
            conn.send(("pong", os.getpid()))
            continue
        n_prompt = len(llm.tokenize(req["prompt"].encode("utf-8"), special=True))
        if n_prompt >= llm.n_ctx():  # a caller's mistake, not the model's: refuse, stay loaded
            conn.send(("refused", f"prompt of {n_prompt} tokens leaves no room in the {llm.n_ctx()}-token context"))
            continue
        try:
            t0 = time.monotonic()
            out = complete(llm, **req)  # stopped at the context's end (stratoecho/completion.py)
            choice = out["choices"][0]
            conn.send(("ok", choice["text"], out["usage"]["completion_tokens"], time.monotonic() - t0,
                       choice.get("finish_reason") or ""))
        except BaseException as e:
            conn.send(("error", f"generation failed: {type(e).__name__}: {e}"))
            return  # llama.cpp's state after a failed decode is unknown: a fresh worker is known


# ----------------------------------------------------------------------------- daemon side


def _exit_reason(proc: mp.process.BaseProcess | None) -> str:
    code = None if proc is None else proc.exitcode
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


class PersonaWorker:
    """The daemon's handle on the worker process. Thread-safe: the think loop calls
    generate(), the watchdog may call ping() at the same time."""

    def __init__(self, bundle: Bundle, n_ctx: int = 256, n_threads: int = 2, timeout_s: float = 60.0,
                 memory_limit_mb: int | None = None, load_timeout_s: float = LOAD_TIMEOUT_S):
        if not bundle.verified:
            bundle.verify()  # sha256 of every file before a model is loaded
        self.bundle = bundle
        self.sha256 = next(e.sha256 for e in bundle.manifest.files if e.path == bundle.manifest.model.file)
        self.n_ctx = min(n_ctx, bundle.manifest.model.context_length)
        self.n_threads = n_threads
        self.timeout_s = timeout_s
        self.load_timeout_s = load_timeout_s
        self.memory_limit_mb = memory_limit_mb
        self.restarts = 0
        self.last_error: str | None = None
        self.info: dict[str, Any] = {}  # the worker's ready message: n_ctx, pid, VmData/VmRSS kB after load
        self._proc: mp.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self._started_before = False
        self._lock = threading.Lock()  # one request on the pipe at a time
        self._cancelled = threading.Event()  # the daemon is stopping: no new worker, no waiting
        self._loading: mp.process.BaseProcess | None = None

    def set_budget(self, timeout_s: float, n_threads: int, n_ctx: int) -> None:
        """What the next musing may cost (payload/policy/budget.py): its deadline at once; threads and
        context at the worker's next start, since a loaded model keeps the ones it was given."""
        self.timeout_s = timeout_s
        self.n_threads = n_threads
        self.n_ctx = min(n_ctx, self.bundle.manifest.model.context_length)

    # -- state

    @property
    def pid(self) -> int | None:
        """The running worker's process id; None when none is running."""
        proc = self._proc
        return proc.pid if proc is not None and proc.is_alive() else None

    @property
    def alive(self) -> bool:
        proc = self._proc
        return proc is not None and proc.is_alive()

    @property
    def busy(self) -> bool:
        """A request (load, generation, ping) is in flight."""
        return self._lock.locked()

    def _fail(self, message: str) -> PersonaError:
        self.last_error = message
        log.warning("persona_failed", error=message, restarts=self.restarts)
        return PersonaError(message)

    # -- lifecycle

    def start(self) -> None:
        """Start a worker unless one is running; PersonaError when it cannot load the model."""
        with self._lock:
            self._start_locked()

    def _start_locked(self) -> None:
        if self._cancelled.is_set():
            raise PersonaError("the daemon is stopping: no persona worker is started")
        if self.alive:
            return
        if self._proc is not None:  # a worker that died while idle: say how
            self.last_error = f"persona worker {self._proc.pid} {_exit_reason(self._proc)}"
        self._discard()
        if self._started_before:
            self.restarts += 1
            log.warning("persona_restart", restarts=self.restarts, last_error=self.last_error)
        self._started_before = True
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=_serve, name="persona-worker", daemon=True,
            args=(child, str(self.bundle.model_path), self.sha256, self.n_ctx, self.n_threads, self.memory_limit_mb),
        )
        self._loading = proc
        proc.start()
        child.close()
        path = self.bundle.model_path
        try:
            loaded = self._wait_loaded(parent)
        finally:
            self._loading = None
        if not loaded:
            self._end(proc, parent)
            if self._cancelled.is_set():
                raise PersonaError(f"the daemon is stopping: persona worker stopped while loading {path}")
            raise self._fail(f"persona worker did not load {path} within {self.load_timeout_s:g} s; killed")
        try:
            msg = parent.recv()
        except (EOFError, OSError):
            self._end(proc, parent)
            raise self._fail(f"persona worker {_exit_reason(proc)} while loading {path}") from None
        if msg[0] != "ready":
            self._end(proc, parent)
            raise self._fail(msg[1])
        self._proc, self._conn, self.info = proc, parent, msg[1]
        log.info("persona_ready", model=self.bundle.manifest.model.file, memory_limit_mb=self.memory_limit_mb, **msg[1])

    def _wait_loaded(self, parent: Connection) -> bool:
        """Wait for the worker's first message, in short slices: a stop must not wait for a load."""
        deadline = time.monotonic() + self.load_timeout_s
        while not self._cancelled.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if parent.poll(min(left, CANCEL_POLL_S)):
                return True
        return False

    def generate(self, prompt: str, max_tokens: int, seed: int | None = None) -> Generation:
        """One completion of at most `max_tokens` tokens, ended early at the bundle's stop strings."""
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {max_tokens} (0 or less means 'to the context's end')")
        req: dict[str, Any] = dict(op="generate", prompt=prompt, max_tokens=int(max_tokens),
                                   **sampling(self.bundle.manifest))
        if seed is not None:
            req["seed"] = seed
        with self._lock:
            self._start_locked()
            msg = self._ask(req, self.timeout_s, "no musing")
        if msg[0] == "refused":
            raise self._fail(msg[1])
        if msg[0] != "ok":
            with self._lock:
                self._kill_locked()  # it exits after a failed request anyway: reap it now
            raise self._fail(msg[1])
        return Generation(text=msg[1], tokens=msg[2], seconds=msg[3], finish_reason=msg[4])

    def ping(self, timeout_s: float = PING_TIMEOUT_S) -> bool:
        """Liveness for the watchdog: True when the worker answers a round trip within `timeout_s`.

        While a generation is in flight it answers from the process state instead of
        queueing behind it (that request has its own hard timeout). A worker that does not
        answer is hung: it is killed, and the next generate() starts a fresh one. Never
        starts a worker itself.
        """
        if not self._lock.acquire(blocking=False):
            return self.alive
        try:
            if not self.alive:
                return False
            try:
                msg = self._ask({"op": "ping"}, timeout_s, "no answer to ping")
            except PersonaError:
                return False
            return msg[0] == "pong"
        finally:
            self._lock.release()

    def _ask(self, req: dict, timeout_s: float, what: str) -> tuple:
        """Send one request and wait for its answer; on timeout or death kill the worker."""
        proc, conn = self._proc, self._conn
        assert proc is not None and conn is not None
        try:
            conn.send(req)
            if not conn.poll(timeout_s):
                self._kill_locked()
                raise self._fail(f"{what} within {timeout_s:g} s from worker {proc.pid}; worker killed")
            return conn.recv()
        except (EOFError, OSError):
            self._end(proc, conn)
            self._proc = self._conn = None
            if self._cancelled.is_set():  # cut short by cancel(): the daemon is stopping, nothing failed
                raise PersonaError("the daemon is stopping: the request was cut short") from None
            raise self._fail(f"persona worker {proc.pid} {_exit_reason(proc)} during a request") from None

    def cancel(self) -> None:
        """The daemon is stopping: a generation or a load in flight ends now (its musing is lost;
        a stop must fit the unit's TimeoutStopSec), and no worker starts again. Never blocks;
        `close()` still reaps what is left."""
        self._cancelled.set()
        for proc in (self._loading, self._proc if self._lock.locked() else None):
            if proc is not None and proc.is_alive():
                proc.kill()

    def kill(self) -> None:
        """Kill the worker at once (SIGKILL reaches a stopped process too)."""
        with self._lock:
            self._kill_locked()

    def _kill_locked(self) -> None:
        if self._proc is not None:
            self._end(self._proc, self._conn)
        self._proc = self._conn = None

    def _discard(self) -> None:
        """Forget a dead worker after reaping it."""
        if self._proc is not None:
            self._end(self._proc, self._conn)
        self._proc = self._conn = None

    @staticmethod
    def _end(proc: mp.process.BaseProcess, conn: Connection | None) -> None:
        if proc.is_alive():
            proc.kill()
        proc.join(timeout=5)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Ask the worker to finish; kill it if it does not within 5 s (or is busy)."""
        if not self._lock.acquire(timeout=1.0):
            # A generation is in flight: killing the process ends it with a PersonaError.
            proc = self._proc
            if proc is not None and proc.is_alive():
                proc.kill()
            return
        try:
            if self._conn is not None and self.alive:
                try:
                    self._conn.send(None)
                    self._proc.join(timeout=5)
                except OSError:
                    pass  # already gone: _kill_locked tidies up
            self._kill_locked()
        finally:
            self._lock.release()
