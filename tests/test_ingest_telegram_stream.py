"""The streaming Telegram reader: the same messages as reading the whole file with json.loads,
in any key order and at any piece size; damage and truncation named by position; memory that
does not grow with the number of messages."""

from __future__ import annotations

import io
import json
import re
import sys
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from host_training.ingest import IngestError
from host_training.ingest import telegram as tg
from host_training.ingest.telegram import TelegramReader
from host_training.ingest.telegram_gen import write_export
from tests.test_ingest_telegram import T0, chat, full, msg

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "corpus" / "telegram" / "result.json"


# ---------------------------------------------------------------------------------------------
# The reference: the reader as it was, json.loads over the whole file


def reference(path: Path) -> tuple[list, TelegramReader]:
    """What the json.loads-based reader gave: messages, and a reader holding its stats."""
    reader = TelegramReader(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        text = raw.decode("utf-8-sig", errors="replace")
        reader.stats.repaired["invalid_utf8"] += 1
        line = raw.count(b"\n", 0, e.start) + 1
        reader.stats.errors.append(f"{path}: line {line}: invalid UTF-8 replaced with U+FFFD")
    data = json.loads(text)
    if isinstance(data, dict) and isinstance(data.get("chats"), dict):
        chats = data["chats"].get("list")
        if not isinstance(chats, list):
            raise IngestError(f"{path}: Telegram export without a 'chats.list' list")
        left = data.get("left_chats")
        left = left.get("list") if isinstance(left, dict) else None
        chats = chats + (left if isinstance(left, list) else [])
    elif isinstance(data, dict) and isinstance(data.get("messages"), list):
        chats = [data]
    else:
        raise IngestError(f"{path}: JSON, but not a Telegram export: expected 'chats.list' (full export) or 'messages' (one "
                          "chat)")
    out = []
    for ci, c in enumerate(chats):
        if not isinstance(c, dict) or not isinstance(c.get("messages"), list):
            reader.skip("corrupt", f"chat #{ci}", "not a chat object with a 'messages' list")
            continue
        chat_id = str(c.get("id", f"#{ci}"))
        chat_name = str(c.get("name") or ("Saved Messages" if c.get("type") == "saved_messages" else chat_id))
        for mi, m in enumerate(c["messages"]):
            where = f"chat {chat_id} message " + (f"id {m['id']}" if isinstance(m, dict) and "id" in m else f"#{mi} (no id)")
            try:
                out.append(reader._message(m, chat_id, chat_name))
            except tg.BadMessage as e:
                reader.skip("corrupt", where, str(e))
                continue
            reader.stats.messages += 1
    return out, reader


def stream(path: Path, chunk: int | None = None) -> tuple[list, TelegramReader]:
    reader = TelegramReader(path)
    if chunk:
        reader.chunk_bytes = chunk
    return list(reader.read(["user5550101"])), reader


def same_as_reference(path: Path, chunk: int | None = None) -> list:
    try:
        want, ref = reference(path)
    except IngestError as e:
        with pytest.raises(IngestError) as got:
            stream(path, chunk)
        assert str(got.value) == str(e)
        return []
    got, reader = stream(path, chunk)
    assert got == want
    assert reader.stats == ref.stats
    return got


# ---------------------------------------------------------------------------------------------
# Same messages


@pytest.mark.parametrize("chunk", [1, 7, 64, 4096, None])
def test_sample_corpus_export_reads_the_same_at_any_piece_size(chunk):
    assert len(same_as_reference(SAMPLE, chunk)) > 50


@pytest.mark.parametrize("chunk", [3, 1000, None])
def test_the_other_telegram_tests_exports_read_the_same(tmp_path, chunk):
    no_from = msg(3)
    del no_from["from_id"]
    no_unix = msg(4)
    del no_unix["date_unixtime"]
    entities = msg(5, ["a ", {"type": "bold", "text": "b"}, {"type": "text_link", "text": "c", "href": "h"}])
    service = {"id": 6, "type": "service", "date_unixtime": str(T0), "actor": "N", "actor_id": "user1", "text": ""}
    exports = [
        full(chat([msg(1), msg(2)]), chat([msg(1)], name="Club", cid=7), left=[chat([msg(9)], cid=8)]),
        chat([msg(1), "not a message", no_from, no_unix, entities, service, msg(7, 42), msg(8, "")]),
        full(chat([msg(1)]), "not a chat", {"name": "no messages"}, chat([], cid=2)),
        {"chats": {"nothing": []}},
        {"backup": {"from_id": "user1", "messages": []}},
        [1, 2, 3],
    ]
    for i, data in enumerate(exports):
        path = tmp_path / f"e{i}.json"
        path.write_text(json.dumps(data, ensure_ascii=False, indent=i % 3 or None), encoding="utf-8")
        same_as_reference(path, chunk)


@pytest.mark.parametrize("shape", ["full", "single"])
@pytest.mark.parametrize("chunk", [97, 4096, None])
def test_generated_exports_read_the_same(tmp_path, shape, chunk):
    path = tmp_path / "result.json"
    written = write_export(path, 3000, shape=shape, seed=3)
    got = same_as_reference(path, chunk)
    assert len(got) == written.messages == 3000
    assert {m.chat_name for m in got} >= ({"Saved Messages", "Old club"} if shape == "full" else {"Noor Haddad"})


def test_a_huge_single_message_is_read_whole(tmp_path):
    text = "☁ \"messages\": [ \\u0041 " * 250_000  # 6 MB of text in one message
    path = tmp_path / "result.json"
    path.write_text(json.dumps(chat([msg(1), msg(2, text), msg(3)]), ensure_ascii=False), encoding="utf-8")
    got = same_as_reference(path, 64 * 1024)
    assert got[1].text == text


def test_invalid_utf8_is_replaced_once_at_any_piece_size(tmp_path):
    path = tmp_path / "result.json"
    good = json.dumps(chat([msg(1, "caf\u00e9"), msg(2, "fine\nline"), msg(3, "ol\u00e9")]), ensure_ascii=False, indent=1).encode()
    path.write_bytes(b"\xef\xbb\xbf" + good.replace("caf\u00e9".encode(), b"caf\xe9").replace("ol\u00e9".encode(), b"ol\xff"))
    for chunk in (1, 2, 5, None):
        got = same_as_reference(path, chunk)
        assert [m.text for m in got] == ["caf\ufffd", "fine\nline", "ol\ufffd"]


# ---------------------------------------------------------------------------------------------
# Key order


def test_messages_before_the_chat_name_are_read_with_it(tmp_path):
    late = {"messages": [msg(1), msg(2)], "id": 7, "type": "private_group", "name": "Late name"}
    saved = {"type": "saved_messages", "id": 5550101, "messages": [msg(3)]}  # no "name", as Telegram writes it
    left_first = {"left_chats": {"list": [chat([msg(9)], cid=8)]}, "chats": {"list": [late, saved, chat([msg(4)])]}}
    path = tmp_path / "result.json"
    path.write_text(json.dumps(left_first), encoding="utf-8")
    for chunk in (5, 64, None):
        got = same_as_reference(path, chunk)
        assert [(m.chat_name, m.msg_id) for m in got] == [
            ("Late name", "1"), ("Late name", "2"), ("Saved Messages", "3"), ("Noor Haddad", "4"), ("Noor Haddad", "9"),
        ]  # fmt: skip
    single = {"messages": [msg(1)], "about": {"x": [1, {"messages": []}]}, "name": "Solo", "id": 3, "type": "personal_chat"}
    path.write_text(json.dumps(single), encoding="utf-8")
    (m,) = same_as_reference(path, 11)
    assert (m.chat_id, m.chat_name) == ("3", "Solo")


# Random exports: nasty strings, random key order and layout, messages good and bad.

NASTY = st.one_of(
    st.text(max_size=40),
    st.sampled_from(['"messages": [', '{"chats": {"list": [', "\\", '\\"', "}]}", "\u2028\u2029", "🎈" * 3, "\x00\x1f", "é\u0301"]),
)
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | NASTY,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(NASTY, inner, max_size=4),
    max_leaves=12,
)
ENTITY = st.fixed_dictionaries(
    {"type": st.sampled_from(["plain", "bold", "link", "text_link", "custom_emoji"]), "text": NASTY},
    optional={"href": NASTY, "nested": VALUES},
)
GOOD_MESSAGE = st.builds(
    lambda mid, text, author, extra, media: {**msg(mid, text, from_=author), **extra, **media},
    st.integers(0, 10**12),
    NASTY | st.lists(NASTY | ENTITY, max_size=5),
    NASTY,
    st.dictionaries(st.sampled_from(["reply_to_message_id", "edited", "via_bot", "forwarded_from"]), VALUES, max_size=2),
    st.sampled_from([{}, {"photo": "p.jpg"}, {"media_type": "sticker", "sticker_emoji": "🎈"}]),
)
SERVICE = st.builds(
    lambda mid, actor, text: {"id": mid, "type": "service", "date_unixtime": str(T0), "actor": actor, "actor_id": "user1", "text": text},
    st.integers(0, 99), NASTY, NASTY,
)  # fmt: skip
BAD_MESSAGE = st.one_of(VALUES, st.builds(lambda m, k: {x: v for x, v in m.items() if x != k}, GOOD_MESSAGE, st.sampled_from(["id", "from_id", "text", "date_unixtime"])))
MESSAGES = st.lists(st.one_of(GOOD_MESSAGE, GOOD_MESSAGE, SERVICE, BAD_MESSAGE), max_size=8)


