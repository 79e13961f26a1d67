"""Clean stops: SIGTERM ends the payload well inside the unit's TimeoutStopSec=20 in every
state — idle, a model still loading, a musing stuck in a hung worker, a LoRa module that
holds AUX low — and leaves no persona worker behind.

These run the real daemon as systemd would (`python -m payload run`, real time, its persona
worker a real llama.cpp process) and stop it with a real signal. TimeoutStopSec is a
wall-clock contract, so the bound asserted is the unit's 20 s while the daemon budgets 10 s
(payload/daemon.py STOP_BUDGET_S): twice the budget of slack for a busy machine. Before
the stop was budgeted, a hung generation held SIGTERM for 55 s. The lockstep side of the
contract (the supervisor counting flight seconds) is tests/test_flight_rehearsal.py's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from payload.parts.radio import LoRaUartRadio, RadioError
from sim.chips.lora_module import FakeLoRaModule
from tests.fakes import CAN_SIGNAL_A_THREAD, signal_another_thread

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_STOP_S = 20.0  # systemd/stratoecho-payload.service
M0, M1, AUX = 17, 27, 22


def _config(tmp_path: Path, first_musing_s: float = 3600.0) -> Path:
    cfg = tmp_path / "payload.toml"
    # A generation may take ten minutes: only the stop's own budget can end it in time.
    cfg.write_text(f"[schedule]\nfirst_musing_s = {first_musing_s}\nmusing_s = 3600.0\n\n"
                   "[persona]\ntimeout_s = 600.0\n")
    return cfg


class Payload:
    """`python -m payload run --sim` at real time, its JSON log read line by line; `under` is a
    command that runs it (a system-call filter's runner)."""

    def __init__(self, tmp_path: Path, bundle: Path | None, config: Path, speedup: float = 1.0,
                 under: tuple[str, ...] = ()):
        args = [*under, sys.executable, "-m", "payload", "--log-level", "DEBUG", "run", "--sim", "--sim-config", str(config),
                "--speedup", str(speedup), "--udp", "127.0.0.1:9", "--data", str(tmp_path / "data")]
        args += ["--persona", str(bundle)] if bundle else ["--no-persona"]
        env = {**os.environ, "STRATOECHO_LOG_JSON": "1", "PYTHONUNBUFFERED": "1"}
        env.pop("STRATOECHO_BENCH_CLOCK", None)
        self.proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def events(self) -> list[str]:
        out = []
        for line in list(self.lines):
            try:
                out.append(json.loads(line).get("event", ""))
            except ValueError:
                pass
        return out

    def wait_for(self, event: str, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while event not in self.events():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no {event!r} from the payload:\n" + "".join(self.lines[-40:]))
            time.sleep(0.05)

    def worker_pids(self) -> list[int]:
        """The persona worker (a spawned process; the resource tracker is not it)."""
        pids = []
        for task in Path(f"/proc/{self.proc.pid}/task").glob("*"):
            try:
                pids += [int(p) for p in (task / "children").read_text().split()]
            except OSError:
                pass
        return [p for p in pids if "spawn_main" in _cmdline(p)]

    def stop(self) -> tuple[int, float]:
        """SIGTERM, as systemd sends it; the exit status and the wall seconds it took."""
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail("the payload did not stop within 60 s of SIGTERM:\n" + "".join(self.lines[-40:]))
        self._reader.join(timeout=5)
        return rc, time.monotonic() - t0


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting for a reaper."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def _assert_clean(payload: Payload, rc: int, took_s: float, workers: list[int]) -> None:
    log = "".join(payload.lines[-40:])
    assert rc == 0, f"exit status {rc}:\n{log}"
    assert took_s < TIMEOUT_STOP_S, f"the stop took {took_s:.1f} s, past TimeoutStopSec:\n{log}"
    assert "stopped" in payload.events(), log
    deadline = time.monotonic() + 5.0
    while any(_running(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in workers:
        if _running(pid):
            os.kill(pid, signal.SIGKILL)
            pytest.fail(f"persona worker {pid} outlived the daemon")


def test_sigterm_when_idle_stops_at_once(tmp_path):
    p = Payload(tmp_path, None, _config(tmp_path))
    p.wait_for("flying")
    rc, took = p.stop()
    _assert_clean(p, rc, took, [])


@pytest.mark.skipif(not CAN_SIGNAL_A_THREAD, reason="tgkill's number is not known on this machine")
def test_sigterm_that_lands_on_another_thread_still_stops_at_once(tmp_path):
    """Which thread takes a process's SIGTERM is the kernel's choice; Python runs the handler
    only in the main thread, and a signal taken by another does not wake the main thread's
    wait. It waited a minute (the statistics' period) once, in CI: the stop overran the unit."""
    p = Payload(tmp_path, None, _config(tmp_path))
    p.wait_for("flying")
    t0 = time.monotonic()
    signal_another_thread(p.proc.pid, signal.SIGTERM)
    try:
        rc = p.proc.wait(timeout=TIMEOUT_STOP_S)
    except subprocess.TimeoutExpired:
        p.proc.kill()
        p.proc.wait()
        pytest.fail("a SIGTERM taken by another thread did not stop the payload within TimeoutStopSec")
    p._reader.join(timeout=5)
    _assert_clean(p, rc, time.monotonic() - t0, [])


def test_sigterm_during_a_hung_generation_cuts_it_short(tmp_path, tiny_bundle):
    """The worker is frozen (SIGSTOP) while the daemon waits on a musing with a 600 s timeout.
    The payload boots in low power and thinks only once its readings have been clear for a
    minute: flight time runs 10x here so that takes seconds (the worker's timeout is wall time)."""
    p = Payload(tmp_path, tiny_bundle, _config(tmp_path, first_musing_s=70.0), speedup=10.0)
    p.wait_for("flying")
    workers = p.worker_pids()
    assert workers, "no persona worker was started"
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)
    p.wait_for("musing_asked")
    rc, took = p.stop()
    _assert_clean(p, rc, took, workers)
    assert "persona_failed" not in p.events()  # cut short by the stop: not the persona's failure


def test_sigterm_while_the_model_loads_does_not_wait_for_it(tmp_path, tiny_bundle):
    """The worker is frozen as soon as it exists, before it has said it is ready: a load that
    would take LOAD_TIMEOUT_S (120 s) on a hung card."""
    p = Payload(tmp_path, tiny_bundle, _config(tmp_path))
    deadline = time.monotonic() + 60
    while not (workers := p.worker_pids()):
        assert time.monotonic() < deadline and p.proc.poll() is None, "".join(p.lines[-40:])
        time.sleep(0.005)
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)
    rc, took = p.stop()
    _assert_clean(p, rc, took, workers)


def test_closing_a_lora_module_ends_a_send_waiting_on_aux(mock_factory):
    """A module that holds AUX low would keep `send` waiting for aux_timeout_s (60 s by
    default); the stop closes the radio, and the send gives up at once."""
    with FakeLoRaModule(mock_factory, M0, M1, AUX, time_scale=0.02, sf=9, bw_hz=125_000, cr=5) as module:
        radio = LoRaUartRadio(module.port, 9600, (M0, M1, AUX), pin_factory=mock_factory, aux_timeout_s=600.0)
        module.hold()
        outcome: list = []

        def send() -> None:
            try:
                radio.send(b"never")
                outcome.append("sent")
            except RadioError as e:
                outcome.append(str(e))

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        time.sleep(0.1)  # let it reach the wait (if it has not, the close makes it refuse at once)
        radio.close()
        sender.join(timeout=TIMEOUT_STOP_S)
        assert not sender.is_alive(), "send still waiting on AUX after close()"
        assert outcome and "closed while waiting for AUX" in outcome[0]
        module.release()
