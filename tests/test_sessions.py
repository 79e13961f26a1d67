"""Sessions, bursts, windows, posts, duplicates and the split."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from host_training.ingest import Message
from host_training.prepare.sessions import (
    DEFAULT_DEDUP_MIN_CHARS,
    DEFAULT_GAP_MINUTES,
    AckRuns,
    Example,
    Session,
    Turn,
    chat_examples,
    dedupe_owner,
    is_ack,
    iter_sessions,
    join_bursts,
    post_examples,
    time_cut,
    val_chats,
    windows,
)

T0 = datetime(2024, 3, 12, 21, 14, tzinfo=timezone.utc)
_ids = iter(range(1, 1_000_000))


def m(author: str, text: str, at: timedelta, chat="c1", owner=None) -> Message:
    return Message(
        source="telegram", chat_id=chat, chat_name=chat, msg_id=str(next(_ids)), author_id=f"id-{author}",
        author=author, is_owner=(author == "Ada") if owner is None else owner, ts=T0 + at, text=text,
    )  # fmt: skip


MIN = timedelta(minutes=1)


# In memory, what prepare's split (prepare/split.py) decides as it streams its examples.
def split_sessions(messages: Iterable[Message], gap_minutes: float = DEFAULT_GAP_MINUTES) -> list[Session]:
    """Chat messages (not posts) cut into sessions per chat (`iter_sessions`), in time order."""
    # A stable sort: equal times keep the export's order.
    ordered = sorted((m for m in messages if m.kind == "message"), key=lambda m: (m.source, m.chat_id, m.ts))
    return sorted(iter_sessions(ordered, gap_minutes), key=lambda s: (s.messages[0].ts, s.key))


@dataclass(frozen=True)
class Split:
    train: list[Example]
    val: list[Example]
    left_out: list[Example]  # sessions that straddle the time cut
    cut: datetime | None = None  # val sessions start at or after it, train sessions end before it


def split_by_time(examples: Sequence[Example], val_fraction: float) -> Split:
    """The latest sessions (about `val_fraction` of them) go to val, the rest to train, with
    every val session starting at or after the cut and every train session ending before it
    (`time_cut`). With one session of several examples its last window goes to val."""
    spans: dict[str, tuple[datetime, datetime]] = {}
    for e in examples:
        start, end = spans.get(e.session, (e.start, e.end))
        spans[e.session] = (min(start, e.start), max(end, e.end))
    if len(spans) == 1 and len(examples) >= 2 and val_fraction > 0:
        # One long conversation: its last window is the latest there is.
        return Split(list(examples[:-1]), list(examples[-1:]), [], examples[-1].start)
    cut = time_cut(spans, val_fraction)
    if cut is None:
        return Split(list(examples), [], [])
    return Split([e for e in examples if spans[e.session][1] < cut], [e for e in examples if spans[e.session][0] >= cut],
                 [e for e in examples if spans[e.session][0] < cut <= spans[e.session][1]], cut)


def split_by_chat(examples: Sequence[Example], val_fraction: float, seed: int) -> Split:
    """Whole chats to val (`val_chats`): the persona is measured on people and topics it never
    trained on."""
    val = val_chats(Counter(e.chat for e in examples), val_fraction, seed)
    return Split([e for e in examples if e.chat not in val], [e for e in examples if e.chat in val], [])


def test_a_day_and_a_minute_apart_are_two_sessions():
    # timedelta(days=1, minutes=1).seconds == 60: the classic bug would keep these together.
    msgs = [m("Ada", "night", 0 * MIN), m("Noor", "next day", timedelta(days=1, minutes=1))]
    assert [len(s.messages) for s in split_sessions(msgs, gap_minutes=30)] == [1, 1]


def test_gap_boundary_and_per_chat_sorting():
    msgs = [
        m("Noor", "c", 61 * MIN),  # out of order in the export
        m("Ada", "a", 0 * MIN),
        m("Noor", "b", 30 * MIN),  # exactly the gap: same session
        m("Ada", "other chat", 1 * MIN, chat="c2"),
    ]
    sessions = split_sessions(msgs, gap_minutes=30)
    assert [[x.text for x in s.messages] for s in sessions] == [["a", "b"], ["other chat"], ["c"]]
    assert len({s.key for s in sessions}) == 3


def test_posts_are_not_chat_sessions():
    post = m("Ada", "a post", 0 * MIN)
    post.kind = "post"
    assert split_sessions([post]) == []


def test_bursts_joined_into_turns_with_roles_and_names():
    msgs = [m("Noor", "hi", 0 * MIN), m("Noor", "you there?", MIN), m("Ada", "yes", 2 * MIN), m("Ada", "hello", 3 * MIN),
            m("Kit", "me too", 4 * MIN), m("Noor", "ok", 5 * MIN)]  # fmt: skip
    assert join_bursts(msgs, persona_name="Ada Lindqvist") == [
        Turn("user", "Noor", "hi\nyou there?"),
        Turn("assistant", "Ada Lindqvist", "yes\nhello"),
        Turn("user", "Kit", "me too"),
        Turn("user", "Noor", "ok"),
    ]


def test_sessions_without_the_owner_make_no_example_and_trailing_user_turns_go():
    with_owner = [m("Noor", "q", 0 * MIN), m("Ada", "a", MIN), m("Noor", "thanks", 2 * MIN)]
    without = [m("Noor", "x", 0 * MIN, chat="c2"), m("Kit", "y", MIN, chat="c2")]
    examples = chat_examples(split_sessions(with_owner + without), persona_name="Ada")
    assert [e.record() for e in examples] == [
        {"messages": [{"role": "user", "name": "Noor", "content": "q"}, {"role": "assistant", "name": "Ada", "content": "a"}]}
    ]


def test_windows_respect_limits_end_on_the_owner_and_carry_context():
    turns = [Turn("user" if i % 2 == 0 else "assistant", "x", f"t{i}") for i in range(10)]
    ws = windows(turns, max_turns=4, max_chars=10_000)
    assert all(len(w) <= 4 and w[-1].role == "assistant" for w in ws)
    assert [[t.content for t in w] for w in ws] == [["t0", "t1", "t2", "t3"], ["t4", "t5", "t6", "t7"], ["t8", "t9"]]
    # A cut right after a user turn moves it to the next window as context.
    turns = [Turn("user", "n", "q1"), Turn("assistant", "a", "a1"), Turn("user", "n", "q2"), Turn("assistant", "a", "a2")]
    assert [[t.content for t in w] for w in windows(turns, max_turns=3, max_chars=10_000)] == [["q1", "a1"], ["q2", "a2"]]
    # Characters count too; one long turn is kept whole.
    turns = [Turn("user", "n", "x" * 60), Turn("assistant", "a", "y" * 60), Turn("assistant", "a", "z" * 500)]
    assert [len(w) for w in windows(turns, max_turns=16, max_chars=100)] == [1, 1]


def test_post_examples_prompt_with_title_and_long_posts_cut_at_paragraphs():
    post = m("Ada", "para one\n\npara two\n\npara three", 0 * MIN)
    post.kind, post.title, post.source, post.chat_id = "post", "Gerald", "markdown", "posts"
    (ex,) = post_examples([post], persona_name="Ada")
    assert ex.kind == "post" and ex.record()["messages"] == [
        {"role": "user", "name": "", "content": "Write a post: Gerald"},
        {"role": "assistant", "name": "Ada", "content": "para one\n\npara two\n\npara three"},
    ]
    parts = post_examples([post], persona_name="Ada", max_chars=20)
    assert [e.turns[1].content for e in parts] == ["para one\n\npara two", "para three"]
    assert parts[1].turns[0].content == "Continue the post: Gerald"
    assert len({e.session for e in parts}) == 1


def test_dedupe_owner_exact_and_near_duplicates():
    msgs = [
        m("Ada", "see you at the launch site", 0 * MIN),
        m("Ada", "see you at the launch site", MIN),
        m("Ada", "  See you at the   LAUNCH site ", 2 * MIN),
        m("Noor", "see you at the launch site", 3 * MIN),  # other people's repeats stay
        m("Ada", "ok", 4 * MIN),
        m("Ada", "ok", 5 * MIN),  # short: conversation, kept
    ]
    kept, dropped = dedupe_owner(msgs, min_chars=8)
    assert [x.author for x in kept] == ["Ada", "Noor", "Ada", "Ada"]
    assert dropped == {"duplicate": 1, "near_duplicate": 1}
    assert dedupe_owner(msgs, min_chars=0)[1] == {"duplicate": 2, "near_duplicate": 1}


def test_a_catchphrase_keeps_its_real_frequency_and_a_paste_is_kept_once():
    # Issue 40: a German owner's "ja digga" (in one turn of seven) was kept once, so no persona
    # trained on it ever said "digga"; a greeting pasted to a list is still one message.
    paste = "Frohe Weihnachten und einen guten Rutsch euch allen!"
    msgs = [m("Jannik", text, i * MIN, owner=True) for i, text in enumerate(
        ["ja digga", "bin dabei", "ja digga", "JA  digga", "bin dabei", paste, paste, "ja digga"])]
    kept, dropped = dedupe_owner(msgs)
    assert [x.text for x in kept].count("ja digga") == 3 and len(kept) == 7
    assert dropped == {"duplicate": 1}
    assert len("ja digga") < DEFAULT_DEDUP_MIN_CHARS <= len(paste)


def ex(session: str, start_min: float = 0, minutes: float = 10, chat: str = "c1") -> Example:
    start = T0 + timedelta(minutes=start_min)
    return Example(session=session, kind="chat", turns=(Turn("assistant", "a", session),), start=start,
                   end=start + timedelta(minutes=minutes), chat=chat)


def test_time_split_holds_out_the_latest_sessions():
    examples = [ex(f"s{i}", start_min=60 * i) for i in range(20) for _ in range(2)]
    split = split_by_time(examples, 0.1)
    assert {e.session for e in split.val} == {"s18", "s19"} and not split.left_out
    assert len(split.train) == 36 and split.cut == T0 + timedelta(minutes=60 * 18)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 600), st.integers(1, 3)), min_size=2, max_size=60),
       st.floats(0.05, 0.9))
def test_every_val_session_starts_after_every_train_session_ended(spans, fraction):
    examples = [ex(f"s{i}", start, length) for i, (start, length, copies) in enumerate(spans) for _ in range(copies)]
    split = split_by_time(examples, fraction)
    assert len(split.train) + len(split.val) + len(split.left_out) == len(examples)
    if split.val:
        assert split.train, "something always trains"
        assert max(e.end for e in split.train) < min(e.start for e in split.val)
        sessions = {e.session for e in examples}
        if len(sessions) > 1:
            assert not {e.session for e in split.train} & {e.session for e in split.val}


def test_time_split_cuts_where_it_leaves_out_fewest():
    # Ten short sessions, then one long one overlapping the next two: cutting before the long
    # one's overlap leaves nothing out.
    examples = [ex(f"s{i}", 60 * i) for i in range(10)]
    examples += [ex("long", 600, 150), ex("a", 660), ex("b", 720), ex("c", 800)]
    split = split_by_time(examples, 0.25)
    assert not split.left_out
    assert max(e.end for e in split.train) < min(e.start for e in split.val)


def test_one_session_lends_its_last_window_to_val_and_tiny_sets_stay_whole():
    one_session = [ex("only"), ex("only"), Example("only", "chat", (Turn("assistant", "a", "last"),), T0, T0)]
    split = split_by_time(one_session, 0.1)
    assert len(split.train) == 2 and [e.turns[0].content for e in split.val] == ["last"]
    assert split_by_time([ex("a")], 0.5).val == []
    assert split_by_time([ex("a"), ex("b", 30)], 0.0).val == []
    split = split_by_time([ex("a"), ex("b", 30), ex("c", 60)], 0.999)
    assert split.train and split.val


def test_chat_split_holds_out_whole_chats_by_seed():
    examples = [ex(f"{c}{i}", 10 * i, chat=c) for c in "abcdefghij" for i in range(5)]
    split = split_by_chat(examples, 0.2, seed=1)
    assert split == split_by_chat(examples, 0.2, seed=1)
    held = {e.chat for e in split.val}
    assert 2 <= len(held) <= 3 and not held & {e.chat for e in split.train}
    assert any({e.chat for e in split_by_chat(examples, 0.2, seed=s).val} != held for s in range(2, 6))


def test_weight_and_learnt_turns():
    chat = Example("c", "chat", (Turn("user", "n", "hi"), Turn("assistant", "a", "short")))
    assert chat.record() == {"messages": [{"role": "user", "name": "n", "content": "hi"},
                                          {"role": "assistant", "name": "a", "content": "short"}]}
    assert Example("c", "chat", chat.turns, weight=2.5).record()["weight"] == 2.5
    assert chat.learnt == ["short"]
    assert Example("c", "chat", chat.turns, train_all=True).learnt == ["hi", "short"]


def test_what_is_an_acknowledgement():
    for text in ["ok", "OK!", "okkk", "k", "kk", "yes", "Yesss", "yep", "lol", "LOLOL", "hahaha", "jajaja", "👍",
                 "👍🏽", "❤️", "😂😂😂", "ok 👍", "lol 😂", "sí", "oui", "ja", "thx", "mhm", "uh-huh"]:
        assert is_ack(text), text
    for text in ["no", "maybe", "ok then", "Tuesday", "ok, see you at 9", "...", "?", "", "ok?! why"]:
        assert not is_ack(text), text


def test_runs_of_the_owners_acks_are_capped():
    msgs = [
        m("Noor", "so the balloon", 0 * MIN), m("Ada", "ok", 1 * MIN),
        m("Noor", "went up", 2 * MIN), m("Ada", "lol", 3 * MIN),
        m("Noor", "and then", 4 * MIN), m("Ada", "👍", 5 * MIN),  # the third in a row
        m("Ada", "k", 5 * MIN + timedelta(seconds=5)),  # the fourth
        m("Noor", "it popped", 6 * MIN), m("Ada", "no way, at what height?", 7 * MIN),  # ends the run
        m("Noor", "30 km", 8 * MIN), m("Ada", "ok", 9 * MIN),
        m("Ada", "ok", 2 * MIN, chat="c2"), m("Ada", "ok", 3 * MIN, chat="c2"),  # another chat: a new run
        m("Noor", "back", 50 * MIN, chat="c2"), m("Ada", "yes", 51 * MIN, chat="c2"),  # after a silence: new run
    ]
    ordered = sorted(msgs, key=lambda x: (x.chat_id, x.ts))
    acks = AckRuns(2, gap_minutes=30)
    kept = [x.text for x in ordered if acks.keep(x)]
    assert kept == ["so the balloon", "ok", "went up", "lol", "and then", "it popped", "no way, at what height?",
                    "30 km", "ok", "ok", "ok", "back", "yes"]
    assert acks.dropped == 2
    off = AckRuns(None)
    assert [x.text for x in ordered if off.keep(x)] == [x.text for x in ordered] and off.dropped == 0
    none = AckRuns(0)
    assert sum(none.keep(x) for x in ordered) == len(ordered) - 8 and none.dropped == 8


def test_all_speakers_makes_examples_of_sessions_without_the_owner():
    msgs = [m("Noor", "lunch?", 0 * MIN), m("Sam", "yes", MIN), m("Noor", "noon", 2 * MIN)]
    sessions = split_sessions(msgs)
    assert chat_examples(sessions) == []
    (only,) = chat_examples(sessions, all_speakers=True)
    assert [t.content for t in only.turns] == ["lunch?", "yes", "noon"] and only.record()["train"] == "all"
