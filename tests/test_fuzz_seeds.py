"""`make fuzz`'s findings kept: every input that once crashed a parser (tests/fuzz_seeds/<target>/),
replayed against its target's contract (refused with the parser's own refusal, or read; never
another exception, never past the memory bound); and every target run for a few hundred inputs,
so the targets, their corpora and their contracts keep working (docs/bench.md, "Fuzzing")."""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import pytest

from sim.bench.fuzz import SEEDS, Budget, Target, fuzz_target, replay, targets
from sim.bench.fuzz.engine import TooMuchMemory, run_one

TARGETS = targets()
ITERATIONS = 200
SLOW = {"discord_package": 80, "discord_package_files": 80}  # a package of five files written per input
# Seeds of crashes in parsers this project could not fix where it found them: "target/file.bin" -> why.
# Each must still fail (strict): once its parser is fixed, the entry goes.
KNOWN: dict[str, str] = {}
# The files around a Discord package's messages only name the chat and the owner: a broken one is passed over.
NEVER_REFUSED = {"discord_package_files"}


def _seeds():
    for path in sorted(SEEDS.glob("*/*.bin")):
        name = f"{path.parent.name}/{path.name}"
        marks = [pytest.mark.xfail(strict=True, reason=KNOWN[name])] if name in KNOWN else []
        yield pytest.param(path, id=name, marks=marks)


@pytest.mark.parametrize("seed", list(_seeds()))
def test_a_kept_crash_is_now_refused_within_the_contract(seed: Path, tmp_path):
    outcome = replay(TARGETS[seed.parent.name], seed.read_bytes(), tmp_path)  # a crash raises
    assert isinstance(outcome, str) and outcome


def test_every_seed_belongs_to_a_target_and_every_known_crash_has_its_seed():
    kept = {f"{p.parent.name}/{p.name}" for p in SEEDS.glob("*/*.bin")}
    assert {k.split("/")[0] for k in kept} <= set(TARGETS)
    assert set(KNOWN) <= kept


@pytest.mark.parametrize("name", list(TARGETS))
def test_each_target_runs_clean_and_its_corpus_is_accepted(name):
    target = TARGETS[name]
    iterations = SLOW.get(name, ITERATIONS)
    r = fuzz_target(target, Budget(iterations=iterations, seed=20261, hang_s=None, memory_every=40, probe=False))
    assert r.inputs == iterations
    assert not r.crashes, [f"{c.signature}: {c.detail} on {c.data[:80]!r}" for c in r.crashes]
    assert r.outcomes["ok"] >= 1, r.outcomes  # what the project's encoders make is read
    if name not in NEVER_REFUSED:
        assert r.refused > 0, r.outcomes  # and the mutations are refused by the parser's own refusals


# --------------------------------------------------------------------------- the fuzzer bites

@contextlib.contextmanager
def _fragile(scratch: Path):
    def run(data: bytes) -> str:
        if b"\xff\xfe" in data:
            return {}["a key nobody foresaw"]  # KeyError: outside any contract
        if not data:
            return str(1 // len(data))  # ZeroDivisionError: another place, another seed
        return "ok" if data == b"good input" else "refused"
    yield run


FRAGILE = Target("fragile", "a parser with two bugs", lambda: [b"good input", b"another good input"], _fragile,
                 tokens=(b"\xff\xfe",), max_bytes=64)


def test_a_crash_is_cut_down_kept_once_per_place_and_replayed(tmp_path):
    r = fuzz_target(FRAGILE, Budget(iterations=500, seed=3, hang_s=None), seeds=tmp_path)
    assert sorted(c.signature.split()[0] for c in r.crashes) == ["KeyError", "ZeroDivisionError"], r.crashes
    key = next(c for c in r.crashes if c.signature.startswith("KeyError"))
    assert key.alone and key.data == b"\xff\xfe"  # cut down to what fails
    assert key.path == tmp_path / "fragile" / f"{hashlib.sha256(key.data).hexdigest()[:16]}.bin"
    assert key.path.read_bytes() == b"\xff\xfe"
    assert len(list((tmp_path / "fragile").iterdir())) == 2  # one seed per place, however often it failed
    assert r.outcomes["ok"] >= 1 and r.inputs == 500
    with pytest.raises(KeyError):
        replay(FRAGILE, key.path.read_bytes(), tmp_path)


def test_the_same_seed_makes_the_same_inputs():
    runs = [fuzz_target(TARGETS["uplink"], Budget(iterations=500, seed=9, hang_s=None)) for _ in range(2)]
    assert runs[0].outcomes == runs[1].outcomes
    other = fuzz_target(TARGETS["uplink"], Budget(iterations=500, seed=10, hang_s=None))
    assert other.outcomes != runs[0].outcomes


def test_an_input_that_allocates_past_the_bound_is_a_crash():
    def greedy(data: bytes) -> str:
        block = bytearray(80 << 20)
        return "ok" if block else "refused"
    with pytest.raises(TooMuchMemory):
        run_one(greedy, b"x", hang_s=None, measure=True)
    assert run_one(lambda data: "ok", b"x", hang_s=None, measure=True) == "ok"
