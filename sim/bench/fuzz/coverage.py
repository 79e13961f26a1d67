"""`--engine atheris`: one target under libFuzzer's coverage-guided search (Google's atheris, when it
is installed: `pip install atheris`; it is no dependency of the project).

The target's runner, contract and seed corpus are the same as the mutation engine's; libFuzzer
picks the mutations, keeps the inputs that reach new code, and stops at the first crash, whose
input is kept as a seed like any other. Not deterministic: a longer search, not `make fuzz`'s.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from pathlib import Path

from .engine import HANG_S, Target, open_runner, run_one, save_seed, say, signature


def run_atheris(target: Target, seconds: float, seed: int, seeds: Path) -> int:
    """Fuzz `target` for `seconds`; does not return (libFuzzer exits the process), 2 if atheris is missing."""
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
