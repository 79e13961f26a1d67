"""The persona worker: llama-cpp-python in a child process the daemon can kill.

A language model can hang, run out of memory or crash; none of that may take the
position beacon with it. The model lives in its own process (spawned, so no
locks are inherited), answers one request at a time over a pipe, and is killed
and restarted when it overruns its hard timeout or dies.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection

import structlog

from stratoecho.bundle import Bundle

log = structlog.get_logger(__name__)


class PersonaError(Exception):
    """The worker could not produce a musing (timeout, crash, load failure)."""


@dataclass(frozen=True)
class Generation:
    text: str
    tokens: int
    seconds: float


def _serve(conn: Connection, model_path: str, n_ctx: int, n_threads: int) -> None:
    """Child process: load the model once, then answer requests until told to stop."""
    try:
        from llama_cpp import Llama

        llm = Llama(model_path=model_path, n_ctx=n_ctx, n_threads=n_threads, verbose=False)
    except Exception as e:  # report the reason to the parent instead of dying silently
        conn.send(("error", f"cannot load {model_path}: {e}"))
        return
    conn.send(("ready", {"n_ctx": llm.n_ctx()}))
    while True:
        try:
            req = conn.recv()
        except EOFError:
            return
        if req is None:
            return
        try:
            t0 = time.monotonic()
            out = llm.create_completion(**req)
            text = out["choices"][0]["text"]
            conn.send(("ok", text, out["usage"]["completion_tokens"], time.monotonic() - t0))
        except Exception as e:
            conn.send(("error", f"generation failed: {e}"))


class PersonaWorker:
    def __init__(self, bundle: Bundle, n_ctx: int = 256, n_threads: int = 2, timeout_s: float = 60.0):
        if not bundle.verified:
            bundle.verify()  # sha256 of every file before a model is loaded
        self.bundle = bundle
        self.n_ctx = min(n_ctx, bundle.manifest.model.context_length)
        self.n_threads = n_threads
        self.timeout_s = timeout_s
        self._proc: mp.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self.restarts = 0

    def start(self) -> None:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=_serve, args=(child, str(self.bundle.model_path), self.n_ctx, self.n_threads),
            name="persona-worker", daemon=True,
        )
        proc.start()
        child.close()
        if not parent.poll(self.timeout_s):
            proc.kill()
            raise PersonaError(f"persona worker did not load {self.bundle.model_path} within {self.timeout_s} s")
        try:
            msg = parent.recv()
        except EOFError as e:
            raise PersonaError("persona worker died while loading the model") from e
        if msg[0] != "ready":
            proc.join(timeout=5)
            raise PersonaError(msg[1])
        self._proc, self._conn = proc, parent
        log.info("persona_ready", model=self.bundle.manifest.model.file, pid=proc.pid, **msg[1])

    def generate(self, prompt: str, max_tokens: int, seed: int | None = None) -> Generation:
        if self._proc is None or not self._proc.is_alive():
            if self._proc is not None:
                self.restarts += 1
                log.warning("persona_restart", restarts=self.restarts)
            self.start()
        s = self.bundle.manifest.sampling
        req = dict(
            prompt=prompt, max_tokens=max_tokens, temperature=s.temperature, top_p=s.top_p,
            top_k=s.top_k, repeat_penalty=s.repeat_penalty, stop=list(self.bundle.manifest.persona.stop),
        )
        if seed is not None:
            req["seed"] = seed
        assert self._conn is not None
        self._conn.send(req)
        if not self._conn.poll(self.timeout_s):
            self.kill()
            raise PersonaError(f"no musing within {self.timeout_s} s; worker killed")
        try:
            msg = self._conn.recv()
        except EOFError as e:
            self.kill()
            raise PersonaError("persona worker died during generation") from e
        if msg[0] != "ok":
            raise PersonaError(msg[1])
        return Generation(text=msg[1], tokens=msg[2], seconds=msg[3])

    def kill(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()
            self._proc.join(timeout=5)
        self._proc = None
        self._conn = None

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.send(None)  # ask the worker to finish
            except OSError:
                pass  # it is already gone: kill() below tidies up
        if self._proc is not None:
            self._proc.join(timeout=5)
        self.kill()