@st.composite
def chats(draw) -> dict:
    fields = {"name": draw(NASTY | st.none()), "type": draw(st.sampled_from(["personal_chat", "saved_messages", "private_group"])),
              "id": draw(st.integers(0, 10**10) | NASTY)}  # fmt: skip
    keys = draw(st.permutations(["messages", *draw(st.lists(st.sampled_from(list(fields)), unique=True))]))
    extra = draw(st.dictionaries(st.sampled_from(["about", "photo", "pinned"]), VALUES, max_size=2))
    out = {}
    for k in keys:
        out[k] = draw(MESSAGES) if k == "messages" else fields[k]
        if extra and draw(st.booleans()):
            out.update([extra.popitem()])
    return out


@st.composite
def exports(draw) -> dict:
    extra = draw(st.dictionaries(st.sampled_from(["about", "personal_information", "contacts", "frequent_contacts", "other_data"]), VALUES, max_size=3))
    if draw(st.booleans()):  # one chat
        parts = list(draw(chats()).items()) + list(extra.items())
    else:
        lists = [("chats", {"about": draw(NASTY), "list": draw(st.lists(chats() | VALUES, max_size=4))})]
        if draw(st.booleans()):
            lists.append(("left_chats", {"list": draw(st.lists(chats(), max_size=2)), "about": ""}))
        parts = lists + list(extra.items())
    return dict(draw(st.permutations(parts)))


