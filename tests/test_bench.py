"""`make bench` prints its table (figures are its business; here only that it runs and says why rows are missing)."""

from __future__ import annotations

from sim.bench.measure import benchmarks as bench


def test_bench_prints_a_table_and_names_a_missing_persona(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench, "_rate", lambda fn, min_s=0.5: (fn(), 1.0)[1])  # one call per row
    real_ingest = bench.bench_ingest
    # The full row generates a million messages and loads them with json.load (~5.5 GB): `make bench`'s job.
    monkeypatch.setattr(bench, "bench_ingest", lambda: real_ingest(2000))
    real_quant = bench.bench_quant
    monkeypatch.setattr(bench, "bench_quant", lambda persona: real_quant(persona, n_tokens=8))
    real_prepare = bench.bench_prepare
    monkeypatch.setattr(bench, "bench_prepare", lambda: real_prepare(2000))
    from sim.bench.run import (
        link as link_bench,  # the protocol rows fly 400 musings six times: a few do here (tests/test_link_bench.py)
    )

    real_protocol = link_bench.protocol_rows
    monkeypatch.setattr(link_bench, "protocol_rows", lambda: real_protocol(musings=12, drain_windows=4))
    real_families = bench.bench_families  # one family here; tests/test_pi_families.py checks them all
    monkeypatch.setattr(bench, "bench_families", lambda: real_families(["qwen3"]))
    from sim.bench.measure import aggregator_flood  # 100,500 junk frames: `make bench`'s; tests/test_network_flood.py

    real_aggregator = aggregator_flood.rows
    monkeypatch.setattr(aggregator_flood, "rows", lambda: real_aggregator(junk=2000))
    monkeypatch.setattr(aggregator_flood, "storage_rows", lambda: [])  # a real mosquitto: tests/test_network_flood.py
    from sim.bench.measure import listen_flood  # 400,000 datagrams: `make bench`'s; tests/test_frame_quota.py checks the rows

    real_listen = listen_flood.rows
    monkeypatch.setattr(listen_flood, "rows", lambda: real_listen(datagrams=2000, source_mb=0.05, total_mb=0.2))
    from sim.bench.measure import (
        dashboard as dashboard_bench,  # 2,000 idle connections for 20 s: `make bench`'s; tests/test_dashboard_limits.py
    )

    real_dashboard = dashboard_bench.rows
    monkeypatch.setattr(dashboard_bench, "rows", lambda: real_dashboard(idle=60, streams=12, maps=2, seconds=2))
    # The rest, each at a size that shows its row (its figures are `make bench`'s, and their own tests'):
    real_lora = bench.bench_lora  # no prepared data: the row says what to run, on any checkout
    monkeypatch.setattr(bench, "bench_lora", lambda: real_lora(tmp_path / "no-data"))
    real_idle, real_wall = bench.bench_daemon_idle_cpu, bench.bench_flight_wall
    monkeypatch.setattr(bench, "bench_daemon_idle_cpu", lambda: real_idle(window_s=2, settle_s=1))
    monkeypatch.setattr(bench, "bench_flight_wall", lambda persona: real_wall(persona, minutes=20))
    from host_training.quantize import quantizer
    from sim.bench.measure import crowds, lockout, memory, prediction, relays, ssdv_flood

    real_memory, real_ssdv, real_lockout, real_crowds = memory.rows, ssdv_flood.rows, lockout.rows, crowds.rows
    monkeypatch.setattr(memory, "rows", lambda persona: real_memory(persona, minutes=1))
    monkeypatch.setattr(quantizer, "LISTED_QUANTS", ("F16", "Q4_K_M"))
    monkeypatch.setattr(prediction, "SEEDS", range(10_000, 10_004))
    monkeypatch.setattr(ssdv_flood, "rows", lambda: real_ssdv(seconds=4))
    monkeypatch.setattr(lockout, "rows", lambda: real_lockout(tries=3))
    monkeypatch.setattr(crowds, "rows", lambda: real_crowds(tries=3))
    real_network = relays.fly_network
    monkeypatch.setattr(relays, "fly_network", lambda out, persona, relay: real_network(out, persona, relay, minutes=12))
    assert bench.main(["--persona", str(tmp_path / "none")]) == 0
    out = capsys.readouterr().out
    assert "airtime: 80 B at SF11" in out and "store: durable enqueue" in out
    assert "make persona" in out and "LoRA training: (no SmolLM2 base or build/data here" in out
    assert "quant: Q4_K_M" in out and "landing prediction: time per prediction" in out
    assert "operator answer time under lockout" in out and "network: far balloon's positions" in out
    assert "ingest: Telegram export" in out and "prepare: 2,000-message" in out
    assert "aggregator under a flood: honest flight stored" in out
    assert "listen under a UDP flood: database after" in out
    assert "dashboard under load: watcher's page p99" in out
    assert "family qwen3: Qwen3ForCausalLM -> F32 GGUF" in out and "family qwen3: F32 GGUF vs transformers" in out
