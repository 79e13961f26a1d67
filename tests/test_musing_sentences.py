"""Musings as UKHAS text sentences: read by a stock LoRa gateway's rules, by horusdemodlib, by
SondeHub's JSON as the gateway builds it, and back into the musing by our ground."""

from __future__ import annotations

import dataclasses
import json
import random
import re
from datetime import datetime, timedelta, timezone

import pytest
from horusdemodlib.decoder import parse_ukhas_string

from groundstation.exports.sondehub import musing_comment, sondehub_object
from groundstation.exports.station import Station
from groundstation.link.decoder import FrameDecoder
from groundstation.link.heard import Heard
from groundstation.store import GroundReader, Store
from payload.config import PayloadConfig
from payload.onboard import Onboard
from payload.persona.worker import Generation
from stratoecho import wire
from stratoecho.bundle import load_bundle
from stratoecho.wire.gateway_rules import check_line
from stratoecho.wire.musing_sentence import (
    GATEWAY_MAX_LINE,
    MAX_PARTS,
    MIN_PART,
    MIN_TEXT,
    fold_text,
    musing_text_room,
    parts_needed,
)
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
    assert len(lines) == parts_needed(LONG, musing_text_room("STRATO1", 3, 17)) == 5
    for i, raw in enumerate(lines, 1):
        assert len(raw) <= GATEWAY_MAX_LINE < 200 and raw.endswith(b"\n")
        assert check_line(raw) == []
        line = raw.decode("ascii")
        assert not set(line[2:line.rindex("*")]) & set('"\\*$'), line
        assert line.count(",") == 7, "the text must not add fields"
        r = gateway_reads(line)
        assert (r["callsign"], r["seq"], r["lat"], r["lon"], r["alt"]) == ("STRATO1", 57, 52.1, -0.1, 12345)
        assert r["time"] == f"12:04:{12 + i}"  # each part its own second: SondeHub merges equal times
        assert gateway_sondehub_json(line)["raw"] == line.strip()
        assert f"musing 3.17 {i}/5," in line
        # horusdemodlib reads it as the position sentence it starts with
        h = parse_ukhas_string(line.strip())
        assert (h["callsign"], h["latitude"], h["altitude"]) == ("STRATO1", 52.1, 12345)


def test_the_parts_come_back_as_the_folded_musing_in_any_order():
    lines = sentences()
    d = FrameDecoder(auth=AUTH)
    assert all(d.feed(lines[i], WHEN).record is None for i in (3, 0, 4, 2))
    got = d.feed(lines[1], WHEN).record
    assert got == wire.Record(wire.Kind.MUSING, 3, 17, int(WHEN.timestamp()), fold_text(LONG))
    assert d.musing_sentences == 5 and d.records["musing_sentence"] == 1
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
        assert [r.text for r in ground.records.of("musing")] == [LONG]
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
    d: Onboard = _daemon(tmp_path, load_bundle(tiny_bundle))
    d.cfg.persona.sentences = True
    d.daemon.run_once("beacon")
    d.parts.worker.generate = lambda prompt, max_tokens, seed=None: Generation("The air is thin, and I am “calm”.", 5, 0.01)
    assert d.daemon.run_once("think")
    tx = d.parts.transmitter
    # A musing sentence waits until its stamp is in the past: the clock runs on meanwhile.
    while tx.send_one() or (tx.deferred_s is not None and not tx.clock.wait(tx.deferred_s, tx.stop)):
        pass
    lines = [f for f in d.parts.radio.frames if wire.is_musing_sentence(f)]
    assert len(lines) == 1 and d.parts.musings.counts.musing_sentences_queued == 1
    s = wire.decode_frame(lines[0], AUTH)
    assert s.text == "The air is thin; and I am 'calm'." and (s.boot, s.part, s.parts) == (d.parts.flight.boot, 1, 1)
    beacon = next(wire.decode_frame(f, AUTH) for f in d.parts.radio.frames if f.startswith(b"$$") and f not in lines)
    assert s.counter == beacon.seq and s.time != beacon.time  # never the position's second
    assert (s.lat, s.lon, s.alt) == (beacon.lat, beacon.lon, beacon.alt)  # the position it names