@given(data=exports(), indent=st.sampled_from([None, 0, 1, 2]), ascii_=st.booleans(), chunk=st.sampled_from([1, 2, 3, 8, 61, 4096]))
@settings(max_examples=300)
def test_random_exports_read_the_same_as_json_loads(tmp_path_factory, data, indent, ascii_, chunk):
    path = tmp_path_factory.mktemp("h") / "result.json"
    path.write_text(json.dumps(data, ensure_ascii=ascii_, indent=indent), encoding="utf-8")
    same_as_reference(path, chunk)


# ---------------------------------------------------------------------------------------------
# Damage and truncation


def build(chats_: list[tuple[dict, list[dict]]]) -> tuple[bytes, list[int]]:
    """A full export in Telegram's key order, and the byte offset where each message ends."""
    out = bytearray(b'{"about": "cut tests \xc3\xa9", "personal_information": {"user_id": 5550101},\n "chats": {"about": "", "list": [')
    ends = []
    for i, (fields, messages) in enumerate(chats_):
        out += (", " if i else "").encode() + json.dumps(fields, ensure_ascii=False)[:-1].encode() + b', "messages": [\n'
        for j, m in enumerate(messages):
            out += (",\n" if j else "").encode() + json.dumps(m, ensure_ascii=False, indent=1).encode()
            ends.append(len(out))
        out += b"\n]}"
    out += b'\n]}, "left_chats": {"list": []}, "other_data": {"x": [1, 2]}}'
    return bytes(out), ends


