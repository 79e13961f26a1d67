"""The frames table's byte quotas (issue 41): a flood of junk, at any rate and from any address,
cannot fill a receiver's disk, and the balloon's own tagged frames are stored whatever the flood.
The bookkeeping alone (groundstation/frame_quota.py, the clock passed in), the Store that
consults it, and a real `python -m groundstation listen --udp` process flooded past its quota."""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from contextlib import closing

import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from groundstation.__main__ import main
from groundstation.config import DatabaseSection
from groundstation.frame_quota import (
    MAX_SOURCES,
    OTHER_SOURCES,
    FrameBudget,
    FrameQuota,
    bytes_by_sql,
    row_bytes,
    source_key,
)
from groundstation.store import Store
from sim.bench.measure.listen_flood import PER_PORT, SENDERS, ListenProcess, flood
from sim.bench.run.flood import db_bytes
from stratoecho import wire
from stratoecho.wire.relay import HEAD_BYTES
from tests.fakes import AUTH

AT = "2026-05-01T10:00:00.000+00:00"
JUNK = b"\x00" * 200  # an error: no frame starts with 0x00
OURS = bytes([wire.MAGIC]) + b"\x01" * 99  # tagged; with error None the decoder vouched for its tag


def row(data: bytes, origin: str, error: str | None = "unknown first byte") -> int:
    return row_bytes(len(data), origin, error, AT, None)


def test_a_source_is_its_address_without_what_a_sender_picks_freely():
    assert source_key("udp 192.0.2.7:40001") == "udp 192.0.2.7"
    assert source_key("udp 2001:db8::1:5000") == source_key("udp 2001:db8::ffff:9") == "udp 2001:db8::/64"
    assert source_key("udp ::ffff:192.0.2.7:9") == "udp ::ffff:192.0.2.7"  # an IPv4 sender, one address
    assert source_key("udp fe80::1%eth0:9") == "udp fe80::/64"  # a link-local sender, with its interface
    assert source_key("replay air.hex:12") == "replay air.hex"
    for origin in ("serial /dev/ttyUSB0", "gateway 127.0.0.1:6004 ch1", "kiss loop://", "mqtt"):
        assert source_key(origin) == origin


def test_a_row_costs_its_share_of_a_page():
    assert row_bytes(255, "udp 192.0.2.7:40001", AT) == 4096 // 6  # six rows of 255-byte frames to a page
    assert row_bytes(1000, "x" * 100) == 4096  # one to a page
    assert row_bytes(5000) == 10_036  # past a page: its cell


def test_past_its_source_share_and_past_the_total_junk_is_counted_not_stored():
    n = row(JUNK, "udp 10.0.0.1:1")
    budget = FrameBudget(FrameQuota(source_bytes=3 * n, total_bytes=5 * n))
    assert [budget.admit(JUNK, f"udp 10.0.0.1:{port}", "unknown first byte", AT, None)
            for port in range(5)] == [True, True, True, False, False]  # another port is the same sender
    assert [budget.admit(JUNK, "udp 10.0.0.2:1", "unknown first byte", AT, None) for _ in range(3)] == [True, True, False]
    assert budget.over_quota == {"udp 10.0.0.1": 2, "udp 10.0.0.2": 1}
    assert budget.bytes.used == {"udp 10.0.0.1": 3 * n, "udp 10.0.0.2": 2 * n} and budget.bytes.total_used == 5 * n
    # Open frames that decoded count as well: anyone can send a sentence.
    assert not budget.admit(b"$$X,1*00\n", "udp 10.0.0.3:1", None, AT, None)


