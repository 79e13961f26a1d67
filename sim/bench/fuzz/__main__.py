"""`python -m sim.bench.fuzz`: every target for a fixed budget, then a table (docs/bench.md, "Fuzzing").

    python -m sim.bench.fuzz --seconds 8                 every target, 8 s each (`make fuzz`)
    python -m sim.bench.fuzz --iterations 5000 --seed 3  the same inputs every time
    python -m sim.bench.fuzz --target uplink --engine atheris --seconds 300   coverage-guided, if installed

Progress goes to standard error, the table to standard output; the exit status is 1 when any
target crashed (its inputs are in tests/fuzz_seeds/<target>/, unless --no-save).
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import sys
import tempfile
import time
from pathlib import Path

from stratoecho.logs import setup_logging

from . import SEEDS, targets
from .engine import HANG_S, Budget, Result, Target, fuzz_target, open_runner, run_one, save_seed, say, signature

EXTRA_MEMORY = 4 << 30  # the address space a run may add to what it holds at the start
REASONS_SHOWN = 4


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sim.bench.fuzz", description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=None, help="wall time per target (default 8 without --iterations)")
    p.add_argument("--iterations", type=int, default=None, help="inputs per target (with --seconds: whichever first)")
    p.add_argument("--seed", type=int, default=1, help="the fuzzer's seed; the same seed makes the same inputs")
    p.add_argument("--target", action="append", default=None, metavar="NAME",
                   help="a target to run (repeat for several; default all: --list names them)")
    p.add_argument("--seeds", type=Path, default=SEEDS, help=f"where crash inputs are kept (default {SEEDS})")
    p.add_argument("--no-save", action="store_true", help="report crashes without writing their inputs")
    p.add_argument("--hang", type=float, default=5.0, help="seconds after which one input is a hang (default 5)")
    p.add_argument("--engine", choices=("mutate", "atheris"), default="mutate",
                   help="mutate: this package's deterministic fuzzer; atheris: libFuzzer's coverage-guided one "
                        "(pip install atheris; one --target, --seconds)")
    p.add_argument("--list", action="store_true", help="name the targets and what each may refuse with, then stop")
    return p


def _limit_memory() -> None:
    """A runaway input ends in MemoryError (a crash, reported) rather than in the machine's swap."""
    try:
        with open("/proc/self/statm") as f:
            held = int(f.read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (held + EXTRA_MEMORY, resource.getrlimit(resource.RLIMIT_AS)[1]))
    except (OSError, ValueError):
        pass  # no /proc, or a lower hard limit already: nothing to add


def table(results: list[Result]) -> str:
    """One line per target: inputs, rate, accepted, refused (by reason, most common first), crashes."""
    head = f"{'target':<22} {'inputs':>9} {'per s':>7} {'ok':>7} {'refused':>8}  {'crashes':>7}  refusals by reason"
    lines = [head, "-" * len(head)]
    for r in results:
        reasons = [(k, n) for k, n in r.outcomes.most_common() if k != "ok"]
        shown = ", ".join(f"{k} {n:,}" for k, n in reasons[:REASONS_SHOWN])
        shown += f", +{len(reasons) - REASONS_SHOWN} more" if len(reasons) > REASONS_SHOWN else ""
        rate = r.inputs / r.seconds if r.seconds else 0
        lines.append(f"{r.target:<22} {r.inputs:>9,} {rate:>7,.0f} {r.outcomes['ok']:>7,} {r.refused:>8,}  "
                     f"{len(r.crashes):>7}  {shown}")
    total = sum(r.inputs for r in results)
    lines.append(f"{len(results)} targets, {total:,} inputs, {sum(len(r.crashes) for r in results)} crashes")
    for r in results:
        for c in r.crashes:
            kept = f"\n      kept: {c.path}" if c.path else ""
            lines.append(f"  ! {c.target}: {c.signature}{'' if c.alone else ' (after earlier inputs)'}: "
                         f"{c.detail[:120]}{kept}")
    return "\n".join(lines)


def run_atheris(target: Target, seconds: float, seed: int, seeds: Path) -> int:
    """`--engine atheris`: `target` under libFuzzer's coverage-guided search for `seconds` (Google's atheris,
    no dependency of the project). The runner, contract and seed corpus are the mutation engine's; libFuzzer
    keeps the inputs that reach new code and stops at the first crash, kept as a seed like any other. Not
    deterministic: a longer search, not `make fuzz`'s. Does not return (libFuzzer exits), 2 without atheris."""
    try:
        import atheris
    except ImportError:
        print("error: --engine atheris needs atheris (pip install atheris)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{target.name}-") as tmp, contextlib.ExitStack() as stack:
        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        for i, data in enumerate(target.seeds()):
            (corpus / f"seed-{i}").write_bytes(data)
        runner = open_runner(stack, target, Path(tmp))

        def one(data: bytes) -> None:
            try:
                run_one(runner, data, hang_s=None)
            except Exception as e:  # noqa: BLE001 - outside the contract: kept, then libFuzzer's crash
                say(f"{target.name}: CRASH {signature(e)} -> {save_seed(seeds, target.name, data)}")
                raise

        atheris.instrument_all()
        atheris.Setup([sys.argv[0], f"-max_total_time={int(seconds)}", f"-seed={seed}", f"-max_len={target.max_bytes}",
                       f"-timeout={int(HANG_S)}", "-rss_limit_mb=2048", str(corpus)], one)
        atheris.Fuzz()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging("CRITICAL")  # the readers warn of every line they skip: the table says how many
    known = targets()
    if args.list:
        for name, t in known.items():
            print(f"{name:<22} {t.what}")
        return 0
    unknown = [n for n in args.target or () if n not in known]
    if unknown:
        print(f"error: unknown target {', '.join(unknown)}; known: {', '.join(known)}", file=sys.stderr)
        return 2
    chosen = [known[n] for n in args.target] if args.target else list(known.values())
    seeds = None if args.no_save else args.seeds
    if args.engine == "atheris":
        if len(chosen) != 1 or args.seconds is None:
            print("error: --engine atheris runs one --target for --seconds", file=sys.stderr)
            return 2
        return run_atheris(chosen[0], args.seconds, args.seed, seeds or SEEDS)
    seconds = args.seconds if args.seconds is not None or args.iterations is not None else 8.0
    budget = Budget(iterations=args.iterations, seconds=seconds, seed=args.seed, hang_s=args.hang)
    _limit_memory()
    results, started = [], time.monotonic()
    for t in chosen:
        say(f"fuzz {t.name}: {t.what}")
        r = fuzz_target(t, budget, seeds, progress=say)
        say(f"  {r.inputs:,} inputs in {r.seconds:.1f} s, {len(r.crashes)} crashes")
        results.append(r)
    print(table(results))
    print(f"{time.monotonic() - started:.0f} s in all (seed {args.seed})")
    return 1 if any(r.crashes for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
