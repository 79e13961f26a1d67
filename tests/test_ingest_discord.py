"""Discord readers: DiscordChatExporter JSON and the data package (messages.json and .csv).

Fixtures under tests/fixtures/discord/: `dce/` holds one exporter file of a server channel
(a renamed owner, a bot, system messages, attachment and sticker only, a reply that was
edited, a forward, and a message without an author in the middle); `package/` is an unzipped
data package with one DM in the newer messages.json form and one server channel in the older
messages.csv form, whose first row is also in the exporter file.
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest

from host_training.__main__ import main
from host_training.ingest import IngestError, detect, discover, drop_reason, mark_owners
from host_training.ingest.discord import DiscordPackageReader, DiscordReader, render_markup

UTC = timezone.utc
FIXTURES = Path(__file__).parent / "fixtures" / "discord"
DCE = FIXTURES / "dce" / "Balloon Club - Text Channels - launches [700000000000000101].json"
PACKAGE = FIXTURES / "package"
DM_JSON = PACKAGE / "Messages" / "c222000000000000001" / "messages.json"
CHANNEL_CSV = PACKAGE / "Messages" / "c700000000000000101" / "messages.csv"
ADA = "user800000000000000001"


def read(reader_cls, path: Path, owners=(ADA,)):
    reader = reader_cls(path)
    return list(reader.read(list(owners))), reader


# ---------------------------------------------------------------------------------------------
# Recognising the files


def test_detected_from_content():
    assert detect(DCE) == "discord"
    assert detect(DM_JSON) == "discord_package"
    assert detect(CHANNEL_CSV) == "discord_package"
    for not_an_export in ("Account/user.json", "Messages/index.json", "Messages/c222000000000000001/channel.json"):
        assert detect(PACKAGE / not_an_export) is None


def test_detected_under_any_name(tmp_path):
    for src, name in ((DCE, "export.txt"), (DM_JSON, "dm.json"), (CHANNEL_CSV, "old.csv")):
        shutil.copy(src, tmp_path / name)
    assert [detect(tmp_path / n) for n in ("export.txt", "dm.json", "old.csv")] == [
        "discord", "discord_package", "discord_package"
    ]  # fmt: skip


def test_package_folder_gives_one_file_per_channel():
    found, problems = discover(PACKAGE)
    assert problems == []
    assert [(p.relative_to(PACKAGE).as_posix(), cls.format) for p, cls in found] == [
        ("Messages/c222000000000000001/messages.json", "discord_package"),
        ("Messages/c700000000000000101/messages.csv", "discord_package"),
    ]


def test_telegram_and_discord_are_told_apart(tmp_path):
    message = {"id": 1, "type": "message", "date_unixtime": "1710278040", "from": "Ada", "from_id": "user1", "text": "hi"}
    telegram = {"name": "Noor", "type": "personal_chat", "id": 1, "messages": [message]}
    (tmp_path / "result.json").write_text(json.dumps(telegram))
    assert detect(tmp_path / "result.json") == "telegram"
    assert detect(DCE) == "discord"


# ---------------------------------------------------------------------------------------------
# DiscordChatExporter


def test_exporter_messages_and_flags():
    got, reader = read(DiscordReader, DCE)
    assert [(m.msg_id[-2:], m.author, drop_reason(m)) for m in got] == [
        ("01", "Noor Haddad", None),
        ("02", "Ada L", None),
        ("03", "Noor Haddad", "service"),  # GuildMemberJoin
        ("04", "Weather Bot", "bot"),
        ("05", "Noor Haddad", "service"),  # ChannelPinnedMessage
        ("06", "Ada L", "media_only"),  # an attachment, no text
        # 07 has no author: skipped, below
        ("08", "Noor Haddad", "media_only"),  # a sticker
        ("09", "Ada L", None),  # a reply, edited later
        ("10", "Noor Haddad", "forwarded"),
        ("11", "Ada Lindqvist", None),  # same id, new nickname
        ("12", "Noor Haddad", None),
        ("13", "Ada Lindqvist", None),
    ]
    first = got[0]
    assert (first.source, first.chat_id, first.chat_name, first.author_id) == (
        "discord", "channel700000000000000101", "Balloon Club #launches", "user800000000000000002"
    )  # fmt: skip
    assert first.ts == datetime(2024, 3, 12, 21, 14, 0, tzinfo=UTC)  # +01:00 to UTC, to the second
    reply = got[7]
    assert reply.ts == datetime(2024, 3, 12, 21, 18, tzinfo=UTC)  # sent, not edited, time
    assert reply.text == "@Noor Haddad bring the thermos, I will bring the spare gloves"  # <@id> from mentions
    assert reader.stats.messages == 12


def test_a_broken_message_is_skipped_by_index_and_the_rest_kept():
    got, reader = read(DiscordReader, DCE)
    assert reader.stats.skipped == {"corrupt": 1}
    assert reader.stats.errors == [
        f"{DCE}: channel 700000000000000101 message #6 (id 900000000000000007): no 'author' with an 'id'"
    ]
    assert "msg900000000000000008" in {m.msg_id for m in got}


def test_renamed_owner_stays_the_owner():
    got, _ = read(DiscordReader, DCE, owners=["Ada L"])  # the old nickname only
    marked, match = mark_owners(got, ["Ada L"])
    assert {m.author for m in marked if m.is_owner} == {"Ada L", "Ada Lindqvist"}
    assert match.ids == {ADA}
    by_id, _ = read(DiscordReader, DCE, owners=[ADA])
    assert {m.author for m in by_id if m.is_owner} == {"Ada L", "Ada Lindqvist"}
    bare, _ = read(DiscordReader, DCE, owners=["800000000000000001"])  # the id as Discord shows it
    assert sum(m.is_owner for m in bare) == 5
    username, _ = read(DiscordReader, DCE, owners=["ada_l"])
    assert sum(m.is_owner for m in username) == 5


def test_truncated_export_names_the_file(tmp_path):
    cut = tmp_path / "cut.json"
    cut.write_bytes(DCE.read_bytes()[:3000])
    assert detect(cut) == "discord"
    want = re.escape(str(cut)) + r": not valid JSON \(a truncated export\?\): .* line \d+"
    with pytest.raises(IngestError, match=want):
        read(DiscordReader, cut)


@pytest.mark.parametrize("hostile", ["9" * 100_000, "[" * 100_000 + "]" * 100_000])
def test_json_beyond_any_export_is_refused_by_name(tmp_path, hostile):
    """A 100,000-digit number or nesting 100,000 deep is valid JSON no export holds: an
    IngestError naming the file, never a traceback (issue 41, attack 10)."""
    text = DCE.read_text(encoding="utf-8")
    path = tmp_path / "hostile.json"
    path.write_text(text.replace('"messages": [', f'"hostile": {hostile}, "messages": [', 1), encoding="utf-8")
    with pytest.raises(IngestError, match=re.escape(str(path)) + ": JSON beyond what an export holds"):
        read(DiscordReader, path)


def test_json_without_messages_is_an_error(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"guild": {"id": "1"}, "channel": {"id": "2"}, "messages": {}}')
    with pytest.raises(IngestError, match="not a DiscordChatExporter export"):
        read(DiscordReader, path)


def test_direct_messages_are_named_after_the_channel(tmp_path):
    data = json.loads(DCE.read_text(encoding="utf-8"))
    data["guild"] = {"id": "0", "name": "Direct Messages", "iconUrl": ""}
    data["channel"].update(type="DirectTextChat", name="noor.h", category="Private")
    path = tmp_path / "dm.json"
    path.write_text(json.dumps(data))
    got, _ = read(DiscordReader, path)
    assert got[0].chat_name == "noor.h"


def test_raw_markup_is_rendered():
    text = "<@1> and <@!2> in <#3> for <@&4> <:fog:5><a:spin:6> at <t:1710278040:R>"
    assert render_markup(text, {"1": "Noor"}) == (
        "@Noor and @user in #channel for @role :fog::spin: at 2024-03-12 21:14 UTC"
    )


# ---------------------------------------------------------------------------------------------
# The data package


def test_package_json_channel():
    got, reader = read(DiscordPackageReader, DM_JSON, owners=["Ada Lindqvist"])
    assert [(m.msg_id, drop_reason(m)) for m in got] == [
        ("msg1000000000000000001", None),
        ("msg1000000000000000002", None),
        ("msg1000000000000000003", "media_only"),
        ("msg1000000000000000005", None),
    ]
    m = got[0]
    assert (m.source, m.chat_id, m.chat_name) == ("discord", "channel222000000000000001", "Direct Message with noor.h")
    assert (m.author_id, m.author, m.is_owner) == (ADA, "Ada Lindqvist", True)  # from Account/user.json
    assert m.ts == datetime(2024, 3, 14, 8, 0, tzinfo=UTC)  # no zone: UTC
    assert m.text == "@user morning! the fog is back :fog:"
    assert got[1].text == "launch at 2024-03-14 08:00 UTC? text me on 07700 900456"
    assert reader.stats.errors == [
        f"{DM_JSON}: message #3 (ID 1000000000000000004): 'Timestamp' 'yesterday-ish' is not an ISO date"
    ]


def test_package_csv_channel_and_the_repeat_it_shares_with_the_exporter():
    got, reader = read(DiscordPackageReader, CHANNEL_CSV)
    assert [(m.msg_id, m.text, drop_reason(m)) for m in got] == [
        ("msg900000000000000013", "great, the launch window opens at 06:30 sharp", None),
        ("msg1000000000000000101", "two lines:\nthe payload is packed", None),
        ("msg1000000000000000102", "", "media_only"),
    ]
    assert got[0].chat_name == "launches in Balloon Club"
    assert got[1].ts == datetime(2024, 3, 16, 10, 0, 0, tzinfo=UTC)  # microseconds dropped
    exported, _ = read(DiscordReader, DCE)

    def identity(m):
        return (m.source, m.chat_id, m.msg_id, m.ts, m.author_id, m.text)

    assert identity(got[0]) in {identity(m) for m in exported}  # prepare counts it "repeated"
    assert not reader.stats.skipped


def test_package_reads_nothing_private_from_the_account(tmp_path):
    got = read(DiscordPackageReader, DM_JSON)[0] + read(DiscordPackageReader, CHANNEL_CSV)[0]
    fields = json.dumps([m.record() for m in got])
    for private in ("ada.lindqvist@example.org", "+447700900123", "203.0.113.7"):
        assert private not in fields


def test_package_channel_without_the_account_file(tmp_path):
    channel = tmp_path / "c700000000000000101"
    shutil.copytree(CHANNEL_CSV.parent, channel)
    by_id, _ = read(DiscordPackageReader, channel / "messages.csv", owners=["800000000000000001", "Ada"])
    assert {(m.author_id, m.author, m.is_owner) for m in by_id} == {(ADA, "Ada", True)}
    by_name, _ = read(DiscordPackageReader, channel / "messages.csv", owners=["Ada Lindqvist"])
    assert {(m.author_id, m.author, m.is_owner) for m in by_name} == {("Ada Lindqvist", "Ada Lindqvist", True)}
    assert by_name[0].chat_name == "Balloon Club #launches"  # from channel.json, no index.json here


def test_package_of_another_account_is_not_the_owner():
    got, _ = read(DiscordPackageReader, DM_JSON, owners=["user800000000000000077"])
    assert got and not any(m.is_owner for m in got)


def test_broken_csv_rows_are_skipped_by_row_and_line(tmp_path):
    path = tmp_path / "messages.csv"
    path.write_text(
        'ID,Timestamp,Contents,Attachments\n'
        '1,2024-03-12 21:14:00,"first",\n'
        '2,,"no time",\n'
        ',2024-03-12 21:16:00,"no id",\n'
        '4,2024-03-12 21:17:00,"last",\n',
        encoding="utf-8",
    )
    got, reader = read(DiscordPackageReader, path)
    assert [m.text for m in got] == ["first", "last"]
    assert reader.stats.errors == [f"{path}: row 2 (line 3): no 'Timestamp'", f"{path}: row 3 (line 4): no 'ID'"]


def test_truncated_package_json_names_the_file(tmp_path):
    path = tmp_path / "messages.json"
    path.write_bytes(DM_JSON.read_bytes()[:200])
    with pytest.raises(IngestError, match=re.escape(str(path)) + ": not valid JSON"):
        read(DiscordPackageReader, path)


def test_package_readme_is_not_a_post(tmp_path):
    package = tmp_path / "package"
    shutil.copytree(PACKAGE, package)
    (package / "README.txt").write_text(
        "Welcome to your Discord Data Package!\n\nInside, you'll find a few JSON files of the data we use "
        "to provide Discord's service to you.\n",
        encoding="utf-8",
    )
    found, _ = discover(package)
    assert [p.name for p, _ in found] == ["messages.json", "messages.csv"]


# ---------------------------------------------------------------------------------------------
# prepare, end to end

PLANTED = [
    "+44 7700 900123",
    "07700 900456",
    "ada.lindqvist@example.org",
    "+447700900123",  # in Account/user.json, never read
    "203.0.113.7",
]


def test_prepare_on_discord_exports(tmp_path):
    out = tmp_path / "out"
    rc = main(["--log-level", "WARNING", "prepare", str(FIXTURES / "dce"), str(PACKAGE),
               "--owner", ADA, "--owner", "Ada Lindqvist", "--out", str(out)])  # fmt: skip
    assert rc == 0
    names = ("messages.jsonl", "train.jsonl", "val.jsonl", "report.json")
    written = {name: (out / name).read_text(encoding="utf-8") for name in names}
    for name, text in written.items():
        for value in PLANTED:
            assert value not in text and re.sub(r"[\s\-]", "", value) not in text, (name, value)
    report = json.loads(written["report.json"])
    assert report["messages"]["dropped"] == {
        "media_only": 4, "corrupt": 2, "service": 2, "bot": 1, "forwarded": 1, "repeated": 1,
    }  # fmt: skip
    assert [i["format"] for i in report["inputs"]] == ["discord", "discord_package", "discord_package"]
    messages = [json.loads(line) for line in written["messages.jsonl"].splitlines()]
    assert {m["author_id"] for m in messages if m["is_owner"]} == {ADA}
    assert "Weather Bot" not in written["messages.jsonl"]
    train_val = [json.loads(line) for k in ("train.jsonl", "val.jsonl") for line in written[k].splitlines()]
    assert any(t["role"] == "assistant" and "spare gloves" in t["content"] for e in train_val for t in e["messages"])