def test_the_balloons_own_frames_are_stored_past_the_quota_but_a_replay_of_them_is_not():
    n = row(OURS, "serial /dev/ttyUSB0", None)
    budget = FrameBudget(FrameQuota(source_bytes=2 * n, total_bytes=2 * n))
    assert budget.admit(OURS, "serial /dev/ttyUSB0", None, AT, None, vouched=OURS)
    assert budget.admit(OURS, "serial /dev/ttyUSB0", None, AT, None, vouched=OURS)  # under the quota a repeat is a reception
    assert not budget.admit(JUNK, "serial /dev/ttyUSB0", "unknown first byte", AT, None)
    other = bytes([wire.CONTROL_MAGIC]) + b"\x02" * 40
    inner = bytes([wire.MAGIC]) + b"\x03" * 40
    relayed = bytes([wire.RELAY_MAGIC]) + b"\x00" * (HEAD_BYTES - 1) + inner
    assert budget.admit(other, "udp 10.0.0.9:1", None, AT, None, vouched=other)  # new: stored past the quota
    assert budget.admit(relayed, "udp 10.0.0.9:1", None, AT, None, vouched=inner)  # ours in another balloon's envelope
    assert not budget.admit(OURS, "udp 10.0.0.9:2", None, AT, None, vouched=OURS)  # played back: no news
    assert not budget.admit(OURS + b"x", "udp 10.0.0.9:2", "bad tag", AT, None)  # its tag failed: junk
    assert budget.over_quota == {"serial /dev/ttyUSB0": 1, "udp 10.0.0.9": 2}
    assert budget.bytes.total_used > 2 * n  # what is stored past the quota is counted: junk stays out


def test_what_the_database_holds_counts_and_sources_past_the_limit_share_one():
    budget = FrameBudget(FrameQuota(source_bytes=1000, total_bytes=10**9),
                         stored={"udp 10.0.0.1:1": 600, "udp 10.0.0.1:2": 300, "serial /dev/ttyS0": 50})
    assert budget.bytes.used == {"udp 10.0.0.1": 900, "serial /dev/ttyS0": 50}
    assert not budget.admit(JUNK, "udp 10.0.0.1:3", "unknown first byte")  # 900 + a row > 1000
    many = FrameBudget(FrameQuota(source_bytes=10**6, total_bytes=10**9))
    for i in range(MAX_SOURCES + 50):
        many.admit(JUNK, f"udp 10.{i // 256}.{i % 256}.1:1", "unknown first byte")
    assert len(many.bytes.used) == MAX_SOURCES  # MAX_SOURCES - 1 told apart, and the rest together
    assert many.bytes.used[OTHER_SOURCES] == 51 * row(JUNK, "udp 10.4.49.1:1")
    assert many.key("udp 10.200.0.1:1") == OTHER_SOURCES and many.key("udp 10.0.0.1:7") == "udp 10.0.0.1"


def test_a_warning_a_minute_per_source_with_the_count():
    budget = FrameBudget(FrameQuota(source_bytes=0, total_bytes=0))
    assert budget.warning_due("udp 10.0.0.1:1", 100.0) == 1
    assert [budget.warning_due(f"udp 10.0.0.1:{p}", t) for p, t in ((2, 101.0), (3, 159.0))] == [None, None]
    assert budget.warning_due("udp 10.0.0.2:1", 101.0) == 1  # its own minute
    assert budget.warning_due("udp 10.0.0.1:4", 160.0) == 3


def test_the_quota_settings_refuse_nonsense():
    assert DatabaseSection(source_quota_mb=1.5, quota_total_mb=4).frame_quota() == FrameQuota(1_500_000, 4_000_000)
    assert DatabaseSection().frame_quota() == FrameQuota()
    for bad, message in (((-1, 4), "source_quota_mb\n.*greater than or equal to 0"),
                         ((float("nan"), 4), "source_quota_mb"),
                         ((5, 4), r"quota_total_mb 4 \(--quota-total-mb\) is below source_quota_mb 5")):
        with pytest.raises(ValidationError, match=message):
            DatabaseSection(source_quota_mb=bad[0], quota_total_mb=bad[1])
    with pytest.raises(ValueError):
        FrameQuota(source_bytes=10, total_bytes=9)


def test_listen_refuses_a_total_below_a_source(tmp_path, capsys):
    assert main(["listen", "--udp", "127.0.0.1:0", "--db", str(tmp_path / "g.db"), "--source-quota-mb", "2",
                 "--quota-total-mb", "1"]) == 2
    assert "error: quota_total_mb 1 (--quota-total-mb) is below source_quota_mb 2 (--source-quota-mb)" in \
        capsys.readouterr().err


