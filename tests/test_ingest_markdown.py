"""Markdown / plain-text posts: front matter without YAML, titles, dates, Markdown stripped."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

from host_training.ingest import detect, discover
from host_training.ingest.markdown import MarkdownReader, parse_date, parse_front_matter, split_front_matter, strip_markdown

OWNERS = ["user5550101", "Ada Lindqvist"]


def read(path: Path, owners=OWNERS):
    reader = MarkdownReader(path)
    return list(reader.read(owners)), reader


def test_front_matter_scalars_lists_and_quotes():
    meta = parse_front_matter(
        [
            "title: Gerald, or: a starter is a weather station",
            'subtitle: "quoted: yes"',
            "date: 2024-08-20",
            "tags: [bread, 'weather', home]",
            "# a comment",
            "authors:",
            "  - Ada",
            "  - Kit",
            "draft:",
            "not a key line",
        ]
    )
    assert meta == {
        "title": "Gerald, or: a starter is a weather station",
        "subtitle": "quoted: yes",
        "date": "2024-08-20",
        "tags": ["bread", "weather", "home"],
        "authors": ["Ada", "Kit"],
        "draft": "",
    }


def test_unclosed_front_matter_is_an_error():
    assert split_front_matter("no front matter\n---\n") == ({}, "no front matter\n---\n")
    try:
        split_front_matter("---\ntitle: x\nbody")
    except ValueError as e:
        assert "never closed" in str(e)
    else:
        raise AssertionError("expected ValueError")


def test_dates():
    utc = timezone.utc
    assert parse_date("2024-08-20") == datetime(2024, 8, 20, tzinfo=utc)
    assert parse_date("2024-08-20 21:14") == datetime(2024, 8, 20, 21, 14, tzinfo=utc)
    assert parse_date("2024-08-20T21:14:00+02:00") == datetime(2024, 8, 20, 19, 14, tzinfo=utc)
    assert parse_date("2024-08-20T21:14:00Z") == datetime(2024, 8, 20, 21, 14, tzinfo=utc)
    assert parse_date("2024-08-20 21:14:00 +0100") == datetime(2024, 8, 20, 20, 14, tzinfo=utc)
    assert parse_date("last Tuesday") is None


def test_strip_markdown_keeps_text_and_drops_noise():
    md = (
        "# Heading\n\n"
        "Some **bold**, *italic*, __strong__ and _em_ text with a snake_case_name.\n"
        "A [link to the map](https://example.org/map) and ![a photo](photo.jpg) and `code`.\n"
        "A [ref link][1] and a footnote[^1].\n\n"
        "[1]: https://example.org/ref\n"
        "> a quote\n\n"
        "* one\n+ two\n- three\n\n"
        "---\n\n"
        "```python\nprint('dropped')\n```\n\n"
        "<!-- hidden -->\n<b>html</b> stays as text, 2 * 3 * 4 too, and \\*escaped\\*.\n\n\n\n"
        "The end."
    )
    assert strip_markdown(md) == (
        "Heading\n\n"
        "Some bold, italic, strong and em text with a snake_case_name.\n"
        "A link to the map and and code.\n"
        "A ref link and a footnote.\n\n"
        "a quote\n\n"
        "- one\n- two\n- three\n\n"
        "html stays as text, 2 * 3 * 4 too, and *escaped*.\n\n"
        "The end."
    )


def test_post_with_front_matter(tmp_path):
    path = tmp_path / "2024-08-20-gerald.md"
    path.write_text("---\ntitle: Gerald\ndate: 2024-08-21 07:30\ntags: [bread]\n---\n\n# Gerald\n\nHe is **a starter**.\n")
    (m,), reader = read(path)
    assert (m.source, m.chat_id, m.chat_name, m.msg_id) == ("markdown", "posts", "posts", "2024-08-20-gerald.md")
    assert (m.author_id, m.author, m.is_owner, m.kind) == ("user5550101", "Ada Lindqvist", True, "post")
    assert m.title == "Gerald"
    assert m.text == "He is a starter."  # the heading repeating the title is not part of the post
    assert m.ts == datetime(2024, 8, 21, 7, 30, tzinfo=timezone.utc)
    assert reader.stats.messages == 1


def test_title_from_heading_and_date_from_file_name(tmp_path):
    path = tmp_path / "2025-01-20-the-launch.md"
    path.write_text("# The 23:15 launch\n\nWe went up at night.\n")
    (m,), _ = read(path)
    assert (m.title, m.text) == ("The 23:15 launch", "We went up at night.")
    assert m.ts == datetime(2025, 1, 20, tzinfo=timezone.utc)


def test_title_from_file_name_and_date_from_mtime(tmp_path):
    path = tmp_path / "cold-batteries.txt"
    path.write_text("Batteries hate the cold. Lithium does not mind.\n")
    os.utime(path, (1710278040, 1710278040))
    (m,), reader = read(path)
    assert m.title == "Cold batteries"
    assert m.ts == datetime(2024, 3, 12, 21, 14, tzinfo=timezone.utc)
    assert reader.stats.repaired["date_from_mtime"] == 1


def test_owner_name_only(tmp_path):
    path = tmp_path / "p.md"
    path.write_text("---\ntitle: t\ndate: 2024-01-01\n---\nwords words words\n")
    (m,), _ = read(path, owners=["Ada"])
    assert (m.author_id, m.author) == ("Ada", "Ada")


def test_broken_posts_are_skipped_and_named(tmp_path):
    (tmp_path / "open.md").write_text("---\ntitle: never closed\nbody text here\n")
    (tmp_path / "bytes.md").write_bytes(b"line one is fine\nline two \xff\xfe broken\n")
    got, reader = read(tmp_path / "open.md")
    assert got == [] and reader.stats.skipped == {"corrupt": 1}
    assert "open.md: line 1: front matter" in reader.stats.errors[0]
    got, reader = read(tmp_path / "bytes.md")
    assert got == [] and reader.stats.skipped == {"undecodable": 1}
    assert "bytes.md: line 2: not valid UTF-8" in reader.stats.errors[0]


def test_detection(tmp_path):
    (tmp_path / "post.md").write_text("Just some prose about the sky today.\n")
    (tmp_path / "notes.txt").write_text("Plain text post, also prose, also mine.\n")
    (tmp_path / "front.data").write_text("---\ntitle: x\n---\nbody\n")
    (tmp_path / "numbers.txt").write_text("1 2 3\n")
    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF")
    assert detect(tmp_path / "post.md") == "markdown"
    assert detect(tmp_path / "front.data") == "markdown"
    assert detect(tmp_path / "numbers.txt") is None
    found, problems = discover(tmp_path)
    assert sorted(p.name for p, _ in found) == ["front.data", "notes.txt", "post.md"]
    assert not problems
