"""The payload daemon on real parts: the persona in its worker process, the guard, UDP frames."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest

from payload.assembly import build_onboard
from payload.clock import Clock
from payload.config import PayloadConfig, UplinkSection
from payload.onboard import Onboard
from payload.persona.reach import describe
from payload.persona.worker import Generation, PersonaError, PersonaWorker
from payload.policy.modes import Mode, ModeLadder
from sim.world.flight import SimSensors
from stratoecho import wire
from stratoecho.bundle import load_bundle
from tests.fakes import AUTH, RecordingRadio, write_flight_key

MORNING = datetime(2025, 6, 1, 9, 0, tzinfo=timezone.utc)  # a June morning at the simulated launch site


def _daemon(tmp_path, bundle=None) -> Onboard:
    write_flight_key(tmp_path / "flight.key")  # records go tagged (fakes.AUTH reads them)
    cfg = PayloadConfig(uplink=UplinkSection(key_file=str(tmp_path / "flight.key")))
    cfg.persona.figure_goal = 0.0  # each scripted musing is made once (tests/test_musing_openings.py sets one)
    cfg.persona.candidates = 1  # and one candidate a musing (tests/test_musing_candidates.py makes several)
    clock = Clock(speedup=1000, start_utc=MORNING)  # the test owns the time of day: the sun is up on the pad
    d = build_onboard(cfg, SimSensors(clock, seed=2), RecordingRadio(), clock, bundle, tmp_path / "data")
    d.parts.flight.governor.ladder = ModeLadder(initial=Mode.NOMINAL)  # a fresh payload starts in low power; these tests think
    return d


def test_worker_generates_with_the_real_model(tiny_bundle):
    bundle = load_bundle(tiny_bundle)
    worker = PersonaWorker(bundle, n_ctx=128, n_threads=1, timeout_s=60)
    try:
        prompt = bundle.render_prompt([{"role": "user", "content": "How cold is it up there?"}])
        gen = worker.generate(prompt, max_tokens=24, seed=1)
        assert gen.tokens > 0 and isinstance(gen.text, str)
        assert worker.generate(prompt, max_tokens=24, seed=1).text == gen.text  # seeded: same words
    finally:
        worker.close()


def test_worker_is_killed_on_timeout_and_restarted(tiny_bundle):
    bundle = load_bundle(tiny_bundle)
    worker = PersonaWorker(bundle, n_ctx=128, n_threads=1, timeout_s=60)
    try:
        worker.start()
        hung = worker._proc.pid
        os.kill(hung, signal.SIGSTOP)  # a model that hangs: it will never answer
        worker.timeout_s = 0.5
        with pytest.raises(PersonaError, match="killed"):
            worker.generate(bundle.render_prompt([{"role": "user", "content": "hi"}]), max_tokens=64)
        worker.timeout_s = 60
        gen = worker.generate(bundle.render_prompt([{"role": "user", "content": "hi"}]), max_tokens=8)
        assert gen.tokens > 0 and worker._proc.pid != hung  # a fresh worker answered
    finally:
        worker.close()


def test_worker_refuses_a_tampered_bundle(tiny_bundle, tmp_path):
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    bundle = load_bundle(copy)
    with open(bundle.model_path, "r+b") as f:
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 0xFF]))
    from stratoecho.bundle import BundleError

    with pytest.raises(BundleError, match="sha256"):
        load_bundle(copy)


def test_musing_with_private_data_never_reaches_the_queue(tmp_path, tiny_bundle):
    d = _daemon(tmp_path, load_bundle(tiny_bundle))
    leaks = iter(["call me on +44 7700 900123 when it lands", "mail ada.lindqvist@example.org",
                  "the sky is ink above the clouds"])
    d.parts.worker.generate = lambda prompt, max_tokens, seed=None: Generation(next(leaks), 5, 0.01)
    assert d.daemon.run_once("think") is None
    assert d.daemon.run_once("think") is None
    assert d.daemon.run_once("think") == "the sky is ink above the clouds"
    assert d.parts.musings.counts.musings_dropped_by_guard == 2
    assert set(d.parts.musings.guard.dropped) >= {"phone", "email"}
    while d.parts.transmitter.send_one():
        pass
    air = b"".join(d.parts.radio.frames)
    assert b"7700" not in air and b"example.org" not in air and b"the sky is ink above the clouds" in air


def test_beacon_keeps_going_when_the_persona_fails(tmp_path, tiny_bundle):
    d = _daemon(tmp_path, load_bundle(tiny_bundle))

    def broken(prompt, max_tokens, seed=None):
        raise PersonaError("worker died")

    d.parts.worker.generate = broken
    assert d.daemon.run_once("think") is None
    d.daemon.run_once("beacon")
    assert d.parts.musings.counts.persona_failures == 1
    assert d.parts.store.queue.depth() == {"telemetry": 1}


def test_payload_run_sends_real_udp_frames(tiny_bundle, tmp_path, flight_key):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.5)
    port = sock.getsockname()[1]
    frames: list[bytes] = []
    done = threading.Event()

    def receive():
        while not done.is_set():
            try:
                frames.append(sock.recvfrom(65535)[0])
            except socket.timeout:
                pass

    t = threading.Thread(target=receive)
    t.start()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "payload", "run", "--sim", "--persona", str(tiny_bundle), "--udp",
             f"127.0.0.1:{port}", "--data", str(tmp_path / "p"), "--speedup", "300", "--minutes", "12",
             "--drain-s", "120", "--flight-key", str(flight_key)],
            capture_output=True, text=True, timeout=240, cwd=Path(__file__).resolve().parent.parent,
        )
    finally:
        done.set()
        t.join()
        sock.close()
    assert proc.returncode == 0, proc.stderr[-2000:]
    decoded = [wire.decode_frame(f, AUTH) for f in frames]
    telemetry = [d for d in decoded if isinstance(d, wire.Telemetry)]
    ra = wire.Reassembler()
    records = [r for d in decoded if isinstance(d, wire.Fragment) and (r := ra.add(d))]
    assert len(telemetry) >= 60  # 12 flight minutes at one sentence per 10 s
    assert len({t.seq for t in telemetry}) == len(telemetry)  # each sentence numbered once
    assert any(r.kind is wire.Kind.MUSING for r in records)
    assert any(r.kind is wire.Kind.EVENT and r.text.startswith("boot 1 v") for r in records)  # the boot banner
    assert max(t.alt for t in telemetry) > 2000  # it climbed


def test_payload_run_reports_a_missing_bundle(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "payload", "run", "--sim", "--persona", str(tmp_path / "nope"),
         "--data", str(tmp_path / "p")],
        capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parent.parent,
    )
    assert proc.returncode == 2
    assert "persona.toml" in proc.stderr and "make persona" in proc.stderr


def test_what_came_of_its_questions_is_in_the_next_prompts_and_nothing_escapes(tmp_path, tiny_bundle):
    from stratoecho.wire.uplink import ApiStatus

    d = _daemon(tmp_path, load_bundle(tiny_bundle))
    prompts = []

    def generate(prompt, max_tokens, seed=None):
        prompts.append(prompt)
        return Generation("the air is thin and quiet", 6, 0.01)

    d.parts.worker.generate = generate
    d.parts.worker.n_ctx = 1024  # the tiny test model's context would leave no room for them (the budget at work)
    weather = d.parts.reach.ask("weather", "52.7,-2.7")
    define = d.parts.reach.ask("define", "tropopause")
    assert weather and define
    d.parts.reach.on_answer(define, int(ApiStatus.NOT_FOUND), "")  # the dictionary had nothing
    d.parts.reach.on_answer(999_999, int(ApiStatus.OK), "an answer nobody asked for")  # ignored, counted
    d.parts.reach.on_answer(weather, 250, "\x1b[2J garbage status")  # an unknown code: an upstream error
    assert d.daemon.run_once("think") == "the air is thin and quiet"
    lines = [describe(o) for o in d.parts.reach.recent_outcomes(3)]  # what the prompt carries
    assert len(lines) == 2 and all(line in prompts[-1] for line in lines)
    assert "\x1b" not in prompts[-1]
    assert d.parts.reach.stats()["answers_unknown"] == 1
    assert d.parts.store.queue.depth().get("api_request") == 2  # both questions went into the durable queue


def test_with_a_board_each_musing_is_sized_by_the_energy_left(tmp_path, tiny_bundle):
    d = _daemon(tmp_path, load_bundle(tiny_bundle))
    d.cfg.persona.board = "pi-zero-2w"
    asked = []

    def generate(prompt, max_tokens, seed=None):
        asked.append(max_tokens)
        return Generation("a long thought " * 40, 60, 0.01)

    d.parts.worker.generate = generate
    full = d.parts.musings.budget()
    text = d.daemon.run_once("think")
    assert asked[-1] == full.max_tokens and len(text) <= full.max_chars
    d.parts.flight.governor.used_wh = 0.9 * d.cfg.power.battery_wh  # most of the battery spent
    low = d.parts.musings.budget()
    assert low.max_tokens <= full.max_tokens and low.n_threads == 1
    d.daemon.run_once("think")
    assert asked[-1] == low.max_tokens and d.parts.worker.timeout_s == low.timeout_s


def test_an_unknown_board_is_refused_by_name(tmp_path):
    f = tmp_path / "p.toml"
    f.write_text('[persona]\nboard = "pi9"\n')
    from payload.config import load_config
    from stratoecho.config import ConfigError

    with pytest.raises(ConfigError, match=r"persona.board.*pi9"):
        load_config(f)