# --------------------------------------------------------------------------- the Store


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_the_store_keeps_junk_within_the_quota_counts_again_on_opening_and_warns_once_a_minute(tmp_path):
    db, clock = tmp_path / "g.db", Clock()
    n = row(JUNK, "udp 10.0.0.1:1")
    quota = FrameQuota(source_bytes=4 * n, total_bytes=6 * n)
    with capture_logs() as logs, Store(db, frame_quota=quota, clock=clock) as store:
        ids = [store.frames.add(JUNK, f"udp 10.0.0.1:{p}", "unknown first byte", AT) for p in range(10)]
        clock.t = 30.0
        ids += [store.frames.add(JUNK, "udp 10.0.0.1:99", "unknown first byte", AT)]
        clock.t = 61.0
        ids += [store.frames.add(JUNK, "udp 10.0.0.1:99", "unknown first byte", AT)]
        assert store.frames.add(OURS, "udp 10.0.0.1:5", None, AT, vouched=OURS) > 0  # the balloon's, always
        assert store.frames.not_stored == {"udp 10.0.0.1": 8}
    assert [i > 0 for i in ids] == [True] * 4 + [False] * 8
    warnings = [e for e in logs if e["event"] == "frames past the storage quota not stored"]
    assert [(w["source"], w["since_last_warning"], w["total"]) for w in warnings] == [
        ("udp 10.0.0.1", 1, 1), ("udp 10.0.0.1", 7, 8)]
    with Store(db, frame_quota=quota, clock=clock) as again:  # a restart: what is there counts
        assert again.frames.add(JUNK, "udp 10.0.0.2:1", "unknown first byte", AT) > 0  # the total has room for one
        assert again.frames.add(JUNK, "udp 10.0.0.3:1", "unknown first byte", AT) == 0
        used = again.frames._budget.bytes
        assert used.used == {"udp 10.0.0.1": 4 * n + row(OURS, "udp 10.0.0.1:5", None), "udp 10.0.0.2": n}
    with closing(sqlite3.connect(db)) as c:
        assert c.execute("SELECT count(*) FROM frames").fetchone()[0] == 6
        assert sum(dict(c.execute(bytes_by_sql("source"))).values()) == used.total_used


def test_a_store_that_stores_no_frame_never_counts_and_none_means_no_quota(tmp_path):
    with Store(tmp_path / "g.db", frame_quota=FrameQuota(0, 0)) as store:
        store.outbox.queue(1, b"", "a command")
        assert store.frames._budget is None and store.frames.not_stored == {}
    with Store(tmp_path / "g.db", frame_quota=None) as store:
        assert all(store.frames.add(JUNK, "udp 10.0.0.1:1", "unknown first byte") for _ in range(3))


def test_the_count_is_the_files_own(tmp_path):
    """What the quota counts is what the file takes, within its interior pages: a database of
    junk rows of every length takes at most 2 % (and the schema's pages) more than its count, and
    not much less (short rows are counted a little full)."""
    db = tmp_path / "g.db"
    with Store(db, frame_quota=None) as store:
        for i in range(6000):
            store.frames.add(bytes([i % 256]) * (1 + i % 255), f"udp 10.0.{i % 7}.1:{i}", "unknown first byte",
                            station="hill" if i % 2 else None, rssi_dbm=-100.0 if i % 3 else None)
    with closing(sqlite3.connect(db)) as c:
        counted = sum(dict(c.execute(bytes_by_sql("source"))).values())
    assert 0.8 * counted <= os.path.getsize(db) <= 1.02 * counted + 64 * 1024  # never more than counted


# --------------------------------------------------------------------------- a real listen, flooded

MARGIN = 0.02  # of the cap: the table's interior pages (measured ~1 %), and the schema's 64 KB
MUSING = wire.Record(wire.Kind.MUSING, 9, 3, 1714565055, "Sent after the flood, and heard all the same. " * 3)


