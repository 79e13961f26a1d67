"""Telegram JSON reader: both export shapes, text lists and entities, what gets flagged, owners."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from host_training.ingest import IngestError, detect, discover, drop_reason, mark_owners
from host_training.ingest.telegram import TelegramReader

T0 = 1710278040  # 2024-03-12 21:14:00 UTC


def msg(mid: int, text="hello", from_="Ada L", from_id="user5550101", at=T0, **extra) -> dict:
    local = datetime.fromtimestamp(at + 3600, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")  # UTC+1 machine
    return {
        "id": mid,
        "type": "message",
        "date": local,
        "date_unixtime": str(at),
        "from": from_,
        "from_id": from_id,
        "text": text,
        **extra,
    }


def chat(messages: list, name="Noor Haddad", cid=4440001, ctype="personal_chat") -> dict:
    return {"name": name, "type": ctype, "id": cid, "messages": messages}


def write(tmp_path: Path, data: object, name="result.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def full(*chats: dict, left: list | None = None) -> dict:
    data = {"personal_information": {"user_id": 5550101}, "chats": {"about": "", "list": list(chats)}}
    if left is not None:
        data["left_chats"] = {"about": "", "list": left}
    return data


def read(path: Path, owners=("user5550101",)):
    reader = TelegramReader(path)
    return list(reader.read(list(owners))), reader


def test_full_export_reads_every_chat_including_left_ones(tmp_path):
    path = write(tmp_path, full(chat([msg(1), msg(2)]), chat([msg(1)], name="Club", cid=7), left=[chat([msg(9)], cid=8)]))
    got, reader = read(path)
    assert [(m.chat_id, m.msg_id) for m in got] == [("4440001", "1"), ("4440001", "2"), ("7", "1"), ("8", "9")]
    assert got[2].chat_name == "Club"
    assert reader.stats.messages == 4 and not reader.stats.skipped


def test_single_chat_export(tmp_path):
    path = write(tmp_path, chat([msg(5, "just one chat")]))
    (m,), _ = read(path)
    assert (m.source, m.chat_id, m.chat_name, m.msg_id, m.text) == ("telegram", "4440001", "Noor Haddad", "5", "just one chat")
    assert (m.author_id, m.author) == ("user5550101", "Ada L")


def test_date_unixtime_is_the_utc_time_not_the_local_date(tmp_path):
    (m,), _ = read(write(tmp_path, chat([msg(1)])))
    assert m.ts == datetime(2024, 3, 12, 21, 14, tzinfo=timezone.utc)


def test_local_date_used_as_utc_only_without_unixtime(tmp_path):
    raw = msg(1)
    del raw["date_unixtime"]
    (m,), reader = read(write(tmp_path, chat([raw])))
    assert m.ts == datetime(2024, 3, 12, 22, 14, tzinfo=timezone.utc)
    assert reader.stats.repaired["date_assumed_utc"] == 1


def test_text_list_with_entities_is_joined(tmp_path):
    text = [
        "Look at ",
        {"type": "link", "text": "https://example.org/predict"},
        " and ",
        {"type": "bold", "text": "this"},
        " from ",
        {"type": "text_link", "text": "the club", "href": "https://secret.example/?token=zzz"},
        {"type": "custom_emoji", "text": "🎈", "document_id": 1},
    ]
    (m,), _ = read(write(tmp_path, chat([msg(1, text)])))
    assert m.text == "Look at https://example.org/predict and this from the club🎈"
    assert "token" not in m.text  # a text_link's hidden target is never taken


def test_flags_service_forwarded_and_media(tmp_path):
    messages = [
        {"id": 1, "type": "service", "date_unixtime": str(T0), "actor": "Noor", "actor_id": "user4440001",
         "action": "phone_call", "text": ""},
        msg(2, "bulletin text", forwarded_from="Upper Air Bulletin"),
        msg(3, "", photo="photos/p.jpg", width=1, height=1),
        msg(4, "", file="stickers/s.webp", media_type="sticker", sticker_emoji="🎈"),
        msg(5, "", file="voice/v.ogg", media_type="voice_message"),
        msg(6, "look at this cloud", photo="photos/q.jpg"),  # a caption is text
        msg(7, ""),  # empty, no media
        msg(8, "normal"),
    ]  # fmt: skip
    got, _ = read(write(tmp_path, chat(messages)))
    reasons = {m.msg_id: drop_reason(m) for m in got}
    assert reasons == {
        "1": "service", "2": "forwarded", "3": "media_only", "4": "media_only", "5": "media_only",
        "6": None, "7": "empty", "8": None,
    }  # fmt: skip
    assert got[5].text == "look at this cloud" and not got[5].media_only


def test_the_shapes_a_message_can_take_read_alike(tmp_path):
    """What the per-message fast code must still honour: whitespace-only text with media, text
    only in text_entities, a numeric from_id, an explicit caption, a deleted account, service
    messages without text, and a null text (corrupt)."""
    only_entities = msg(2)
    del only_entities["text"]
    only_entities["text_entities"] = [{"type": "plain", "text": "from "}, {"type": "bold", "text": "entities"}]
    null_text = msg(8)
    null_text["text"] = None
    messages = [
        msg(1, " \n\t", photo="photos/p.jpg"),
        only_entities,
        msg(3, "old export", from_id=4440001),
        msg(4, "", caption="the caption", photo="photos/c.jpg"),
        msg(5, "gone", from_=None),
        {"id": 6, "type": "service", "date_unixtime": str(T0), "actor_id": 4440001, "action": "pin_message"},
        msg(7, ["see ", {"type": "link", "text": "https://example.org"}]),
        null_text,
    ]
    got, reader = read(write(tmp_path, chat(messages)))
    by_id = {m.msg_id: m for m in got}
    assert by_id["1"].media_only and by_id["1"].text == " \n\t"
    assert by_id["2"].text == "from entities"
    assert by_id["3"].author_id == "user4440001"
    assert by_id["4"].text == "the caption" and not by_id["4"].media_only
    assert by_id["5"].author == "Deleted Account"
    assert by_id["6"].service and by_id["6"].author_id == "user4440001" and by_id["6"].text == ""
    assert by_id["7"].text == "see https://example.org"
    assert "8" not in by_id and reader.stats.skipped == {"corrupt": 1}


def test_bad_messages_are_skipped_counted_and_named(tmp_path):
    no_from = msg(3)
    del no_from["from_id"]
    bad_date = msg(4)
    bad_date["date_unixtime"] = "soon"
    no_text = msg(5)
    del no_text["text"]
    messages = [msg(1), "not a message", no_from, bad_date, no_text, msg(6, 42), msg(7)]
    path = write(tmp_path, chat(messages))
    got, reader = read(path)
    assert [m.msg_id for m in got] == ["1", "7"]
    assert reader.stats.skipped == {"corrupt": 5}
    errors = "\n".join(reader.stats.errors)
    assert str(path) in errors
    for where in ["message #1 (no id)", "message id 3: no 'from_id'", "message id 4:", "message id 5: no 'text'", "message "
                                                                                                                  "id 6:"]:
        assert where in errors


def test_invalid_json_names_file_and_line(tmp_path):
    path = tmp_path / "result.json"
    path.write_text('{\n "chats": {"list": [\n  {"messages": [ {"id": 1,, } ]}\n]}}', encoding="utf-8")
    assert detect(path) == "telegram"  # recognised from its content, so the error can be specific
    with pytest.raises(IngestError, match=r"result\.json: not valid JSON: .* at line 3, column \d+"):
        read(path)


def test_json_that_is_not_telegram(tmp_path):
    with pytest.raises(IngestError, match="Telegram export without a 'chats.list' list"):
        read(write(tmp_path, {"chats": {"nothing": []}}))
    with pytest.raises(IngestError, match="not a Telegram export: expected 'chats.list'"):
        read(write(tmp_path, {"backup": {"from_id": "user1", "messages": []}}))
    assert detect(write(tmp_path, {"guild": 1, "messages": []}, name="discord.json")) is None


def test_invalid_utf8_is_replaced_not_fatal(tmp_path):
    path = tmp_path / "result.json"
    good = json.dumps(chat([msg(1, "caf\u00e9"), msg(2, "fine")]), ensure_ascii=False).encode()
    path.write_bytes(good.replace("caf\u00e9".encode(), b"caf\xe9"))
    got, reader = read(path)
    assert [m.text for m in got] == ["caf\ufffd", "fine"]
    assert reader.stats.repaired["invalid_utf8"] == 1
    assert "line 1: invalid UTF-8" in reader.stats.errors[0]


def test_detected_from_content_not_name(tmp_path):
    path = write(tmp_path, full(chat([msg(1)])), name="backup-2024.data")
    assert detect(path) == "telegram"
    (found,), problems = discover(tmp_path)
    assert found[0] == path and not problems


def test_renamed_owner_keeps_being_the_owner(tmp_path):
    messages = [
        msg(1, "old name", from_="Ada L", at=T0),
        msg(2, "hi", from_="Noor Haddad", from_id="user4440001", at=T0 + 60),
        msg(3, "new name", from_="Ada Lindqvist", at=T0 + 120),
        msg(4, "namesake", from_="ada l", from_id="user999", at=T0 + 180),
    ]
    got, _ = read(write(tmp_path, chat(messages)), owners=["Ada Lindqvist"])
    marked, match = mark_owners(got, ["Ada Lindqvist"])
    assert [m.is_owner for m in marked] == [True, False, True, False]
    assert match.ids == {"user5550101"}


def test_owner_by_stable_id_and_case_insensitive_names(tmp_path):
    got, _ = read(write(tmp_path, chat([msg(1, from_="Ada"), msg(2, from_="Noor", from_id="user4440001")])))
    assert [m.is_owner for m in mark_owners(got, ["USER5550101"])[0]] == [True, False]
    assert [m.is_owner for m in mark_owners(got, ["noor"])[0]] == [False, True]


def test_same_name_on_two_ids_is_reported(tmp_path):
    got, _ = read(write(tmp_path, chat([msg(1, from_="Sam"), msg(2, from_="Sam", from_id="user2")])))
    _, match = mark_owners(got, ["sam"])
    assert match.ambiguous == {"sam": {"user5550101", "user2"}}


def test_bot_messages_are_flagged_and_dropped(tmp_path):
    group = chat([
        msg(1, "hi all", from_="Noor Haddad", from_id="user4440001"),
        msg(2, "Weather: 12 °C", from_="Noor Haddad", from_id="user4440001", via_bot="@weatherbot"),
        msg(3, "Pick one", from_="Quiz", from_id="user999", inline_bot_buttons=[[{"type": "callback", "text": "A"}]]),
    ], name="Club", cid=777, ctype="private_group")
    with_bot = chat([msg(4, "/start"), msg(5, "Hello! I am a bot.", from_="Helper Bot", from_id="user888")],
                    name="Helper Bot", cid=888, ctype="bot_chat")
    got, _ = read(write(tmp_path, full(group, with_bot)))
    assert [(m.msg_id, drop_reason(m)) for m in got] == [("1", None), ("2", "bot"), ("3", "bot"), ("4", "bot"), ("5", "bot")]


def test_telegrams_own_escapes_for_control_characters_are_read(tmp_path):
    """Telegram Desktop writes a control character inside a string as \\xHH, which is not JSON: the
    message is read with the character it means, counted as repaired, its neighbours untouched."""
    path = tmp_path / "result.json"
    body = json.dumps(chat([msg(1, "before"), msg(2, "BELL"), msg(3, r"a literal \x41 stays"), msg(4, "after")]),
                      ensure_ascii=False)
    body = body.replace('"BELL"', r'"ring\x07 the \x1Fbell"')  # as export_output_json.cpp writes them
    path.write_text(body, encoding="utf-8")
    got, reader = read(path)
    assert [m.text for m in got] == ["before", "ring\x07 the \x1fbell", r"a literal \x41 stays", "after"]
    assert reader.stats.repaired["telegram_x_escape"] == 1 and not reader.stats.skipped
