"""The engine: a deterministic mutation fuzzer, one target at a time, for a fixed budget.

A `Target` is a parser that takes bytes from outside, with its contract: `open(scratch)` gives a
runner that feeds it one input and returns what became of it ("ok", or the refusal's reason, the
parser's own documented refusal caught inside the runner). Anything the runner lets out is a
crash; so is an input that runs past `hang_s` or allocates more than `MAX_PEAK_BYTES`.

Inputs start from the target's seed corpus (valid inputs made by the project's own encoders) and
are mutated by a seeded `random.Random`: bits flipped, bytes set, inserted and deleted, chunks
repeated, inputs cut short or spliced with another, interesting integers, the target's own tokens;
then, half the time, re-sealed (`fix`: a fresh CRC, checksum or tag), so that the checks behind the
first one are reached too. An input whose outcome was never seen before joins the corpus: a new
refusal is a new path. Before the mutations, each token is run long once (`Target.probe_bytes`):
a parser whose time grows with the square of its input hangs only on long ones. The same seed
gives the same inputs in the same order.

A crash's input is cut down while it still fails the same way, written once per place it fails
to `<seeds>/<target>/<sha256 prefix>.bin`, and replayed by tests/test_fuzz_seeds.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import signal
import sys
import tempfile
import threading
import time
import traceback
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ContextManager

Runner = Callable[[bytes], str]
HANG_S = 5.0  # an input that takes longer than this is a hang
MAX_PEAK_BYTES = 64 << 20  # what one input may allocate (sampled with tracemalloc)
MEMORY_EVERY = 97  # one input in this many runs under tracemalloc
SEED_CHARS = 16  # hex digits of the sha256 that name a seed file
INTERESTING = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000,
               0xFFFFFFFF)


class Hang(BaseException):
    """An input ran past its time (a BaseException: a parser's `except Exception` must not eat it)."""


class TooMuchMemory(MemoryError):
    """One input allocated more than MAX_PEAK_BYTES."""


@dataclass(frozen=True)
class Target:
    name: str
    what: str  # one line: the parser and its contract
    seeds: Callable[[], list[bytes]]  # valid inputs, the same every time
    open: Callable[[Path], ContextManager[Runner]]  # a runner over a scratch folder
    tokens: tuple[bytes, ...] = ()  # the format's own words, inserted whole
    fix: Callable[[bytes], bytes] | None = None  # re-seal a mutated input (CRC, checksum, tag)
    anchors: tuple[bytes, ...] = ()  # what a field or value follows in the format (":", ",", a line feed)
    max_bytes: int = 1024
    probe_bytes: int = 0  # each token run to this length once (0: none; see `_inputs`)
    fresh_every: int = 0  # a stateful parser is opened afresh after this many inputs (0: never)


def refusing(parse: Callable[[bytes], object], *refusals: type[Exception]) -> Callable[[Path], ContextManager[Runner]]:
    """A stateless parser's `Target.open`: "ok", or the `reason` of one of its documented `refusals`."""
    def run(data: bytes) -> str:
        try:
            parse(data)
        except refusals as e:
            return e.reason
        return "ok"
    return lambda scratch: contextlib.nullcontext(run)


@dataclass
class Crash:
    target: str
    signature: str  # the exception and where it was raised: one seed per signature
    detail: str
    data: bytes
    alone: bool  # fails again on a fresh runner, fed nothing before it
    path: Path | None = None


@dataclass
class Result:
    target: str
    inputs: int = 0
    seconds: float = 0.0
    outcomes: Counter = field(default_factory=Counter)  # "ok" or the refusal's reason
    crashes: list[Crash] = field(default_factory=list)

    @property
    def refused(self) -> int:
        return self.inputs - self.outcomes["ok"] - len(self.crashes)


# --------------------------------------------------------------------------- mutation

class Mutator:
    """Havoc over a corpus: 1 to 4 mutations of a corpus item, deterministic for its `rng`."""

    def __init__(self, rng: random.Random, corpus: list[bytes], tokens: tuple[bytes, ...], max_bytes: int,
                 anchors: tuple[bytes, ...] = ()) -> None:
        self.rng, self.corpus, self.tokens, self.max_bytes = rng, list(corpus), tokens, max_bytes
        self.anchors = anchors or tokens
        self._ops = (self._flip, self._set, self._insert, self._delete, self._integer, self._splice,
                     self._repeat, self._truncate, self._token, self._token, self._tokens)

    def __call__(self) -> bytes:
        data = bytearray(self.rng.choice(self.corpus))
        for _ in range(self.rng.randint(1, 4)):
            data = self.rng.choice(self._ops)(data)
        return bytes(data[:self.max_bytes])

    def probes(self, size: int) -> Iterator[bytes]:
        """Each token (in an order of this seed's) repeated to about `size` bytes in a corpus item."""
        for token in self.rng.sample(self.tokens, len(self.tokens)):
            base = bytearray(self.rng.choice(self.corpus))
            i = self._after_token(base)
            yield bytes(base[:i] + token * max(1, size // len(token)) + base[i:])

    def _at(self, data: bytearray, extra: int = 0) -> int:
        return self.rng.randrange(len(data) + extra) if len(data) + extra else 0

    def _flip(self, d: bytearray) -> bytearray:
        for _ in range(self.rng.randint(1, 4)):
            if d:
                d[self._at(d)] ^= 1 << self.rng.randrange(8)
        return d

    def _set(self, d: bytearray) -> bytearray:
        if d:
            d[self._at(d)] = self.rng.choice((0, 0xFF, 0x7F, 0x80, self.rng.randrange(256)))
        return d

    def _insert(self, d: bytearray) -> bytearray:
        i = self._at(d, 1)
        d[i:i] = self.rng.randbytes(self.rng.randint(1, 16))
        return d

    def _delete(self, d: bytearray) -> bytearray:
        i = self._at(d)
        del d[i:i + self.rng.randint(1, 32)]
        return d

    def _integer(self, d: bytearray) -> bytearray:
        width = self.rng.choice((1, 2, 4))
        value = self.rng.choice(INTERESTING) & ((1 << 8 * width) - 1)
        if self.rng.random() < 0.3:
            value = ((1 << 8 * width) - value) & ((1 << 8 * width) - 1)  # and its negative
        raw = value.to_bytes(width, self.rng.choice(("big", "little")))
        i = self._at(d, 1)
        d[i:i + width] = raw
        return d

    def _splice(self, d: bytearray) -> bytearray:
        other = self.rng.choice(self.corpus)
        return d[:self._at(d, 1)] + other[self.rng.randrange(len(other) + 1):]

    def _repeat(self, d: bytearray) -> bytearray:
        if not d:
            return d
        i = self._at(d)
        chunk = d[i:i + self.rng.randint(1, 64)]
        times = self.rng.choice((2, 8, 64, 1024))
        times = max(1, min(times, (self.max_bytes - len(d)) // max(len(chunk), 1)))
        d[i:i] = chunk * times
        return d

    def _truncate(self, d: bytearray) -> bytearray:
        return d[:self._at(d, 1)]

    def _tokens(self, d: bytearray) -> bytearray:
        """One of the format's tokens many times over: nesting, long runs of separators."""
        if not self.tokens:
            return self._repeat(d)
        token = self.rng.choice(self.tokens)
        times = max(1, min(self.rng.choice((16, 256, 4096)), (self.max_bytes - len(d)) // len(token)))
        i = self._after_token(d)
        d[i:i] = token * times
        return d

    def _after_token(self, d: bytearray) -> int:
        """Where one of the format's anchors ends in `d` (where a value or a field may start), else anywhere."""
        token = self.rng.choice(self.anchors)
        found = d.find(token, self._at(d, 1))
        return found + len(token) if found >= 0 else self._at(d, 1)

    def _token(self, d: bytearray) -> bytearray:
        if not self.tokens:
            return self._integer(d)
        token = self.rng.choice(self.tokens)
        i = self._after_token(d) if self.rng.random() < 0.5 else self._at(d, 1)
        if self.rng.random() < 0.5:
            d[i:i] = token
        else:
            d[i:i + len(token)] = token
        return d


# --------------------------------------------------------------------------- running one input

def _on_alarm(signum, frame) -> None:
    raise Hang("the input ran past its time")


@contextlib.contextmanager
def _deadline(seconds: float | None) -> Iterator[None]:
    """`Hang` after `seconds` (only in the main thread, where signals are delivered; None: no limit)."""
    if not seconds or threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return
    old = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def signature(e: BaseException) -> str:
    """The exception's type and the innermost line of project code it came from."""
    if isinstance(e, (Hang, TooMuchMemory)):
        return type(e).__name__  # wherever the time or the memory ran out
    frames = traceback.extract_tb(e.__traceback__)
    ours = [f for f in frames if "site-packages" not in f.filename and "/engine.py" not in f.filename] or frames
    where = f"{Path(ours[-1].filename).name}:{ours[-1].lineno}" if ours else "?"
    return f"{type(e).__name__} at {where}"


def run_one(runner: Runner, data: bytes, hang_s: float | None = HANG_S, measure: bool = False) -> str:
    """What became of one input: the runner's outcome; a crash raises (MemoryError past the bound)."""
    if measure:
        tracemalloc.start()
    try:
        with _deadline(hang_s):
            outcome = runner(data)
        if measure and (peak := tracemalloc.get_traced_memory()[1]) > MAX_PEAK_BYTES:
            raise TooMuchMemory(f"one input of {len(data)} bytes allocated {peak >> 20} MiB at its peak")
    finally:
        if measure:
            tracemalloc.stop()
    return outcome


def replay(target: Target, data: bytes, scratch: Path | None = None, hang_s: float | None = None,
           measure: bool = True) -> str:
    """One input on a fresh runner (what the seed tests do): the outcome, or the crash raised."""
    with contextlib.ExitStack() as stack:
        runner = open_runner(stack, target, scratch)
        return run_one(runner, data, hang_s, measure)


def open_runner(stack: contextlib.ExitStack, target: Target, scratch: Path | None) -> Runner:
    """A runner over a folder of its own (inside `scratch`), removed when `stack` closes."""
    folder = stack.enter_context(tempfile.TemporaryDirectory(prefix=f"fuzz-{target.name}-", dir=scratch))
    return stack.enter_context(target.open(Path(folder)))


def _fails(target: Target, data: bytes, scratch: Path, sig: str, hang_s: float | None) -> bool:
    try:
        replay(target, data, scratch, hang_s, measure=sig == TooMuchMemory.__name__)
    except (Exception, Hang) as e:  # noqa: BLE001 - a crash is what is looked for
        return signature(e) == sig
    return False


def minimize(target: Target, data: bytes, scratch: Path, sig: str, hang_s: float | None, tries: int = 300) -> bytes:
    """`data` cut down (chunks removed, halving) while it still fails with `sig` on a fresh runner."""
    chunk = max(len(data) // 2, 1)
    while chunk >= 1 and tries > 0:
        i, cut = 0, False
        while i < len(data) and tries > 0:
            tries -= 1
            smaller = data[:i] + data[i + chunk:]
            if smaller != data and _fails(target, smaller, scratch, sig, hang_s):
                data, cut = smaller, True
            else:
                i += chunk
        if not cut:
            chunk //= 2
    return data


def save_seed(seeds: Path, target: str, data: bytes) -> Path:
    path = seeds / target / f"{hashlib.sha256(data).hexdigest()[:SEED_CHARS]}.bin"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------- one target, its budget

@dataclass
class Budget:
    iterations: int | None = None  # inputs per target (None: until `seconds`)
    seconds: float | None = None  # wall time per target (None: until `iterations`)
    seed: int = 1
    hang_s: float | None = HANG_S
    memory_every: int = MEMORY_EVERY  # 0: never measured
    probe: bool = True  # each token run long once (Target.probe_bytes), before the mutations

    def over(self, inputs: int, started: float) -> bool:
        if self.iterations is not None and inputs >= self.iterations:
            return True
        return self.seconds is not None and time.monotonic() - started >= self.seconds


def fuzz_target(target: Target, budget: Budget, seeds: Path | None = None,
                progress: Callable[[str], None] | None = None) -> Result:
    """Run `target` for `budget`; crashes are cut down and (with `seeds`) written as seed files."""
    if budget.iterations is None and budget.seconds is None:
        raise ValueError("a budget needs iterations or seconds")
    rng = random.Random(f"{budget.seed}:{target.name}")
    corpus = target.seeds()
    mutate = Mutator(rng, corpus, target.tokens, target.max_bytes, target.anchors)
    inputs = _inputs(target, budget, corpus, mutate)
    result, seen, started, said = Result(target.name), {}, time.monotonic(), time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{target.name}-") as tmp, contextlib.ExitStack() as stack:
        scratch = Path(tmp)
        runner = open_runner(stack, target, scratch)
        while not budget.over(result.inputs, started):
            if target.fresh_every and result.inputs and result.inputs % target.fresh_every == 0:
                stack.close()
                runner = open_runner(stack, target, scratch)
            data, grows = next(inputs)
            result.inputs += 1
            measure = bool(budget.memory_every) and result.inputs % budget.memory_every == 0
            try:
                outcome = run_one(runner, data, budget.hang_s, measure)
            except KeyboardInterrupt:
                raise
            except (Exception, Hang) as e:  # noqa: BLE001 - outside the contract: a crash
                _crashed(target, result, seen, e, data, scratch, budget, seeds, progress)
                stack.close()  # the runner's state may be broken: a fresh one
                runner = open_runner(stack, target, scratch)
                continue
            if outcome not in result.outcomes and grows:
                mutate.corpus.append(data)  # a new outcome: a new path, worth mutating further
            result.outcomes[outcome] += 1
            if progress is not None and time.monotonic() - said >= 5:
                said = time.monotonic()
                progress(f"{target.name}: {result.inputs:,} inputs, {len(result.crashes)} crashes")
    result.seconds = time.monotonic() - started
    return result


def _inputs(target: Target, budget: Budget, corpus: list[bytes], mutate: Mutator) -> Iterator[tuple[bytes, bool]]:
    """(input, whether a new outcome adds it to the corpus): the seeds as they are; then, with
    `budget.probe`, each token run to `target.probe_bytes` (what is slow only when it is long:
    a parser's time growing with the square of the input); then mutations, re-sealed half the time."""
    for data in corpus:
        yield data, False
    if budget.probe and target.probe_bytes:
        for data in mutate.probes(target.probe_bytes):
            yield data, False
    while True:
        data = mutate()
        if target.fix is not None and mutate.rng.random() < 0.5:
            data = target.fix(data)[:target.max_bytes]
        yield data, True


def _crashed(target: Target, result: Result, seen: dict, e: BaseException, data: bytes, scratch: Path,
             budget: Budget, seeds: Path | None, progress: Callable[[str], None] | None) -> None:
    sig = signature(e)
    if sig in seen:
        seen[sig] += 1
        return
    seen[sig] = 1
    alone = _fails(target, data, scratch, sig, budget.hang_s)
    if alone:  # a hang's tries can each take as long again: a few halvings only
        data = minimize(target, data, scratch, sig, budget.hang_s, tries=6 if sig == Hang.__name__ else 300)
    crash = Crash(target.name, sig, f"{type(e).__name__}: {str(e)[:200]}", data, alone)
    if seeds is not None:
        crash.path = save_seed(seeds, target.name, data)
    result.crashes.append(crash)
    if progress is not None:
        where = f" -> {crash.path}" if crash.path else ""
        progress(f"{target.name}: CRASH {sig} ({'alone' if alone else 'after earlier inputs'}){where}")


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