def test_listen_flooded_past_its_quota_keeps_the_cap_and_still_stores_the_balloons_frames(tmp_path, flight_key):
    db, cap = tmp_path / "g.db", FrameQuota(source_bytes=100_000, total_bytes=300_000)
    listen = ListenProcess(db, "--flight-key", str(flight_key), "--source-quota-mb", "0.1", "--quota-total-mb", "0.3")
    started = time.monotonic()
    try:
        # Rounds of junk from SENDERS addresses, a new port every PER_PORT, until every address was
        # warned about: the total is full (no address alone could reach its 0.1 MB share by then).
        round_n = 0
        while len({e["source"] for e in listen.events("frames past the storage quota not stored")}) < SENDERS:
            assert time.monotonic() - started < 300, "the quota was never reached"
            flood(listen.address, SENDERS * PER_PORT, seed=round_n)
            round_n += 1
            time.sleep(0.05)  # pacing, so that the socket's buffer is not all the flood meets
        fragments = wire.fragment_record(MUSING, mtu=64, auth=AUTH)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            tx.bind(("127.0.0.1", 0))  # a sender whose share and the total are full
            origin = f"udp 127.0.0.1:{tx.getsockname()[1]}"
            while not musing_stored(db):
                assert time.monotonic() - started < 300, "the balloon's musing was never stored"
                for f in fragments:
                    tx.sendto(f, listen.address)
                time.sleep(0.2)  # a datagram the flood's backlog lost is sent again
    finally:
        status, err = listen.stop()
    assert status == 0, err[-3000:]
    assert "storage quota:" in err and "frames past it not stored" in err
    with closing(sqlite3.connect(db)) as c:
        stored = [bytes.fromhex(h) for (h,) in c.execute("SELECT hex FROM frames WHERE ok = 1")]
        counted = sum(dict(c.execute(bytes_by_sql("source"))).values())
    # The balloon's frames, each kept once: past the quota, the same frame again is a repeat.
    assert sorted(stored) == sorted(fragments)
    ours = sum(row_bytes(len(f), origin, AT) for f in fragments)
    assert counted <= cap.total_bytes + ours
    assert db_bytes(db) <= (1 + MARGIN) * (cap.total_bytes + ours) + 64 * 1024
    minutes = (time.monotonic() - started) / 60
    for source in {e["source"] for e in listen.events("frames past the storage quota not stored")}:
        warned = [e for e in listen.events("frames past the storage quota not stored") if e["source"] == source]
        assert len(warned) <= 2 + minutes  # once a minute, not once a frame


def musing_stored(db) -> bool:
    with closing(sqlite3.connect(db, timeout=10)) as c:
        return c.execute("SELECT count(*) FROM records WHERE kind = 'musing' AND authentic = 1 AND text = ?",
                         (MUSING.text,)).fetchone()[0] == 1


def test_the_bench_rows():
    """`make bench`'s flood, scaled: the rows it prints, the database within its cap."""
    from sim.bench.measure.listen_flood import rows

    got = {name: (value, note) for name, value, _unit, note in rows(datagrams=3000, source_mb=0.05, total_mb=0.2)}
    value, note = got["listen under a UDP flood: database after"]
    assert float(value) <= 0.2 * (1 + MARGIN) + 0.07 and "cap 0.2 MB in all (0.05 a source)" in note
    assert "of 3,000 of 255 B sent from 16 addresses" in got["listen under a UDP flood: datagrams"][1]


def test_valid_sentences_past_the_quota_fill_no_other_table(tmp_path):
    """A flood of well-formed sentences under ever new numbers: each decodes, so before, each
    position was stored even when its frame was kept out. Now the position stays out with it,
    and a tagged musing after the flood still lands."""
    import threading

    from groundstation.link.decoder import FrameDecoder
    from groundstation.link.listen import run_listen
    from groundstation.sources import ReplaySource
    from stratoecho import wire
    from tests.fakes import AUTH

    def sentence(seq: int) -> bytes:
        return wire.encode_sentence(wire.Telemetry("FORGED", seq, "10:04:11", 52.2, 0.1, 1000, 9, 5.0, 900.0, 3900, 7))

    air = tmp_path / "air.hex"
    musing = wire.fragment_record(wire.Record(wire.Kind.MUSING, 1, 1, 1_767_225_600, "still here"), auth=AUTH)
    air.write_text("".join(f.hex() + "\n" for f in [*(sentence(i) for i in range(200)), *musing]))
    quota = FrameQuota(source_bytes=10 * row(sentence(0), "replay x"), total_bytes=20 * row(sentence(0), "replay x"))
    with Store(tmp_path / "g.db", frame_quota=quota) as store:
        run_listen(ReplaySource(str(air)), store, FrameDecoder(auth=AUTH), threading.Event(), None)
    with closing(sqlite3.connect(tmp_path / "g.db")) as c:
        positions = c.execute("SELECT count(*) FROM telemetry").fetchone()[0]
        frames = c.execute("SELECT count(*) FROM frames WHERE hex LIKE '2424%'").fetchone()[0]
        texts = [r[0] for r in c.execute("SELECT text FROM records")]
    assert positions == frames and 5 <= frames <= 12  # as many as the quota let in, then none
    assert texts == ["still here"]
