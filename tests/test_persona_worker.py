"""The persona worker survives what a language model can do to it: segfaults, hangs, running
out of memory, a model file changed after verification. Real llama-cpp-python, real tiny
GGUF (conftest's tiny_bundle); signals sent to the real worker process. Also the budget
that sizes each musing (payload.policy.budget), by its properties."""

from __future__ import annotations

import math
import os
import shutil
import signal
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payload.assembly import build_onboard
from payload.clock import Clock
from payload.config import PayloadConfig
from payload.persona.worker import PersonaError, PersonaWorker
from payload.policy.budget import (
    CORES,
    MAX_CHARS,
    MIN_CHARS,
    MIN_CTX,
    MIN_THREADS,
    MIN_TIMEOUT_S,
    MIN_TOKENS,
    musing_record_bytes,
    think_budget,
)
from payload.policy.modes import Mode
from sim.world.flight import SimSensors
from stratoecho.bundle import load_bundle
from tests.fakes import RecordingRadio

WAIT_S = 30.0  # upper bound for a process to die or a thread to finish; never a measured time


def _wait_for(cond, timeout_s: float = WAIT_S) -> bool:
    done = threading.Event()
    for _ in range(int(timeout_s / 0.02)):
        if cond():
            return True
        done.wait(0.02)
    return cond()


def _prompt(bundle) -> str:
    return bundle.render_prompt([{"role": "user", "content": "How cold is it up there?"}])


@pytest.fixture
def bundle(tiny_bundle):
    return load_bundle(tiny_bundle)


@pytest.fixture
def worker(bundle):
    w = PersonaWorker(bundle, n_ctx=128, n_threads=1, timeout_s=60)
    yield w
    w.close()


def _works(worker, bundle) -> None:
    gen = worker.generate(_prompt(bundle), max_tokens=8, seed=1)
    assert gen.tokens > 0 and isinstance(gen.text, str)


# ----------------------------------------------------------------------------- crashes


def test_ping_is_a_round_trip_to_the_running_worker(worker, bundle):
    assert worker.pid is None and not worker.ping()  # nothing started: not alive, and ping starts nothing
    assert worker.pid is None
    worker.start()
    assert worker.pid == worker.info["pid"] and worker.ping()
    assert worker.restarts == 0 and worker.last_error is None


def test_segfault_while_idle_is_survived_and_counted(worker, bundle):
    _works(worker, bundle)
    first = worker.pid
    os.kill(first, signal.SIGSEGV)
    assert _wait_for(lambda: not worker.alive)
    assert not worker.ping()
    _works(worker, bundle)  # the next musing starts a fresh worker by itself
    assert worker.pid not in (None, first) and worker.restarts == 1
    assert "SIGSEGV" in worker.last_error


def test_segfault_while_a_request_is_in_flight(worker, bundle):
    worker.start()
    first = worker.pid
    # Stopped first, so that the SIGSEGV lands while the request is unanswered, every time.
    os.kill(first, signal.SIGSTOP)
    errors: list[Exception] = []

    def ask():
        try:
            worker.generate(_prompt(bundle), max_tokens=64)
        except PersonaError as e:
            errors.append(e)

    t = threading.Thread(target=ask)
    t.start()
    assert _wait_for(lambda: worker.busy)
    assert worker.ping()  # busy: answered from the process state, not queued behind the request
    os.kill(first, signal.SIGSEGV)
    os.kill(first, signal.SIGCONT)  # the pending SIGSEGV ends it before it can answer
    t.join(WAIT_S)
    assert not t.is_alive() and len(errors) == 1
    assert "SIGSEGV" in str(errors[0]) and "SIGSEGV" in worker.last_error
    _works(worker, bundle)
    assert worker.restarts == 1 and worker.pid != first


def test_hung_worker_times_out_is_killed_and_replaced(worker, bundle):
    worker.start()
    hung = worker.pid
    os.kill(hung, signal.SIGSTOP)  # a model that hangs: it will never answer
    worker.timeout_s = 0.5
    with pytest.raises(PersonaError, match="killed"):
        worker.generate(_prompt(bundle), max_tokens=64)
    assert worker.pid is None and "no musing within" in worker.last_error
    worker.timeout_s = 60
    _works(worker, bundle)
    assert worker.pid != hung and worker.restarts == 1


