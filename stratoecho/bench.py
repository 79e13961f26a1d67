"""`make bench`: speed and size figures, printed as a table.

Every claim of speed in this project comes from here, never from a timed unit
test. Rows whose inputs are missing (no persona built yet) say so and are skipped.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

# Effective memory bandwidth llama.cpp sees (FACTS.md), for the predicted tokens/s.
BOARD_BANDWIDTH_GB_S = {"Pi Zero 2 W": 1.1, "Pi 4": 3.9, "Pi 5": 10.0}


def _rate(fn, min_s: float = 0.5) -> float:
    """Calls per second of `fn`, run for at least `min_s`."""
    n, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < min_s:
        fn()
        n += 1
    return n / elapsed


def bench_wire() -> list[tuple]:
    from . import wire

    text = "The horizon is a thin blue line and the battery is complaining about the cold. " * 3
    rec = wire.Record(wire.Kind.MUSING, 3, 7, 1767225600, text[:280])

    def roundtrip():
        ra = wire.Reassembler()
        for f in wire.fragment_record(rec, 64):
            ra.add(wire.decode_frame(f))

    t = wire.Telemetry("STRATO1", 42, "10:04:11", 52.70123, -2.71234, 12345, 9, -40.5, 180.2, 3890, 3)
    return [
        ("wire: 280-char musing, MTU 64, fragment+decode+rebuild", f"{_rate(roundtrip):,.0f}", "records/s", ""),
        ("wire: UKHAS sentence encode+decode", f"{_rate(lambda: wire.decode_frame(wire.encode_sentence(t))):,.0f}", "sentences/s", ""),
    ]


def bench_store() -> list[tuple]:
    from payload.store import Store

    with tempfile.TemporaryDirectory() as d:
        s = Store(Path(d) / "q.db")
        b = s.start_boot()
        durable = _rate(lambda: s.enqueue("musing", b, lambda q: b"a thought " * 28))
        batched = _rate(lambda: s.enqueue("telemetry", b, lambda q: b"$$STRATO1,1*0000\n"))
        s.close()
    hour, synced = _flight_hour_io(flush_s=None), _flight_hour_io(flush_s=0.0)
    return [
        ("store: durable enqueue (musing, synced before return)", f"{durable:,.0f}", "records/s", ""),
        ("store: batched enqueue (telemetry)", f"{batched:,.0f}", "records/s", f"{batched / durable:.1f}x of durable"),
        ("store: bytes written per hour of bench flight", f"{hour.bytes_written / 1e6:.2f}", "MB/h",
         f"{hour.syncs} syncs; {hour.bytes_written / synced.bytes_written:.2f}x of syncing every record"),
    ]


def _flight_hour_io(flush_s: float | None):
    """What one hour of the bench flight asks of the card (sim/powercut.py's VFS counts it):
    config/payload.sim.toml's schedule (a sentence every 10 s, a musing every 3 min, health
    every 5 min), each record sent soon after, the ground acknowledging in each uplink
    window, and the store's batching."""
    from payload.config import load_config
    from payload.store import Store
    from sim.powercut import PowerCutVFS

    cfg = load_config(Path(__file__).resolve().parent.parent / "config" / "payload.sim.toml")
    tel, mus, hea = (int(x) for x in (cfg.schedule.telemetry_s, cfg.schedule.musing_s, cfg.schedule.health_s))
    window = tel * cfg.uplink.window_every

    now = [1_767_225_600.0]
    with tempfile.TemporaryDirectory() as d, PowerCutVFS("bench-count") as vfs:
        flush_s = cfg.store.flush_s if flush_s is None else flush_s
        store = Store(Path(d) / "q.db", vfs=vfs.name, flush_s=flush_s, clock=lambda: now[0])
        boot = store.start_boot()
        for t in range(0, 3600, tel):
            now[0] += tel
            store.enqueue("telemetry", boot, lambda q: b"$$STRATO1,%d,12:00:00,52.1,-0.1,12345,9,-40.5,180.2,3890,1*ABCD\n" % q)
            if t % mus == 0:
                store.enqueue("musing", boot, lambda q: bytes(4) + b"the horizon curves " * 14)
            if t % hea == 0:
                store.enqueue("health", boot, lambda q: bytes(4) + bytes(40))
            while (q := store.current_telemetry() or store.next_queued()) is not None:
                store.mark_sent(q.id)
            if t % window == 0:
                store.acknowledge("musing", boot, 10**9)
            store.maybe_flush()
        store.close()
        return vfs.total()


