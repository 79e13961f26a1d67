"""What the payload daemon imports: every module it loads stays in its memory for the flight
(docs/bench.md, "the payload daemon": numpy alone was ~8 MB of it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Heavy packages the daemon needs on none of its paths, or only on a receiver's.
NOT_IMPORTED = ("numpy", "sim", "groundstation", "host_training", "llama_cpp")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport json, sys; print(json.dumps(sorted(sys.modules)))"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_the_daemon_imports_no_numpy():
    loaded = _modules_after("import payload.__main__")
    heavy = sorted(m for m in loaded if m.split(".")[0] in NOT_IMPORTED)
    assert not heavy, f"the daemon imports {heavy[:5]}"


def test_the_options_of_an_installed_rig_bring_in_only_the_rig():
    """`payload run` asks every installed rig for its options (payload/rigs.py): on a Pi the
    bench's rig is installed too, and all it may load is its own small module and settings,
    never the simulated world (numpy, the channel, the GPS simulator)."""
    loaded = _modules_after("from payload.__main__ import build_parser; build_parser()")
    bench = sorted(m for m in loaded if m.split(".")[0] == "sim")
    assert set(bench) <= {"sim", "sim.world", "sim.world.rig", "sim.world.settings"}, bench
    assert not any(m.split(".")[0] in ("numpy", "groundstation", "host_training", "llama_cpp") for m in loaded)


def test_a_receiver_still_corrects_ssdv_packets_with_numpy():
    from stratoecho.wire import ssdv_rs

    message = bytes(range(200))
    codeword = bytearray(message + ssdv_rs.parity(message))
    codeword[3] ^= 0x5A
    codeword[150] ^= 0x01
    assert ssdv_rs.correct(bytes(codeword)) == (message + ssdv_rs.parity(message), 2)
