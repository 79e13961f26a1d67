"""Musings as UKHAS text sentences: read by a stock LoRa gateway's rules, by horusdemodlib, by
SondeHub's JSON as the gateway builds it, and back into the musing by our ground."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import pytest
from horusdemodlib.decoder import parse_ukhas_string

from groundstation.db import Store
from groundstation.decoder import FrameDecoder
from groundstation.exports.sondehub import musing_comment, sondehub_object
from groundstation.exports.station import Station
from groundstation.heard import Heard
from groundstation.reading import GroundReader
from payload.config import PayloadConfig
from payload.daemon import Daemon
from payload.persona.worker import Generation
from stratoecho import wire
from stratoecho.bundle import load_bundle
from stratoecho.wire.musing_sentence import GATEWAY_MAX_LINE, fold_text
from tests.fakes import AUTH
from tests.test_gateway_rules import gateway_reads
from tests.test_payload import _daemon

WHEN = datetime(2026, 6, 20, 12, 4, 13, tzinfo=timezone.utc)
LONG = ("Le ciel est noir au-dessus de moi, et la Terre — si bleue — s’éloigne… Ünter mir: 12 000 m "
        "of \"nothing\", a $5 balloon * 3 and a back\\slash; <b>bold</b> & 北京. ") * 3


def sentences(text: str = LONG, **kw) -> list[bytes]:
    args = dict(callsign="STRATO1", counter=57, when=WHEN, lat=52.1, lon=-0.1, alt=12345.4, boot=3, seq=17, text=text)
    return wire.encode_musing_sentences(**(args | kw))


def gateway_sondehub_json(line: str) -> dict:
    """The upload the gateway builds: its values pasted into a JSON template, the line as `raw`,
    unescaped (sondehub.c); it must still be JSON."""
    r = gateway_reads(line)
    return json.loads(f'[{{"payload_callsign": "{r["callsign"]}", "datetime": "{r["time"]}", "lat": {r["lat"]}, '
                      f'"lon": {r["lon"]}, "alt": {r["alt"]}, "raw": "{line.strip()}"}}]')[0]


def test_a_long_musing_goes_as_parts_every_gateway_takes():
    lines = sentences()
    assert len(lines) == 4
    for i, raw in enumerate(lines, 1):
        assert len(raw) <= GATEWAY_MAX_LINE < 200 and raw.endswith(b"\n")
        line = raw.decode("ascii")
        assert not set(line[2:line.rindex("*")]) & set('"\\*$'), line
        assert line.count(",") == 7, "the text must not add fields"
        r = gateway_reads(line)
        assert (r["callsign"], r["seq"], r["lat"], r["lon"], r["alt"]) == ("STRATO1", 57, 52.1, -0.1, 12345)
        assert r["time"] == f"12:04:{12 + i}"  # each part its own second: SondeHub merges equal times
        assert gateway_sondehub_json(line)["raw"] == line.strip()
        assert f"musing 3.17 {i}/4," in line
        # horusdemodlib reads it as the position sentence it starts with
        h = parse_ukhas_string(line.strip())
        assert (h["callsign"], h["latitude"], h["altitude"]) == ("STRATO1", 52.1, 12345)


def test_the_parts_come_back_as_the_folded_musing_in_any_order():
    lines = sentences()
    d = FrameDecoder(auth=AUTH)
    assert all(d.feed(lines[i], WHEN).record is None for i in (3, 0, 2))
    got = d.feed(lines[1], WHEN).record
    assert got == wire.Record(wire.Kind.MUSING, 3, 17, int(WHEN.timestamp()), fold_text(LONG))
    assert d.musing_sentences == 4 and d.records["musing_sentence"] == 1
    assert d.feed(lines[1], WHEN).record is None  # heard again: nothing new


def test_folding_keeps_the_words_and_drops_what_gateways_cannot_carry():
    assert fold_text("s’éloigne… — “Ünter” straße, 北京 ok\n") == "s'eloigne... - 'Unter' strasse; ok"
    with pytest.raises(wire.WireError, match="no characters"):
        sentences(text="北京 …"[:2])


def test_the_exact_record_replaces_the_folded_text_and_wins_over_later_parts(tmp_path):
    lines = sentences()
    d, store = FrameDecoder(auth=AUTH), Store(tmp_path / "g.db")
    folded = [d.feed(line, WHEN).record for line in lines][-1]
    assert store.add(folded, authentic=False)  # open text sentences, as listen stores them
    record = wire.Record(wire.Kind.MUSING, 3, 17, int(WHEN.timestamp()) - 20, LONG)
    whole = [d.feed(f).record for f in wire.fragment_record(record, auth=AUTH)][-1]
    assert whole == record
    assert store.add(whole, authentic=True) and not store.add(whole, authentic=True)
    assert not store.add(folded, authentic=False)
    store.commit()
    with GroundReader.open(tmp_path / "g.db") as ground:
        assert [r.text for r in ground.records("musing")] == [LONG]
    # The other way round: the record first, its sentences afterwards add nothing.
    d2 = FrameDecoder(auth=AUTH)
    assert [d2.feed(f).record for f in wire.fragment_record(record, auth=AUTH)][-1] == record
    assert all(d2.feed(line, WHEN).record is None for line in lines)


def test_malformed_musing_sentences_are_counted_not_crashing():
    good = sentences(text="short and sweet")[0]
    bad_crc = good.replace(b"sweet", b"sweat")
    bad_tag = re.sub(rb"musing 3\.17 1/1", b"musing x.17 1/1", good)
    d = FrameDecoder(auth=AUTH)
    for frame in (bad_crc, bad_tag):
        assert d.feed(frame, WHEN).error is not None
    assert sum(d.errors.values()) == 2


def test_sondehub_comment_is_the_last_musing_without_html():
    record = wire.Record(wire.Kind.MUSING, 3, 17, 0, LONG)
    comment = musing_comment(record)
    assert comment.startswith("musing 3.17: ") and not set(comment) & set("<>&") and comment.isascii()
    t = wire.Telemetry("STRATO1", 5, "12:04:13", 52.1, -0.1, 12000, 7, float("nan"), float("nan"), 0, 3)
    obj = sondehub_object(Heard(t, WHEN.isoformat()), Station("M0ABC"), comment=comment)
    assert obj["comment"] == comment


def test_the_payload_sends_its_musing_as_sentences_too_when_asked(tmp_path, tiny_bundle):
    d: Daemon = _daemon(tmp_path, load_bundle(tiny_bundle))
    d.cfg.persona.sentences = True
    d.beacon_once()
    d.worker.generate = lambda prompt, max_tokens, seed=None: Generation("The air is thin, and I am “calm”.", 5, 0.01)
    assert d.think_once()
    tx = d.transmitter
    # A musing sentence waits until its stamp is in the past: the clock runs on meanwhile.
    while tx.send_one() or (tx.deferred_s is not None and not tx.clock.wait(tx.deferred_s, tx.stop)):
        pass
    lines = [f for f in d.radio.frames if wire.is_musing_sentence(f)]
    assert len(lines) == 1 and d.musings.stats.musing_sentences_queued == 1
    s = wire.decode_frame(lines[0], AUTH)
    assert s.text == "The air is thin; and I am 'calm'." and (s.boot, s.part, s.parts) == (d.boot, 1, 1)
    beacon = next(wire.decode_frame(f, AUTH) for f in d.radio.frames if f.startswith(b"$$") and f not in lines)
    assert s.counter == beacon.seq and s.time != beacon.time  # never the position's second
    assert (s.lat, s.lon, s.alt) == (beacon.lat, beacon.lon, beacon.alt)  # the position it names


def test_the_config_refuses_musing_sentences_a_small_frame_cannot_carry():
    with pytest.raises(ValueError, match=r"\[persona\] sentences.*mtu 64"):
        PayloadConfig.model_validate({"persona": {"sentences": True}, "radio": {"mtu": 64}})
    assert PayloadConfig.model_validate({"persona": {"sentences": True}}).persona.sentences