def bench_airtime() -> list[tuple]:
    from .airtime import lora_airtime_s

    published = [((11, 20_800, 8), 16.0), ((6, 20_800, 5), 0.5), ((7, 250_000, 6), 0.08)]
    rows = []
    for (sf, bw, cr), ref in published:
        t = lora_airtime_s(80, sf, bw, cr)
        rows.append((f"airtime: 80 B at SF{sf}/{bw / 1000:g} kHz/4:{cr}", f"{t:.3f}", "s", f"{t / ref:.2f}x of FACTS.md's {ref:g} s"))
    return rows


def bench_fec() -> list[tuple]:
    """Musings through a seeded Gilbert-Elliott channel at 10/30/50 % loss (mean burst 4):
    delivered share and airtime against the erasure bound 1/(1-p), with parity alone and
    with the real repair protocol (payload and ground code, lossy uplink: sim/link_bench.py)."""
    from sim import link_bench

    from .wire import fec_bench

    return fec_bench.speed_rows() + fec_bench.delivery_rows() + link_bench.protocol_rows()


def bench_persona(bundle_dir: Path) -> list[tuple]:
    if not (bundle_dir / "persona.toml").is_file():
        return [("persona: (no bundle at %s: run `make persona`)" % bundle_dir, "-", "", "")]
    from llama_cpp import Llama

    from .bundle import load_bundle

    bundle = load_bundle(bundle_dir)
    size = bundle.model_path.stat().st_size
    llm = Llama(model_path=str(bundle.model_path), n_ctx=bundle.manifest.model.context_length, n_threads=2, verbose=False)
    prompt = bundle.render_prompt([
        {"role": "system", "content": bundle.manifest.persona.system_prompt},
        {"role": "user", "content": "Right now you are rising, 12.0 km up, -56 °C outside. What are you thinking?"},
    ])
    tokens, t0 = 0, time.perf_counter()
    for seed in range(3):
        out = llm.create_completion(prompt, max_tokens=64, seed=seed, temperature=0.8)
        tokens += out["usage"]["completion_tokens"]
    tps = tokens / (time.perf_counter() - t0)
    rows = [
        (f"persona: {bundle.manifest.model.file} size", f"{size / 1e6:.2f}", "MB", bundle.manifest.model.quantization),
        ("persona: generation here (2 threads)", f"{tps:,.0f}", "tokens/s", f"{tokens} tokens"),
    ]
    for board, gb_s in BOARD_BANDWIDTH_GB_S.items():
        # Bandwidth-bound upper estimate; tiny models are compute-bound well below it.
        rows.append((f"persona: predicted on {board}", f"{gb_s * 1e9 / size:,.0f}", "tokens/s", f"{gb_s} GB/s / model size (upper bound)"))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m stratoecho.bench", description="Print speed and size figures as a table.")
    p.add_argument("--persona", type=Path, default=Path("build/persona"), help="bundle to measure (default build/persona)")
    args = p.parse_args(argv)
    from .logs import setup_logging

    setup_logging("WARNING")  # the table is the output; per-step logs would bury it
    rows = bench_wire() + bench_store() + bench_airtime() + bench_fec() + bench_persona(args.persona)
    w = max(len(r[0]) for r in rows)
    print(f"{'figure':<{w}}  {'value':>12}  {'unit':<12}  ratio / note")
    print("-" * (w + 50))
    for name, value, unit, note in rows:
        print(f"{name:<{w}}  {value:>12}  {unit:<12}  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