def test_truncated_at_every_byte_yields_every_message_before_the_cut(tmp_path):
    data, ends = build([
        ({"name": "Noor \u00e9", "type": "personal_chat", "id": 4440001},
         [msg(1, "h\u00e9llo \"q\""), msg(2, ["a", {"type": "bold", "text": "\U0001f388"}]), msg(3, "x" * 40)]),
        ({"name": "Club", "type": "private_group", "id": 7}, [msg(4, "\\n not a newline"), msg(5, "fin")]),
    ])  # fmt: skip
    path = tmp_path / "result.json"
    path.write_bytes(data)
    want, _ = reference(path)
    assert len(want) == len(ends) == 5
    for cut in range(len(data)):
        path.write_bytes(data[:cut])
        reader = TelegramReader(path)
        reader.chunk_bytes = 1 + cut % 13
        got = []
        with pytest.raises(IngestError) as e:  # a cut file always says so
            got.extend(reader.read([]))
        expected = sum(end <= cut for end in ends)
        assert got == want[:expected], cut
        assert str(path) in str(e.value) and "byte" in str(e.value), cut
    path.write_bytes(data)
    assert stream(path, 5)[0] == want


def test_truncation_is_named_with_the_byte_where_the_file_ends(tmp_path):
    data, ends = build([({"name": "N", "type": "personal_chat", "id": 1}, [msg(i) for i in range(1, 6)])])
    path = tmp_path / "result.json"
    path.write_bytes(data[: ends[2] + 30])
    got = []
    with pytest.raises(IngestError, match=rf"not valid JSON: the file ends at byte {ends[2] + 30} \(truncated\?\).* "
                                          rf"\(byte {ends[2] + 2}\); the 3 message\(s\) before it were read"):  # fmt: skip
        got.extend(TelegramReader(path).read([]))
    assert [m.msg_id for m in got] == ["1", "2", "3"]


def test_a_malformed_message_is_skipped_with_its_position_and_the_rest_are_read(tmp_path):
    head = '{"name": "Nöör", "type": "personal_chat", "id": 4440001, "messages": [\n'
    good = [json.dumps(msg(i, "tëxt")) for i in (1, 2, 3)]
    bad = ['{"id": 9,, "text": "x"}', '{"id": 10, "text": "raw\tcontrol"}', '{"id": 11, "text": nope}', '{"id": 12, "x": [1 2]}']
    text = head + ",\n".join([good[0], bad[0], good[1], bad[1], bad[2], bad[3], good[2]]) + ",\n]}"
    path = tmp_path / "result.json"
    path.write_text(text, encoding="utf-8")
    for chunk in (1, 16, None):
        got, reader = stream(path, chunk)
        assert [m.msg_id for m in got] == ["1", "2", "3"]
        assert reader.stats.skipped == {"corrupt": 5}  # four bad messages and the comma after the last
        errors = reader.stats.errors
        assert "chat 4440001 message #1 at line 3, column" in errors[0] and "not valid JSON: Expecting property name" in errors[0]
        assert "message #3 at line 5" in errors[1] and "Invalid control character" in errors[1]
        assert "message #4 at line 6" in errors[2] and "message #5 at line 7" in errors[3]
        assert "after message #6 at line 9" in errors[4]
        # The byte offset points at the character the decoder stopped at.
        first = int(re.search(r"\(byte (\d+)\)", errors[0]).group(1))
        assert text.encode()[first : first + 1] == b","


