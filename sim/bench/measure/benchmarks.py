"""`make bench`: speed and size figures, printed as a table.

Every claim of speed in this project comes from here, never from a timed unit
test. Rows whose inputs are missing (no persona built yet) say so and are skipped.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

from sim.bench.measure.persona import bench_lora, bench_pi
from sim.bench.measure.training import bench_families, bench_ingest, bench_prepare, bench_quant
from sim.bench.run.flood import print_rows
from stratoecho.wire import Kind

# Effective memory bandwidth llama.cpp sees (docs/figures.md), for the predicted tokens/s.
BOARD_BANDWIDTH_GB_S = {"Pi Zero 2 W": 1.1, "Pi 4": 3.9, "Pi 5": 10.0}

SENTENCE = b"$$STRATO1,%d,12:00:00,52.1,-0.1,12345,9,-40.5,180.2,3890,1*ABCD\n"  # a full-length sentence


def _rate(fn, min_s: float = 0.5) -> float:
    """Calls per second of `fn`, run for at least `min_s`."""
    n, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < min_s:
        fn()
        n += 1
    return n / elapsed


def bench_wire() -> list[tuple]:
    from stratoecho import wire
    from stratoecho.wire.uplink_keys import new_key

    auth = wire.DownlinkAuth.from_flight_key(new_key())
    text = "The horizon is a thin blue line and the battery is complaining about the cold. " * 3
    rec = wire.Record(wire.Kind.MUSING, 3, 7, 1767225600, text[:280])

    def roundtrip():
        ra = wire.Reassembler()
        for f in wire.fragment_record(rec, 64, auth=auth):
            ra.add(wire.decode_frame(f, auth))

    t = wire.Telemetry("STRATO1", 42, "10:04:11", 52.70123, -2.71234, 12345, 9, -40.5, 180.2, 3890, 3)
    return [
        ("wire: 280-char musing, MTU 64, fragment+tag+check+decode+rebuild", f"{_rate(roundtrip):,.0f}", "records/s", ""),
        ("wire: UKHAS sentence encode+decode", f"{_rate(lambda: wire.decode_frame(wire.encode_sentence(t))):,.0f}",
         "sentences/s", ""),
    ]


def bench_store() -> list[tuple]:
    from payload.store import Store

    with tempfile.TemporaryDirectory() as d:
        s = Store(Path(d) / "q.db")
        b = s.counters.start_boot()
        durable = _rate(lambda: s.queue.enqueue(Kind.MUSING, b, lambda q: b"a thought " * 28))
        batched = _rate(lambda: s.queue.enqueue(Kind.TELEMETRY, b, lambda q: b"$$STRATO1,1*0000\n"))
        s.close()
    hour, synced = _flight_hour_io(flush_s=None), _flight_hour_io(flush_s=0.0)
    return [
        ("store: durable enqueue (musing, synced before return)", f"{durable:,.0f}", "records/s", ""),
        ("store: batched enqueue (telemetry)", f"{batched:,.0f}", "records/s", f"{batched / durable:.1f}x of durable"),
        ("store: bytes written per hour of bench flight", f"{hour.bytes_written / 1e6:.2f}", "MB/h",
         f"{hour.syncs} syncs; {hour.bytes_written / synced.bytes_written:.2f}x of syncing every record"),
    ]


def _flight_hour_io(flush_s: float | None):
    """What one hour of the bench flight asks of the card (sim/bench/run/powercut.py's VFS counts it):
    config/payload.sim.toml's schedule (a sentence every 10 s, a musing every 3 min, health
    every 5 min), each record sent soon after, the ground acknowledging in each uplink
    window, and the store's batching."""
    from payload.config import load_config
    from payload.store import Store
    from sim.bench.run.powercut import PowerCutVFS

    cfg = load_config(Path(__file__).resolve().parents[3] / "config" / "payload.sim.toml")
    tel, mus, hea = (int(x) for x in (cfg.schedule.telemetry_s, cfg.schedule.musing_s, cfg.schedule.health_s))
    window = tel * cfg.uplink.window_every

    now = [1_767_225_600.0]
    with tempfile.TemporaryDirectory() as d, PowerCutVFS("bench-count") as vfs:
        flush_s = cfg.store.flush_s if flush_s is None else flush_s
        store = Store(Path(d) / "q.db", vfs=vfs.name, flush_s=flush_s, clock=lambda: now[0])
        boot = store.counters.start_boot()
        for t in range(0, 3600, tel):
            now[0] += tel
            store.queue.enqueue(Kind.TELEMETRY, boot, lambda q: SENTENCE % q)
            if t % mus == 0:
                store.queue.enqueue(Kind.MUSING, boot, lambda q: bytes(4) + b"the horizon curves " * 14)
            if t % hea == 0:
                store.queue.enqueue(Kind.HEALTH, boot, lambda q: bytes(4) + bytes(40))
            while (q := store.queue.current_telemetry() or store.queue.next_queued()) is not None:
                store.queue.mark_sent(q.id)
            if t % window == 0:
                store.queue.acknowledge(Kind.MUSING, boot, 10**9)
            store.fallback.maybe_flush()
        store.close()
        return vfs.total()