def test_the_config_refuses_musing_sentences_a_small_frame_cannot_carry():
    with pytest.raises(ValueError, match=r"\[persona\] sentences.*mtu 64"):
        PayloadConfig.model_validate({"persona": {"sentences": True}, "radio": {"mtu": 64}})
    assert PayloadConfig.model_validate({"persona": {"sentences": True}}).persona.sentences


# --------------------------------------------------------------------------- how a musing is cut
ROOM = musing_text_room("STRATO1", 3, 17)  # 99: a 199-byte line with room for any position, a made time and a tag


def texts(line: bytes | list[bytes]) -> list[str]:
    lines = line if isinstance(line, list) else [line]
    for raw in lines:
        assert check_line(raw) == [], raw  # every line passes the gateway's rules
    return [wire.decode_musing_sentence(raw).text for raw in lines]


def greedy(text: str, room: int) -> list[str]:
    """The old cut: each part filled to `room`, the rest to the next (words no longer than `room`)."""
    chunks: list[str] = []
    for word in text.split(" "):
        if chunks and len(chunks[-1]) + 1 + len(word) <= room:
            chunks[-1] += " " + word
        else:
            chunks.append(word)
    return chunks


def random_text(rng: random.Random, length: int, longest_word: int = 15) -> str:
    words, size = [], -1
    while size < length:
        words.append("".join(rng.choice("abcdefghijklmnopqrstuvwxyz.;:!?'") for _ in range(rng.randint(1, longest_word))))
        size += len(words[-1]) + 1
    return " ".join(words)[:length].strip()


def fewest_longest(text: str, parts: int) -> int:
    """The shortest longest part of any cut of `text` between words into `parts` parts (2 or 3), by trying them all."""
    spaces = [i for i, c in enumerate(text) if c == " "]
    if parts == 2:
        return min(max(i, len(text) - i - 1) for i in spaces)
    return min(max(i, j - i - 1, len(text) - j - 1) for i in spaces for j in spaces if j > i)