def test_ping_kills_a_hung_idle_worker(worker, bundle):
    worker.start()
    hung = worker.pid
    os.kill(hung, signal.SIGSTOP)
    assert not worker.ping(timeout_s=0.3)
    assert worker.pid is None and "ping" in worker.last_error
    _works(worker, bundle)
    assert worker.restarts == 1


# ----------------------------------------------------------------------------- memory


def test_a_memory_limit_too_small_to_load_fails_cleanly(bundle):
    w = PersonaWorker(bundle, n_ctx=128, n_threads=1, timeout_s=60, memory_limit_mb=48)
    try:
        for _ in range(2):
            with pytest.raises(PersonaError, match="cannot load|while loading"):
                w.generate(_prompt(bundle), max_tokens=8)
        assert w.restarts == 1 and w.pid is None
        w.memory_limit_mb = None  # the daemon-side object is still usable
        _works(w, bundle)
        assert w.restarts == 2
    finally:
        w.close()


def test_a_memory_limit_too_small_to_generate_fails_cleanly(bundle, every_core):
    probe = PersonaWorker(bundle, n_ctx=128, n_threads=2, timeout_s=60)
    try:
        probe.start()
        loaded_mb = probe.info["VmData"] / 1024
    finally:
        probe.close()
    # Just above what loading took: the first decode's second thread (its stack) and buffers do not fit.
    w = PersonaWorker(bundle, n_ctx=128, n_threads=2, timeout_s=60, memory_limit_mb=math.ceil(loaded_mb) + 1)
    try:
        w.start()
        with pytest.raises(PersonaError):
            w.generate(_prompt(bundle), max_tokens=32)
        assert w.pid is None and w.last_error
        w.memory_limit_mb = None
        _works(w, bundle)
        assert w.restarts == 1
    finally:
        w.close()


# ----------------------------------------------------------------------------- the verified file


def test_worker_refuses_a_model_altered_after_verification(tiny_bundle, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    bundle = load_bundle(copy)  # verified here ...
    w = PersonaWorker(bundle, n_ctx=128, n_threads=1, timeout_s=60)
    original = bundle.model_path.read_bytes()
    try:
        with open(bundle.model_path, "r+b") as f:  # ... altered afterwards, in place
            f.seek(-1, 2)
            f.write(bytes([original[-1] ^ 0xFF]))
        with pytest.raises(PersonaError, match="sha256"):
            w.generate(_prompt(bundle), max_tokens=8)
        assert "refusing" in w.last_error and w.pid is None
        # Replaced by rename (what an update would do): the new file is hashed, not the old name.
        other = bundle.model_path.with_suffix(".new")
        other.write_bytes(original[:-1] + bytes([original[-1] ^ 0x01]))
        os.replace(other, bundle.model_path)
        with pytest.raises(PersonaError, match="sha256"):
            w.generate(_prompt(bundle), max_tokens=8)
        bundle.model_path.write_bytes(original)
        _works(w, bundle)
        assert w.restarts == 2
    finally:
        w.close()


def test_generation_is_bounded_by_max_tokens(worker, bundle):
    gen = worker.generate(_prompt(bundle), max_tokens=3, seed=2)
    assert 0 < gen.tokens <= 3
    with pytest.raises(ValueError, match="max_tokens"):
        worker.generate(_prompt(bundle), max_tokens=0)  # llama-cpp-python reads 0 as "to the end"
    pid = worker.pid
    with pytest.raises(PersonaError, match="no room"):
        worker.generate("the sky " * 200, max_tokens=8)
    assert worker.pid == pid and worker.restarts == 0  # refused, not restarted: still the loaded worker


# ----------------------------------------------------------------------------- the daemon


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGSTOP])
def test_daemon_keeps_beaconing_while_its_worker_is_killed_or_stopped(tmp_path, tiny_bundle, how):
    cfg = PayloadConfig()
    cfg.schedule.telemetry_s = 10.0
    cfg.schedule.musing_s = 20.0
    cfg.schedule.first_musing_s = 0.0
    cfg.persona.timeout_s = 2.0
    cfg.persona.n_threads = 1
    cfg.persona.n_ctx = 256  # the musing prompt is ~130 tokens with the tiny tokenizer
    clock = Clock(speedup=200)  # a sentence every 50 ms of wall time
    d = build_onboard(cfg, SimSensors(clock, seed=2), RecordingRadio(), clock, load_bundle(tiny_bundle), tmp_path / "data")
    telemetry = lambda: d.parts.beacon.counts.telemetry_queued  # noqa: E731

    try:
        d.start()
        assert _wait_for(lambda: d.parts.musings.counts.musings_generated + d.parts.musings.counts.musings_empty
                         + d.parts.musings.counts.musings_dropped_by_guard >= 1)
        victim = d.parts.worker.pid
        os.kill(victim, how)
        before = telemetry()
        # The persona is out (dead, or stopped until its 2 s timeout): the beacon must not notice.
        assert _wait_for(lambda: d.parts.musings.counts.persona_failures >= 1 or d.parts.worker.restarts >= 1)
        # (Waited for, not read at once: a kill noticed within a sentence's 50 ms left it equal.)
        assert _wait_for(lambda: telemetry() > before)
        during = telemetry()
        assert _wait_for(lambda: telemetry() >= during + 5)
        # And the persona comes back: a fresh worker, counted.
        assert _wait_for(lambda: d.parts.worker.restarts >= 1 and d.parts.worker.pid not in (None, victim))
    finally:
        d.daemon.shutdown()
    assert d.parts.worker.pid is None  # shutdown ended the fresh worker too