def bench_airtime() -> list[tuple]:
    from stratoecho.airtime import lora_airtime_s

    published = [((11, 20_800, 8), 16.0), ((6, 20_800, 5), 0.5), ((7, 250_000, 6), 0.08)]
    rows = []
    for (sf, bw, cr), ref in published:
        t = lora_airtime_s(80, sf, bw, cr)
        rows.append((f"airtime: 80 B at SF{sf}/{bw / 1000:g} kHz/4:{cr}", f"{t:.3f}", "s", f"{t / ref:.2f}x of "
                                                                                           f"docs/figures.md's {ref:g} s"))
    return rows


def bench_fec() -> list[tuple]:
    """Musings through a seeded Gilbert-Elliott channel at 10/30/50 % loss (mean burst 4):
    delivered share and airtime against the erasure bound 1/(1-p), with parity alone and
    with the real repair protocol (payload and ground code, lossy uplink: sim/bench/run/link.py)."""
    from sim.bench.run import link as link_bench

    from . import fec as fec_bench

    return fec_bench.speed_rows() + fec_bench.delivery_rows() + link_bench.protocol_rows()


def bench_persona(bundle_dir: Path) -> list[tuple]:
    if not (bundle_dir / "persona.toml").is_file():
        return [("persona: (no bundle at %s: run `make persona`)" % bundle_dir, "-", "", "")]
    from llama_cpp import Llama

    from stratoecho.bundle import load_bundle

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
        rows.append((f"persona: predicted on {board}", f"{gb_s * 1e9 / size:,.0f}", "tokens/s", f"{gb_s} GB/s / model size "
                                                                                                "(upper bound)"))
    return rows


def bench_persona_worker(bundle_dir: Path, runs: int = 12, max_tokens: int = 64, n_threads: int = 2) -> list[tuple]:
    """Musing tokens/s through payload.persona.worker.PersonaWorker (spawned process, pipe, hard
    timeout) against llama-cpp-python called here on the same GGUF, threads, context, sampling
    and seeds. Wall time of each call as its caller sees it; runs alternate so that a busy
    machine slows both alike."""
    if not (bundle_dir / "persona.toml").is_file():
        return [("persona worker: (no bundle at %s: run `make persona`)" % bundle_dir, "-", "", "")]
    from datetime import datetime, timezone

    from llama_cpp import Llama

    from payload.parts.sensors import Readings
    from payload.persona.prompts import musing_messages
    from payload.persona.worker import PersonaWorker
    from stratoecho.bundle import load_bundle

    bundle = load_bundle(bundle_dir)
    m, s = bundle.manifest, bundle.manifest.sampling
    n_ctx = m.model.context_length
    r = Readings(datetime(2026, 6, 1, 10, 4, 11, tzinfo=timezone.utc), 52.1, -0.1, 12000.0, 9, -56.0, 190.0, 3900, "ascent")
    prompt = bundle.render_prompt(musing_messages(m.persona.system_prompt, r))
    llm = Llama(model_path=str(bundle.model_path), n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads,
                logits_all=False, verbose=False)
    n_prompt = len(llm.tokenize(prompt.encode(), add_bos=False, special=True))
    worker = PersonaWorker(bundle, n_ctx=n_ctx, n_threads=n_threads, timeout_s=300)
    worker.start()
    direct = [0, 0.0]
    through = [0, 0.0]
    try:
        # One untimed call each first: the first decode allocates buffers on both sides.
        llm.create_completion(prompt, max_tokens=max_tokens, seed=runs)
        worker.generate(prompt, max_tokens, seed=runs)
        for seed in range(runs):
            t0 = time.perf_counter()
            out = llm.create_completion(prompt, max_tokens=max_tokens, temperature=s.temperature, top_p=s.top_p,
                                        top_k=s.top_k, repeat_penalty=s.repeat_penalty, stop=list(m.persona.stop),
                                        seed=seed)
            direct[1] += time.perf_counter() - t0
            direct[0] += out["usage"]["completion_tokens"]
            t0 = time.perf_counter()
            gen = worker.generate(prompt, max_tokens, seed=seed)
            through[1] += time.perf_counter() - t0
            through[0] += gen.tokens
    finally:
        worker.close()
        llm.close()
    d_tps, w_tps = direct[0] / direct[1], through[0] / through[1]
    return [
        (f"persona worker: musing tokens/s, llama-cpp-python direct ({n_threads} threads)", f"{d_tps:,.0f}", "tokens/s",
         f"{direct[0]} tokens in {runs} musings, wall time of each call, its {n_prompt}-token prompt included"),
        (f"persona worker: musing tokens/s, through the worker ({n_threads} threads)", f"{w_tps:,.0f}", "tokens/s",
         f"{w_tps / d_tps:.2f}x of direct; target >= 0.97 ({through[0]} tokens, same seeds)"),
    ]  # fmt: skip