def test_the_room_is_what_the_encoder_fills():
    assert ROOM == 99
    assert musing_text_room("STRATO1", 3, 17, max_bytes=255) == ROOM  # never past GATEWAY_MAX_LINE
    assert musing_text_room("STRATO1", 3, 17, max_bytes=150) == ROOM - 49
    assert musing_text_room("STRATO1", 0xFFFF, 2**32 - 1) == ROOM - 12  # a wider tag leaves less
    assert musing_text_room("STRATO1", 3, 17, max_bytes=64) == 0
    for call, boot, seq, max_bytes in (("STRATO1", 3, 17, 199), ("M0ABC-11", 65535, 4294967295, 199),
                                       ("X", 0, 0, 131), ("STRATO1", 3, 17, 123)):
        room = musing_text_room(call, boot, seq, max_bytes)
        assert room >= MIN_TEXT
        fits = ("a" * 9 + " ") * (room // 10) + "b" * (room % 10)
        assert len(fits) == room and parts_needed(fits, room) == 1
        assert len(sentences(text=fits, callsign=call, boot=boot, seq=seq, max_bytes=max_bytes)) == 1
        lines = sentences(text=fits + " c", callsign=call, boot=boot, seq=seq, max_bytes=max_bytes)
        assert len(lines) == parts_needed(fits + " c", room) == 2
        assert max(map(len, texts(lines))) <= room and all(len(raw) <= max_bytes for raw in lines)
    smallest = GATEWAY_MAX_LINE - ROOM + MIN_TEXT  # the smallest line with MIN_TEXT characters of room
    assert musing_text_room("STRATO1", 3, 17, smallest) == MIN_TEXT and len(sentences(text="hi", max_bytes=smallest)) == 1
    with pytest.raises(wire.WireError, match="at least are needed"):
        sentences(text="hello", max_bytes=smallest - 1)
    with pytest.raises(wire.WireError, match="field list"):
        musing_text_room("0123456", 3, 17)


def test_parts_needed_folds_and_counts_the_fewest_parts():
    assert parts_needed("", ROOM) == 0 and parts_needed("北京", ROOM) == 0
    assert parts_needed("word " * 20, ROOM) == 1  # 99 characters once folded: the last space goes
    assert parts_needed("word " * 21, ROOM) == 2
    assert parts_needed("a, b", 4) == 1  # "a; b"
    assert parts_needed("x" * 221, ROOM) == 3  # a word longer than a part is cut inside
    assert fold_text(fold_text(LONG)) == fold_text(LONG)  # so folding the text again changes nothing


def test_a_musing_a_little_too_long_for_one_part_goes_as_two_even_ones():
    text = ("The sky is black above me and the Earth is a blue curve below; "
            "I count minutes of light left to them")
    assert len(text) == 100 and greedy(text, ROOM)[-1] == "them"  # the old cut: 95 characters and a stray word
    lines = sentences(text=text)
    parts = texts(lines)
    assert len(parts) == 2 and " ".join(parts) == text
    assert [len(p) for p in parts] == [49, 50]
    assert all(wire.decode_musing_sentence(raw).parts == 2 for raw in lines)


def test_a_120_character_musing_is_two_parts_of_about_60():
    rng = random.Random(120)
    for _ in range(50):
        text = random_text(rng, 120)
        if len(text) <= ROOM:
            continue
        parts = texts(sentences(text=text))
        assert len(parts) == 2 and " ".join(parts) == text
        assert all(45 <= len(p) <= 75 for p in parts), [len(p) for p in parts]
        assert max(map(len, parts)) == fewest_longest(text, 2)


@pytest.mark.parametrize("seed, max_bytes", [(1, 199), (2, 199), (3, 190), (4, 180)])
def test_random_musings_go_as_the_fewest_even_parts_none_under_min_part(seed, max_bytes):
    rng = random.Random(seed)
    room = musing_text_room("STRATO1", 3, 17, max_bytes)
    assert room / 2 - MIN_PART >= 15  # words of 1 to 15 characters: the guarantee holds
    made = datetime(2026, 6, 20, 11, 58, 2, tzinfo=timezone.utc)
    several = 0
    for _ in range(150):
        text = random_text(rng, rng.randint(MIN_PART, 800))
        fewest = len(greedy(text, room))
        assert parts_needed(text, room) == fewest  # the fewest parts: what filling each needs
        if fewest > MAX_PARTS:
            with pytest.raises(wire.WireError, match=r"needs \d+ sentences"):
                sentences(text=text, max_bytes=max_bytes)
            continue
        lines = sentences(text=text, max_bytes=max_bytes, made=made)
        parts = texts(lines)
        assert len(parts) == fewest and " ".join(parts) == text
        assert all(len(raw) <= max_bytes for raw in lines) and max(map(len, parts)) <= room
        if fewest > 1:
            several += 1
            assert min(map(len, parts)) >= MIN_PART, [len(p) for p in parts]
        if fewest in (2, 3):  # the longest part as short as any cut between words makes it
            assert max(map(len, parts)) == fewest_longest(text, fewest)
        # and each still fits when restamped at the farthest position
        far = [wire.restamp(raw, 2**32 - 1, WHEN, -89.99999, -179.99999, 999_999) for raw in lines]
        assert texts(far) == parts and all(len(raw) <= max_bytes for raw in far)
    assert several > 50


def test_a_word_longer_than_a_part_is_cut_inside_evenly():
    text = "see " + "x" * 270 + " ok"
    parts = texts(sentences(text=text))
    assert len(parts) == parts_needed(text, ROOM) == 3
    assert "".join(parts).replace(" ", "") == text.replace(" ", "") and max(map(len, parts)) <= ROOM
    assert min(map(len, parts)) >= MIN_PART


def test_only_a_long_word_where_a_cut_must_fall_leaves_a_part_under_min_part():
    # The one case the encoder's docstring names: no cut into two parts leaves both MIN_PART long.
    text = "x" * 97 + " ok"
    assert len(texts(sentences(text=text))[0]) == 97 and texts(sentences(text=text))[1] == "ok"


def test_a_cut_that_keeps_every_part_min_part_long_wins_over_a_slightly_more_even_one():
    # Long words in a small room (61 characters: a 161-byte line): the most even cut would leave
    # a part of 24 characters; another leaves none under MIN_PART, at the cost of a longer part.
    words = [2, 16, 15, 4, 7, 7, 6, 8, 30, 10, 13]
    text = " ".join(chr(ord("a") + i) * n for i, n in enumerate(words))
    assert musing_text_room("STRATO1", 3, 17, 161) == 61
    parts = texts(sentences(text=text, max_bytes=161))
    assert len(parts) == 3 and " ".join(parts) == text
    assert [len(p) for p in parts] == [35, 36, 55]


# --------------------------------------------------------------------------- the made time
def test_the_made_time_goes_in_the_tag_and_survives_a_restamp():
    made = datetime(2026, 6, 20, 12, 1, 40, tzinfo=timezone.utc)
    lines = sentences(made=made)
    assert all(b"musing 3.17 %d/5 12:01:40," % i in raw for i, raw in enumerate(lines, 1))
    keyed = WHEN + timedelta(minutes=3)
    far = [wire.restamp(raw, 2**32 - 1, keyed + timedelta(seconds=i), -89.99999, -179.99999, 999_999)
           for i, raw in enumerate(lines)]
    for i, raw in enumerate(far):
        assert len(raw) <= GATEWAY_MAX_LINE and check_line(raw) == []
        s = wire.decode_musing_sentence(raw)
        assert (s.made, s.time, s.part, s.parts) == ("12:01:40", f"12:07:{13 + i}", i + 1, 5)
    assert texts(far) == texts(lines)
    # an aware time in another zone is written in UTC
    cest = made.astimezone(timezone(timedelta(hours=2)))
    assert b" 12:01:40," in sentences(text="hi", made=cest)[0]


def test_a_tag_without_the_made_time_still_decodes_and_restamps_as_it_was():
    body = "STRATO1,57,12:04:13,52.10000,-0.10000,12345,musing 3.17 1/1,An older payload's line."
    old = f"$${body}*{wire.crc16_ccitt(body.encode()):04X}\n".encode()
    s = wire.decode_musing_sentence(old)
    assert (s.made, s.text, s.part, s.parts, s.boot, s.seq) == (None, "An older payload's line.", 1, 1, 3, 17)
    assert wire.restamp(old, 57, datetime(2026, 6, 20, 12, 4, 13), 52.1, -0.1, 12345) == old
    assert sentences(text="An older payload's line.", counter=57)[0] == old  # no made time given: none sent


@pytest.mark.parametrize("tag", ["musing 3.17 1/1 25:00:00", "musing 3.17 1/1 12:01", "musing 3.17 1/1 12:01:40 x",
                                 "musing 3.17 1/1  12:01:40"])
def test_a_bad_made_time_is_a_bad_tag(tag):
    body = f"STRATO1,57,12:04:13,52.10000,-0.10000,12345,{tag},text"
    with pytest.raises(wire.WireError):
        wire.decode_musing_sentence(f"$${body}*{wire.crc16_ccitt(body.encode()):04X}\n".encode())


def test_the_documented_musing_sentences_are_what_the_encoder_writes():
    from tests.test_wire import AUTH as VECTORS_KEY
    from tests.test_wire import _block_after

    documented = [line.split(" -> ") for line in _block_after("<!-- vectors:") if '"musing_sentence"' in line]
    assert len(documented) == 3
    made_seen = set()
    for hex_frame, expected in documented:
        v = json.loads(expected)
        h, m, s = map(int, v["time"].split(":"))
        made = None
        if v.get("made"):
            made = datetime(2026, 1, 1, *map(int, v["made"].split(":")), tzinfo=timezone.utc)
        made_seen.add(made is not None)
        line = wire.encode_musing_sentences(v["callsign"], v["counter"], datetime(2026, 1, 1, h, m, s), v["lat"],
                                            v["lon"], v["alt"], v["boot"], v["seq"], v["text"], made=made,
                                            auth=VECTORS_KEY if v.get("signature") else None)
        assert [raw.hex() for raw in line] == [hex_frame]
        decoded = dataclasses.asdict(wire.decode_musing_sentence(bytes.fromhex(hex_frame)))
        assert decoded == {"signature": None, **{k: val for k, val in v.items() if k != "kind"}}
        assert wire.musing_signed(bytes.fromhex(hex_frame), VECTORS_KEY) == (v.get("signature") is not None)
    assert made_seen == {True, False}  # one with the made time, one as older payloads send it
