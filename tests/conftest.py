"""Shared fixtures.

`tiny_bundle` (session scope): a real persona bundle, built once per test session by the
real command line — `python -m host_training build --from-scratch --preset test` — from
synthetic chats (tests/chatdata.py: 60 training and 12 held-out conversations). It is a
genuine llama-architecture GGUF (0.16M parameters, Q4_K_M, ~0.1 MB) with its persona.toml, so
anything that loads, verifies or generates from a bundle (the payload's persona worker,
bench flights) runs the real llama-cpp-python path. It babbles: do not test what it says,
only that it says something. Built in about 5 s on 2 idle cores. Tests must not modify it;
copy it (shutil.copytree) to tamper with it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import structlog
from hypothesis import HealthCheck, settings

from tests.chatdata import write_chat_dataset
from tests.fakes import write_flight_key

# A loaded 2-core CI machine is slow: no per-example deadline, and slow generation of
# big hostile inputs is not a failure. Everything else hypothesis checks stays on.
settings.register_profile(
    "stratoecho", deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("stratoecho")

TINY_BUNDLE_STEPS = 30


def _own_cores() -> None:
    """Under pytest-xdist each worker runs on cores of its own (worker i: every n-th core from i).
    llama.cpp's and torch's thread pools spin at their barriers: two workers whose pools share
    every core ran a build test 3.5 times slower than two pinned ones. Set before either is
    imported; what the tests start (payloads, builds) inherits it, and the code sizes its pools
    from its affinity (host_training.train.lora_step.usable_cores, the persona worker)."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER", ""), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if count < 2 or not worker.startswith("gw") or not hasattr(os, "sched_setaffinity"):
        return
    i = int(worker[2:])
    os.sched_setaffinity(0, ALL_CORES[i % len(ALL_CORES)::count] or ALL_CORES)


ALL_CORES = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
_own_cores()


@pytest.fixture
def every_core():
    """For the test whose premise is more than one core (a worker's second thread): the cores this
    run was given, for the test's length; skipped on a machine of one."""
    if len(ALL_CORES) < 2:
        pytest.skip("needs two cores: the premise is a second llama.cpp thread")
    own = os.sched_getaffinity(0)
    os.sched_setaffinity(0, ALL_CORES)
    yield ALL_CORES
    os.sched_setaffinity(0, own)


# Every bench flight a test makes is checked against a stock LoRa gateway's rules
# (stratoecho.wire.gateway_rules) and fails on the first line that breaks one: sim/fly/flight.py.
os.environ["STRATOECHO_GATEWAY_STRICT"] = "1"


@pytest.fixture(autouse=True, scope="session")
def _basemap_cache_in_tmp(tmp_path_factory):
    """The dashboard's base map keeps its place index in a cache folder: a session's own, so the
    tests never write to the home directory (built once per session, ~1 s)."""
    from groundstation.maps import basemap

    cache = tmp_path_factory.mktemp("basemap-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(basemap, "default_cache_dir", lambda: cache)
        yield cache


_LOGGING_AS_IMPORTED = structlog.get_config()  # before any command under test configured it


@pytest.fixture(autouse=True)
def _fresh_logging_config():
    """Commands under test call setup_logging (a level filter, a renderer), and so do the session
    and module fixtures that run a command once for many tests: each test starts and ends with
    structlog as imported, so no earlier command's level can hide the logs a test captures."""
    def as_imported():  # a list of its own each time: capture_logs edits the list it finds in place
        structlog.configure(**{**_LOGGING_AS_IMPORTED, "processors": list(_LOGGING_AS_IMPORTED["processors"])})

    as_imported()
    try:
        yield
    finally:
        as_imported()


@pytest.fixture(scope="session")
def chat_data_dir(tmp_path_factory) -> Path:
    """A `prepare`-style data folder (train.jsonl, val.jsonl) of synthetic chats; read-only."""
    return write_chat_dataset(tmp_path_factory.mktemp("chatdata"), n_train=60, n_val=12, seed=0)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, chat_data_dir) -> Path:
    """Path to a persona bundle directory built with the `test` preset (see the module docstring)."""
    from host_training.__main__ import main

    out = tmp_path_factory.mktemp("tiny_bundle") / "bundle"
    rc = main([
        "build", "--data", str(chat_data_dir), "--from-scratch", "--preset", "test",
        "--steps", str(TINY_BUNDLE_STEPS), "--name", "Ada", "--vocab-size", "512", "--out", str(out),
    ])
    assert rc == 0, "building the tiny test bundle failed; see the captured output"
    return out


ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "samples" / "corpus"


@pytest.fixture(scope="session")
def corpus_data_dir(tmp_path_factory) -> Path:
    """The shipped sample corpus through the real `prepare` command, as `make persona` runs it."""
    from host_training.__main__ import main

    out = tmp_path_factory.mktemp("corpus") / "data"
    rc = main([
        "prepare", str(CORPUS / "telegram"), str(CORPUS / "whatsapp"), str(CORPUS / "posts"),
        "--owner", "user5550101", "--owner", "Ada Lindqvist", "--owner", "Ada L", "--out", str(out),
    ])
    assert rc == 0, "prepare failed on the sample corpus"
    return out


SMALL_TRAIN, SMALL_VAL = 16, 4  # conversations: enough to train a stand-in on and score it


@pytest.fixture(scope="session")
def small_data(tmp_path_factory, corpus_data_dir) -> Path:
    """The first conversations of the prepared sample corpus (SMALL_TRAIN and SMALL_VAL): the
    family stand-ins' builds (test_pi_families, test_padded_vocab) train and score on them."""
    out = tmp_path_factory.mktemp("small_data")
    for name, n in (("train.jsonl", SMALL_TRAIN), ("val.jsonl", SMALL_VAL)):
        lines = (corpus_data_dir / name).read_text(encoding="utf-8").splitlines(keepends=True)
        (out / name).write_text("".join(lines[:n]), encoding="utf-8")
    return out


@pytest.fixture(scope="session")
def corpus_bundle(tmp_path_factory, corpus_data_dir) -> Path:
    """A test-preset persona trained on the prepared sample corpus: the thin path's own persona,
    small enough to build in seconds. Read-only, like `tiny_bundle`."""
    from host_training.__main__ import main

    out = tmp_path_factory.mktemp("corpus_bundle") / "bundle"
    rc = main([
        "build", "--data", str(corpus_data_dir), "--from-scratch", "--preset", "test",
        "--steps", "60", "--vocab-size", "768", "--out", str(out),
    ])
    assert rc == 0, "building the sample-corpus test bundle failed"
    return out


@pytest.fixture
def mock_factory():
    """gpiozero's MockFactory for the test, the previous factory restored whatever happens."""
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory

    previous = Device.pin_factory
    factory = MockFactory()
    Device.pin_factory = factory
    try:
        yield factory
    finally:
        factory.reset()
        Device.pin_factory = previous


@pytest.fixture
def flight_key(tmp_path) -> Path:
    """tests/fakes.py's FLIGHT_KEY in a key file as keygen writes one (mode 600): what
    `--flight-key` reads, so a ground reads the records tests tag with `fakes.AUTH`."""
    path = tmp_path / "flight.key"
    write_flight_key(path)
    return path