# ----------------------------------------------------------------------------- the budget

energies = st.floats(min_value=0.0, max_value=1.0)
boards = st.sampled_from(["pi-zero-2w", "pi3", "pi4", "pi5"])
modes = st.sampled_from(list(Mode))


@given(boards, modes, energies, energies, st.integers(8_000_000, 500_000_000), st.integers(0, 4000))
def test_budget_is_monotone_in_energy_and_never_below_its_minimums(board, mode, e1, e2, model_bytes, record_bytes):
    lo, hi = sorted((e1, e2))
    a = think_budget(board, model_bytes, lo, mode, record_bytes=record_bytes)
    b = think_budget(board, model_bytes, hi, mode, record_bytes=record_bytes)
    assert a.max_tokens <= b.max_tokens and a.n_threads <= b.n_threads
    for x in (a, b):
        assert MIN_THREADS <= x.n_threads < CORES[board]  # one core always left to the beacon and radio
        assert x.n_ctx >= MIN_CTX and x.max_tokens >= MIN_TOKENS and x.timeout_s >= MIN_TIMEOUT_S
        assert MIN_CHARS <= x.max_chars <= MAX_CHARS
        assert x.max_tokens < x.n_ctx  # room left for the prompt


@pytest.mark.parametrize("board", ["pi-zero-2w", "pi3", "pi4", "pi5"])
def test_low_energy_runs_one_thread_and_full_energy_leaves_one_core(board):
    assert think_budget(board, 100_000_000, 0.1).n_threads == 1
    assert think_budget(board, 100_000_000, 1.0, Mode.LOW_POWER).n_threads == 1
    assert think_budget(board, 100_000_000, 1.0).n_threads == CORES[board] - 1


def test_budget_follows_the_board_memory_and_bandwidth():
    zero = think_budget("pi-zero-2w", 105_000_000, 1.0, context_length=4096)
    pi5 = think_budget("pi5-8gb", 105_000_000, 1.0, context_length=4096)
    assert zero.fits and zero.n_ctx < pi5.n_ctx == 4096  # 512 MB cannot hold a 4096-token cache beside the model
    assert zero.expected_tokens_per_s < pi5.expected_tokens_per_s and zero.timeout_s > pi5.timeout_s
    assert not think_budget("pi-zero-2w", 400_000_000, 1.0).fits  # a model bigger than the budget
    nan = think_budget("pi4", 100_000_000, float("nan"))  # an invalid reading counts as empty
    assert nan.max_tokens == MIN_TOKENS and nan.n_threads == 1
    assert not think_budget("pi4", 100_000_000, 1.0, Mode.SURVIVAL).enabled


def test_musing_size_follows_the_airtime_budget():
    small, big = musing_record_bytes(0.5), musing_record_bytes(20.0)
    assert 0 < small < big
    assert musing_record_bytes(20.0, fec_overhead=2.0) < big  # more parity, fewer text bytes
    assert musing_record_bytes(0.0) == 0
    assert think_budget("pi4", 100_000_000, 1.0, record_bytes=small).max_chars == max(MIN_CHARS, small)
    tight = think_budget("pi4", 100_000_000, 1.0, record_bytes=30, max_tokens=200)
    assert tight.max_tokens <= 15  # no tokens the radio could not carry