def test_valid_json_beyond_any_export_is_skipped_by_name_not_a_traceback(tmp_path):
    """A 100,000-digit number (Python refuses to convert one past 4,300) and a message nested
    100,000 deep (past the parser's recursion) are valid JSON: each is one message skipped with
    its place and reason, and the messages around them are read (issue 41, attack 10)."""
    head = '{"name": "Nöör", "type": "personal_chat", "id": 4440001, "messages": [\n'
    good = [json.dumps(msg(i, "tëxt")) for i in (1, 2, 3)]
    huge = '{"id": ' + "9" * 100_000 + ', "text": "x"}'
    deep = '{"id": 8, "text": ' + "[" * 100_000 + "]" * 100_000 + "}"
    text = head + ",\n".join([good[0], huge, good[1], deep, good[2]]) + "\n]}"
    path = tmp_path / "result.json"
    path.write_text(text, encoding="utf-8")
    for chunk in (4096, None):
        got, reader = stream(path, chunk)
        assert [m.msg_id for m in got] == ["1", "2", "3"]
        assert reader.stats.skipped == {"corrupt": 2}
        first, second = reader.stats.errors
        assert "message #1 at line 3, column 1" in first and "a number of more than 4,300 digits" in first
        assert "message #3 at line 5, column 1" in second and "nesting deeper than the parser goes" in second


def test_broken_structure_keeps_what_came_before_and_names_the_place(tmp_path):
    text = json.dumps(full(chat([msg(1), msg(2)]), chat([msg(3)], cid=7)))
    broken = text.replace('"messages": [{"id": 3', '"messages": [}{"id": 3')
    path = tmp_path / "result.json"
    path.write_text(broken, encoding="utf-8")
    got = []
    with pytest.raises(IngestError, match=r"not valid JSON: Expecting value at line 1, column \d+ \(byte \d+\); the 2 message"):
        got.extend(TelegramReader(path).read([]))
    assert [m.msg_id for m in got] == ["1", "2"]
    path.write_text(text + " trailing", encoding="utf-8")
    got = []
    with pytest.raises(IngestError, match="Extra data"):
        got.extend(TelegramReader(path).read([]))
    assert len(got) == 3


def test_files_that_cannot_be_read_at_all(tmp_path):
    with pytest.raises(IngestError, match="cannot read"):
        list(TelegramReader(tmp_path / "missing.json").read([]))
    empty = tmp_path / "empty.json"
    empty.write_bytes(b"")
    with pytest.raises(IngestError, match="empty.json: not valid JSON: the file is empty"):
        list(TelegramReader(empty).read([]))


# ---------------------------------------------------------------------------------------------
# Memory and progress


def test_memory_does_not_grow_with_the_number_of_messages(tmp_path):
    def peak_reading(n: int) -> tuple[int, int]:
        path = tmp_path / f"result{n}.json"
        written = write_export(path, n, seed=5)
        reader = TelegramReader(path)
        tracemalloc.start()
        try:
            assert sum(1 for _ in reader.read([])) == n and not reader.stats.skipped
            return tracemalloc.get_traced_memory()[1], written.bytes
        finally:
            tracemalloc.stop()

    bound = 16 << 20
    small, _ = peak_reading(20_000)
    peak, size = peak_reading(200_000)
    assert size > 8 * bound  # json.load would need at least the file's text: 8x the bound
    assert peak < bound, f"peak {peak / 2**20:.1f} MiB reading {size / 2**20:.0f} MiB"
    assert peak < small + (1 << 20), f"10x the messages: peak {small / 2**20:.1f} -> {peak / 2**20:.1f} MiB"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_over_bytes_for_big_files_on_a_terminal(tmp_path, monkeypatch):
    path = tmp_path / "result.json"
    write_export(path, 300, shape="single")
    monkeypatch.setattr(tg, "PROGRESS_MIN_BYTES", 1000)
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert len(list(TelegramReader(path).read([]))) == 300
    assert "read result.json" in sys.stderr.getvalue() and "B" in sys.stderr.getvalue()
    monkeypatch.setattr(tg, "PROGRESS_MIN_BYTES", path.stat().st_size)  # not larger: no bar
    monkeypatch.setattr(sys, "stderr", _Terminal())
    list(TelegramReader(path).read([]))
    assert sys.stderr.getvalue() == ""
