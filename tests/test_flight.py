"""The thin path end to end: the sample corpus through `prepare` and `build` (conftest's
`corpus_bundle`), then a short bench flight with payload, lossy channel and ground station
as separate processes over loopback UDP."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sim.__main__ import main as sim_main
from sim.bench.report.musing_report import logged_musings
from tests.fakes import flight_auth
from tests.test_dashboard import browser, browser_only, musing_texts, wait  # noqa: F401 - browser is a fixture

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def flight(corpus_bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("flight")
    rc = sim_main(["fly", "--out", str(out), "--persona", str(corpus_bundle), "--minutes", "25",
                   "--speedup", "150", "--loss", "0.25:burst=3", "--seed", "4", "--quiet"])
    assert rc == 0, (out / "payload.log").read_text()[-3000:]
    return out


def test_report_has_the_contracted_figures(flight):
    report = json.loads((flight / "report.json").read_text())
    m, t, f = report["musings"], report["telemetry"], report["frames"]
    assert m["generated"] >= 5 and 0 < m["delivered"] <= m["generated"]
    assert t["sent"] >= 140 and 0 < t["received"] < t["sent"]  # 25 min at 10 s, 25 % lost
    assert f["received"] < f["sent"] == f["on_air"]
    assert f["sent"] - f["received"] == f["dropped_by_channel"]
    assert 0.1 < 1 - t["received"] / t["sent"] < 0.45
    assert report["airtime_s"] > 0 and report["energy_wh"] > 0
    assert report["max_alt_m"] > 5000


def test_the_report_measures_every_musing_made_and_shows_the_first_as_they_came(flight, capsys):
    report = json.loads((flight / "report.json").read_text())
    m = report["musings"]
    q, first = m["quality"], m["first"]
    assert q["measured"] + q["withheld_by_guard"] == m["generated"] >= 5  # every musing made, from payload.log
    assert q["grounded"]["of"] == q["degenerate"]["of"] == q["measured"]
    assert 0 <= q["grounded"]["count"] <= q["measured"] and q["distinct"]["words"] > 0
    assert len(first) == 5 and [e["t_s"] for e in first] == sorted(e["t_s"] for e in first)
    assert all(e["facts"]["phase"] in ("pre-launch", "ascent") and e["facts"]["alt_m"] < 15_000 for e in first)
    heard = {(boot, seq): text for boot, seq, text in musing_rows(flight / "ground.db")}
    # The first five may all be versions of one musing made again (a figure owed): what aired is
    # found among every musing the payload logged, and reads at the ground exactly as it came.
    aired = [m for m in logged_musings(flight / "payload.log") if (m.boot, m.seq) in heard]
    assert aired and all(heard[m.boot, m.seq] == m.musing.text for m in aired)
    assert all(heard[e["boot"], e["seq"]] == e["text"] for e in first if (e["boot"], e["seq"]) in heard)
    # `sim report` measures the folder afresh: the same figures, in JSON and in words.
    assert sim_main(["report", str(flight), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["musings"] == m
    assert sim_main(["report", str(flight)]) == 0
    words = capsys.readouterr().out
    assert f"{q['measured']} musings measured" in words and "first 5 musings, as they came:" in words


def test_air_hex_is_what_ground_decode_reads(flight):
    air = (flight / "air.hex").read_text().split()
    report = json.loads((flight / "report.json").read_text())
    assert len(air) == report["frames"]["sent"]
    proc = subprocess.run([sys.executable, "-m", "groundstation", "decode", str(flight / "air.hex"),
                           "--flight-key", str(flight / "uplink.key")],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    kinds = {r["kind"] for r in records}
    assert {"telemetry", "musing", "event"} <= kinds
    # Everything on the air decodes: the loss happened after air.hex, in the channel.
    assert sum(r["kind"] == "telemetry" for r in records) == report["telemetry"]["sent"]
    assert sum(r["kind"] == "musing" for r in records) == report["musings"]["sent"]


def test_ground_database_holds_the_musings(flight):
    import sqlite3

    con = sqlite3.connect(flight / "ground.db")
    texts = [r[0] for r in con.execute("SELECT text FROM records WHERE kind = 'musing'")]
    assert texts and all(isinstance(t, str) and t for t in texts)
    assert (flight / "musings.txt").read_text().count("\n") == len(texts)


def test_no_planted_private_data_in_prepare_outputs_or_on_the_air(flight, corpus_data_dir):
    planted = json.loads((ROOT / "samples/corpus/planted_pii.json").read_text())
    for f in corpus_data_dir.iterdir():
        text = f.read_text(encoding="utf-8")
        for kind, values in planted.items():
            for v in values:
                assert v not in text, f"planted {kind} {v!r} survived prepare into {f.name}"
    # Raw bytes, and the rebuilt records (a value could straddle two fragments).
    from stratoecho import wire

    frames = [bytes.fromhex(h) for h in (flight / "air.hex").read_text().split()]
    ra = wire.Reassembler()
    auth = flight_auth(flight)
    texts = [r.text for f in frames if isinstance(d := wire.decode_frame(f, auth), wire.Fragment) and (r := ra.add(d))]
    air_text = b"".join(frames).decode("utf-8", errors="replace") + "\n".join(texts)
    assert texts
    for kind, values in planted.items():
        for v in values:
            assert v not in air_text, f"planted {kind} {v!r} went on the air"


def test_fly_refuses_to_overwrite_a_previous_flight(flight, capsys):
    assert sim_main(["fly", "--out", str(flight), "--no-persona", "--minutes", "1"]) == 1
    assert "--overwrite" in capsys.readouterr().err


@pytest.fixture(scope="module")
def replayed(flight, tmp_path_factory) -> Path:
    """The flight's air.hex replayed into a fresh ground database."""
    from groundstation.__main__ import main as ground_main

    replay = tmp_path_factory.mktemp("replay") / "replay.db"
    assert ground_main(["listen", "--replay", str(flight / "air.hex"), "--db", str(replay), "--quiet",
                        "--flight-key", str(flight / "uplink.key")]) == 0
    return replay


def musing_rows(db: Path) -> set[tuple]:
    import sqlite3

    con = sqlite3.connect(db)
    try:
        return set(con.execute("SELECT boot, seq, text FROM records WHERE kind = 'musing'"))
    finally:
        con.close()


def test_replaying_the_flight_rebuilds_every_musing_the_payload_delivered(flight, replayed):
    delivered, rebuilt = musing_rows(flight / "ground.db"), musing_rows(replayed)
    assert delivered and delivered <= rebuilt  # the air held everything the live ground got, and more


@browser_only
def test_the_dashboard_shows_every_musing_of_the_replayed_flight(replayed, browser):  # noqa: F811 - the fixture
    import threading

    from groundstation.web import serve

    texts = {text for _, _, text in musing_rows(replayed)}
    stop = threading.Event()
    server = serve(replayed, port=0, stop_event=stop)
    try:
        browser.get(server.url)
        wait(browser, lambda d: len(musing_texts(d)) == len(texts), "the musings never all appeared")
        assert {t.strip() for t in musing_texts(browser)} == {t.strip() for t in texts}
    finally:
        stop.set()