def _payload_proc(args: list[str], data: Path, config: Path | None = None):
    import subprocess

    root = Path(__file__).resolve().parents[3]
    cmd = [sys.executable, "-m", "payload", "--log-level", "WARNING", "run", "--sim", "--udp", "127.0.0.1:9",
           "--data", str(data), "--drain-s", "0", *args]
    if config is not None:
        cmd += ["--sim-config", str(config)]
    return subprocess.Popen(cmd, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


_IDLE_TOML = """
[schedule]
telemetry_s = 10.0
musing_s = 86400.0
first_musing_s = 86400.0
health_s = 86400.0
image_s = 86400.0
"""


def bench_daemon_idle_cpu(window_s: float = 20.0, settle_s: float = 5.0) -> list[tuple]:
    """CPU the daemon spends between tasks: a real `python -m payload run --sim --no-persona`
    at real time (speedup 1) with every schedule but the 10 s beacon set to a day; CPU seconds
    (user + system, its own process: the bench world's simulated GPS and sensors run in it too)
    over `window_s` wall seconds after `settle_s` of start-up."""
    import psutil

    with tempfile.TemporaryDirectory() as d:
        cfg = Path(d) / "idle.toml"
        cfg.write_text(_IDLE_TOML)
        proc = _payload_proc(["--no-persona", "--speedup", "1", "--minutes", f"{(settle_s + window_s) / 60 + 2:g}"],
                             Path(d) / "p", cfg)
        try:
            ps, wait = psutil.Process(proc.pid), threading.Event()
            wait.wait(settle_s)
            if proc.poll() is not None:
                raise RuntimeError(f"idle bench: payload run exited {proc.returncode}: {proc.stderr.read()[-500:]!r}")
            c0, t0 = ps.cpu_times(), time.monotonic()
            wait.wait(window_s)
            c1, t1 = ps.cpu_times(), time.monotonic()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    cpu = (c1.user - c0.user) + (c1.system - c0.system)
    share = cpu / (t1 - t0)
    return [("daemon idle CPU: --no-persona, beacon every 10 s, nothing else due", f"{share:.2%}", "of a core",
             f"target <= 2 %; {cpu:.2f} CPU s over {t1 - t0:.0f} s wall (bench world included)")]


def bench_flight_wall(bundle_dir: Path, minutes: float = 180.0) -> list[tuple]:
    """A whole bench flight (`sim fly`: payload with the persona, channel at 20 % loss, ground
    station) of `minutes` flight minutes on the lockstep clock at --speedup max: its wall time."""
    import json
    import subprocess

    with tempfile.TemporaryDirectory() as d:
        persona = ["--persona", str(bundle_dir)] if (bundle_dir / "persona.toml").exists() else ["--no-persona"]
        proc = subprocess.run([sys.executable, "-m", "sim", "fly", "--out", d, "--minutes", f"{minutes:g}",
                               "--speedup", "max", "--loss", "0.2", "--quiet", *persona],
                              capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(f"flight bench: sim fly exited {proc.returncode}: {proc.stderr[-800:]}")
        r = json.loads((Path(d) / "report.json").read_text())
    clock = r.get("bench_clock", {})
    return [(f"bench flight: {minutes / 60:g} h at --speedup max ({'persona' if persona[0] == '--persona' else 'no persona'})",
             f"{r['wall_s']:.1f}", "s wall",
             f"goal < 60 s; {r['achieved_speedup']}x real time; {clock.get('advances', 0):,} clock advances, "
             f"{clock.get('turns', 0):,} turns, {clock.get('datagrams', 0):,} datagrams")]


def bench_prediction() -> list[tuple]:
    """The landing prediction against the real landings of 100 bench flights it never saw
    (sim/bench/measure/prediction.py: what it is told, how the flights are heard)."""
    from .prediction import SEEDS, run

    t0 = time.perf_counter()
    result = run(SEEDS)
    seconds = time.perf_counter() - t0
    rows = []
    for at, r in result.items():
        rows += [
            (f"landing prediction at {at}: median error", f"{r['median_km']:,.2f}", "km",
             f"{r['flights']} flights; 90th percentile {r['p90_km']:,.2f} km"),
            (f"landing prediction at {at}: inside its 95 % ellipse", f"{100 * r['inside']:.0f}", "%",
             "of the real landings"),
        ]  # fmt: skip
    rows.append(("landing prediction: time per prediction", f"{1000 * seconds / (2 * len(SEEDS)):,.0f}", "ms",
                 "100 sampled flights each for the ellipse, flight simulation included"))
    return rows


_BASEMAP_CHILD = """
import json, sys, time
from pathlib import Path

def rss_kib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

from groundstation.maps.basemap import BaseMap
cache = Path(sys.argv[1])
before = rss_kib()
t0 = time.perf_counter()
first = BaseMap(cache).features((-3.75, 52.2, -1.75, 53.2), 9)  # the first start: builds the place index
first_s = time.perf_counter() - t0
t0 = time.perf_counter()
BaseMap(cache).features((-3.75, 52.2, -1.75, 53.2), 9)  # a later start: the cached index
later_s = time.perf_counter() - t0
m = BaseMap(cache)
m.features((-3.75, 52.2, -1.75, 53.2), 9)
times, sizes = [], []
for i in range(20):  # chase-sized views (2 x 1 degrees, zoom 9) around the bench's launch site
    box = (-3.75 + 0.05 * i, 52.2, -1.75 + 0.05 * i, 53.2)
    t0 = time.perf_counter()
    sizes.append(len(json.dumps(m.features(box, 9), separators=(",", ":"))))
    times.append(time.perf_counter() - t0)
world = len(json.dumps(m.features((-180, -85, 180, 85), 3), separators=(",", ":")))
print(json.dumps({"first_s": first_s, "later_s": later_s, "view_ms": 1000 * sorted(times)[len(times) // 2],
                  "view_kb": sorted(sizes)[len(sizes) // 2] / 1000, "world_kb": world / 1000,
                  "rss_mib": (rss_kib() - before) / 1024}))
"""


def bench_basemap() -> list[tuple]:
    """The dashboard's offline base map (groundstation/maps/basemap.py), in a process of its own
    so its memory is its own: the first start (the place index built), a later one, a chase-sized
    view's time and size, the world at zoom 3."""
    import json
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as cache:
        out = subprocess.run([sys.executable, "-c", _BASEMAP_CHILD, cache], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return [
        ("base map: first start (place index built)", f"{r['first_s']:.2f}", "s", "cities500, kept in the cache"),
        ("base map: a later start", f"{r['later_s']:.2f}", "s", "the cached index and resolution i"),
        ("base map: a chase view (2 x 1 degrees, zoom 9)", f"{r['view_ms']:.1f}", "ms",
         f"median of 20; {r['view_kb']:.0f} KB of GeoJSON"),
        ("base map: the world at zoom 3", f"{r['world_kb']:.0f}", "KB", "clipped, thinned to the pixel"),
        ("base map: memory", f"{r['rss_mib']:.0f}", "MiB", "RSS added by the index and the shapes loaded"),
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sim.bench.measure.benchmarks",
                                description="Print speed and size figures as a table.")
    p.add_argument("--persona", type=Path, default=Path("build/persona"), help="bundle to measure (default build/persona)")
    args = p.parse_args(argv)
    from stratoecho.logs import setup_logging

    setup_logging("WARNING")  # the table is the output; per-step logs would bury it
    # A measurement of a module of its own gives its rows by `rows()`, the module saying what they measure.
    from . import aggregator_flood, crowds, dashboard, listen_flood, lockout, memory, relays, ssdv_flood, voice_classifier

    rows = (bench_wire() + bench_store() + bench_airtime() + bench_fec() + bench_ingest() + bench_prepare()
            + bench_persona(args.persona) + bench_persona_worker(args.persona) + bench_pi(args.persona)
            + voice_classifier.rows(args.persona)
            + bench_lora() + memory.rows(args.persona)
            + bench_daemon_idle_cpu() + bench_flight_wall(args.persona) + bench_quant(args.persona)
            + bench_families() + bench_prediction() + bench_basemap()
            + aggregator_flood.rows() + aggregator_flood.storage_rows() + listen_flood.rows() + ssdv_flood.rows()
            + dashboard.rows()
            + lockout.rows() + crowds.rows() + relays.rows(args.persona))
    print_rows(rows, header=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
