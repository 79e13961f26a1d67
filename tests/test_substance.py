"""Substance beside voice (issue 49, item 1): what a persona's replies and musings say beyond its
owner's commonest words, the says-little verdict, and where the figures land (the report, the
bundle, eval's output, voice-of-flight, the flight report).
"""

from __future__ import annotations

import json
import tomllib

import pytest

from host_training import report as R
from host_training.__main__ import main
from host_training.evaluate import voice as V
from host_training.evaluate import voice_of_flight as VF
from host_training.train.tokenizer import load_conversations
from sim.bench.report.musing_report import describe_musings, musings_section
from stratoecho import substance as S
from stratoecho.bundle import load_bundle
from stratoecho.musing_quality import Musing, MusingFacts
from tests.conftest import ROOT
from tests.test_eval_report import _authorship, _manifest, assert_tables_are_whole

# The German persona of issue 49, as a friend's twenty messages were answered.
COLLAPSED = ["ja", "haha", "ich hab keine", "ich hab keine woche", "ich hab nur gut", "ja digga", "ja", "haha",
             "ich hab keine", "Ja!", "ich hab keine woche", "haha", "ja digga", "ich hab nur gut", "ja", "digga",
             "ich hab keine", "haha", "ja", "ja digga"]


def turns(conversations, role="assistant"):
    return [m["content"] for c in conversations for m in c if m["role"] == role]


@pytest.fixture(scope="module")
def german(tmp_path_factory):
    """The German sample owner's data through the real `prepare`: (fillers, held-out turns, training messages)."""
    out = tmp_path_factory.mktemp("corpus_de") / "data"
    corpus = ROOT / "samples" / "corpus_de"
    assert main(["prepare", str(corpus / "telegram"), str(corpus / "whatsapp"), "--owner", "user7770101",
                 "--owner", "Jannik Wolter", "--out", str(out)]) == 0
    own = V.training_messages(load_conversations(out / "train.jsonl"))[0]
    return S.fillers(own), turns(load_conversations(out / "val.jsonl")), own


# ----------------------------------------------------------------------------- the measures
def test_words_fillers_and_what_is_said_beyond_them():
    assert S.words("Ja DIGGA, call <PHONE_1> at 21:40 — don't!") == ["ja", "digga", "call", "at", "don't"]
    assert S.fillers(["ja digga", "Ja ok", "ok <PHONE_1> ok", "digga"], n=2) == ["ok", "ja"]  # ties: first seen
    fillers = frozenset(S.fillers(["ja digga ich hab", "haha ja", "ich hab das"]))
    assert S.words_beyond("ich hab Mücke zum Tierarzt gebracht", fillers) == 4
    assert S.filler_only("Ja digga!!", fillers) and S.filler_only("😂", fillers) and S.filler_only("", fillers)
    assert not S.filler_only("ja digga mücke", fillers)
    assert S.fold("Ja  DIGGA!!") == S.fold("ja digga") and S.distinct_share(["Ja!", "ja", "nein"]) == 2 / 3
    assert S.distinct_share([]) is None and S.distinct_2(["ja", "haha"]) is None
    assert S.distinct_2(["der ballon steigt", "der ballon fällt"]) == 0.75
    m = S.measure(["ja digga", "ich hab Mücke", "Ja digga."], fillers)
    assert (m.texts, m.words_beyond, m.filler_only_share, m.distinct_share) == (3, 1 / 3, 2 / 3, 2 / 3)
    assert S.measure([], fillers) == S.Substance(0)
    # One long post counts as a long reply, not as ten: each text's words beyond count up to MAX_WORDS_A_TEXT.
    post = " ".join(f"wort{chr(97 + i % 26)}" for i in range(200))
    assert S.words_beyond(post, fillers) == 200 and S.measure([post, "ja"], fillers).words_beyond == S.MAX_WORDS_A_TEXT / 2
    assert S.measure(["ja"], []).words_beyond is None  # no fillers known: nothing to count beyond


def test_a_collapsed_persona_says_little_beside_its_owner_and_his_own_turns_do_not(german):
    """The issue's figures reproduced on the German sample owner: his held-out turns carry several
    words beyond his 60 commonest, the collapsed persona's replies well under one, and 65 % of them
    are distinct; it says little, he and a varied set of replies do not."""
    fillers, held_out, own = german
    assert len(fillers) == S.FILLERS and {"ja", "digga", "ich", "hab"} <= set(fillers)
    owner = S.measure(held_out, fillers)
    assert owner.words_beyond >= 3 and owner.distinct_share >= 0.9
    collapsed = S.measure(COLLAPSED, fillers)
    assert collapsed.words_beyond < 0.5 and collapsed.distinct_share == 0.35 and collapsed.filler_only_share >= 0.5
    assert S.says_little(collapsed, owner) is True
    why = S.shortfalls(collapsed, owner)
    assert len(why) == 2 and "under 50 % of the owner's" in why[0] and "35 % of its texts distinct, under 80 %" in why[1]
    assert S.says_little(owner, owner) is False
    varied = S.measure([t for t in own if len(t) > 30][:40], fillers)
    assert S.says_little(varied, owner) is False and S.shortfalls(varied, owner) == []


def test_the_rule_at_its_bars():
    owner = S.Substance(30, words_beyond=6.4, distinct_share=1.0)
    assert S.says_little(S.Substance(20, words_beyond=3.2, distinct_share=0.8), owner) is False  # both at the bar
    assert S.says_little(S.Substance(20, words_beyond=3.1, distinct_share=1.0), owner) is True
    assert S.says_little(S.Substance(20, words_beyond=9.0, distinct_share=0.75), owner) is True
    # An owner who repeats himself more than the bar allows sets the bar at his own share.
    repeating = S.Substance(30, words_beyond=2.0, distinct_share=0.7)
    assert S.distinct_bar(repeating) == 0.7 and S.says_little(S.Substance(9, 1.5, 0.72), repeating) is False
    assert S.says_little(S.Substance(0), owner) is None  # nothing said, nothing judged
    assert S.says_little(S.Substance(5, 0.0, 0.2), S.Substance(0)) is None  # the owner's rate unknown


def test_a_musing_of_this_moment_is_grounded_in_what_its_prompt_told():
    up = MusingFacts(phase="ascent", alt_m=21400, temp_c=-55.2, sun_up=True)
    musings = [Musing("Rising at 21 km, the air at -55 °C.", up), Musing("ich weiß nich digga", up),
               Musing("I feel like a little girl in the middle of a room", up), Musing("Sinking at 3 km.", up)]
    assert S.of_this_moment(musings) == 0.25 and S.of_this_moment([]) is None
    m = S.measure([x.text for x in musings], ["i", "a", "the"], musings)
    assert m.of_this_moment == 0.25 and m.texts == 4


# ----------------------------------------------------------------------------- the build's report
def _result(fillers, owner_turns, flown):
    return R.substance_result(fillers, owner_turns, [("base (untuned) Q4_K_M", "base", owner_turns[:10]),
                                                     ("persona Q4_K_M (flown)", "flown", flown)])


def test_the_report_marks_a_persona_that_says_little_in_both_tables(german):
    fillers, held_out, _ = german
    result = _result(fillers, held_out, COLLAPSED)
    md = R.render_report(_manifest(), [], None, None, R.Redactor(), voice=_authorship(), substance=result)
    assert md.index("## Whose voice") < md.index("## Substance") < md.index("## Style")
    section = md.split("## Substance")[1].split("## Style")[0]
    flown = next(line for line in section.splitlines() if line.startswith("| persona Q4\\_K\\_M (flown) |"))
    assert flown.endswith("| **says little** |") and "| 35 % |" in flown
    assert next(line for line in section.splitlines() if line.startswith("| owner, held-out |")).endswith("| the owner |")
    assert "| base (untuned) Q4\\_K\\_M | 10 |" in section and "says something |" in section
    assert "**says little** beside the owner: 0.3 words" in section and '"ja"' in section  # the warning, and the fillers named
    voice = md.split("## Whose voice")[1].split("## Substance")[0]
    assert "words beyond the owner's fillers, a text |" in voice
    row = next(line for line in voice.splitlines() if line.startswith("| persona Q4\\_K\\_M (flown) | **flown**"))
    assert row.endswith("**says little** |")  # never the owner's voice without the substance beside it
    assert "| owner, held-out | ceiling |" in voice and "| others, held-out | floor |" in voice
    assert_tables_are_whole(md)
    # The owner's own turns as the flown replies: nothing is marked.
    fine = _result(fillers, held_out, held_out)
    md = R.render_report(_manifest(), [], None, None, R.Redactor(), voice=_authorship(), substance=fine)
    assert not any(line.endswith("**says little** |") or "beside the owner:" in line for line in md.splitlines())
    assert fine.warnings() == [] and fine.eval_figures()["says_little"] is False


def test_the_figures_for_the_bundle_and_for_json(german):
    fillers, held_out, _ = german
    result = _result(fillers, held_out, COLLAPSED)
    figures = result.eval_figures()
    assert set(figures) == {"substance_words_beyond", "substance_distinct_share", "substance_distinct2",
                            "substance_filler_only_share", "says_little", "owner_substance_words_beyond"}
    assert figures["says_little"] is True and figures["substance_distinct_share"] == 0.35
    assert figures["owner_substance_words_beyond"] == round(S.measure(held_out, fillers).words_beyond, 4)
    summary = json.loads(json.dumps(result.summary()))
    assert [s["role"] for s in summary["sets"]] == ["ceiling", "base", "flown"]
    assert summary["sets"][2]["says_little"] is True and summary["sets"][0]["says_little"] is None
    assert summary["fillers"] == fillers and summary["min_distinct_share"] == 0.8
    nothing = R.substance_result([], held_out, [("persona", "flown", COLLAPSED)])
    assert nothing.sets == [] and nothing.eval_figures() == {} and "Not measured" in "\n".join(nothing.lines())


def test_the_build_records_the_owners_fillers_and_the_substance(tiny_bundle):
    m = load_bundle(tiny_bundle).manifest
    assert m.owner is not None and 0 < len(m.owner.fillers) <= S.FILLERS and m.owner.words_beyond > 0
    assert {"substance_words_beyond", "substance_distinct_share", "substance_distinct2", "substance_filler_only_share",
            "owner_substance_words_beyond"} <= set(m.eval) and isinstance(m.eval["says_little"], bool)
    assert m.eval["owner_substance_words_beyond"] == m.owner.words_beyond
    md = (tiny_bundle / "report.md").read_text(encoding="utf-8")
    assert "## Substance" in md and "| persona Q4\\_K\\_M (flown) |" in md.split("## Substance")[1]


def test_eval_prints_the_substance_and_puts_it_in_its_json(tiny_bundle, chat_data_dir, tmp_path, capsys):
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    out = tmp_path / "eval.json"
    assert main(["eval", str(bundle), "--data", str(chat_data_dir), "--prompts", "4", "--samples", "0",
                 "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "substance (words beyond the owner's" in printed and "owner, held-out" in printed
    sets = {s["role"]: s for s in json.loads(out.read_text())["substance"]["sets"]}
    assert set(sets) == {"ceiling", "flown"} and sets["flown"]["texts"] > 0
    assert ("warning: persona" in printed and "says little" in printed) == sets["flown"]["says_little"]


def test_an_old_bundle_without_owner_still_reads(tmp_path):
    from stratoecho.bundle import write_bundle

    path = write_bundle(tmp_path / "old", _manifest())
    assert "[owner]" not in path.read_text() and load_bundle(tmp_path / "old", verify=False).manifest.owner is None
    # The flight report then measures what needs no owner, and says why the rest is missing.
    from sim.bench.report.substance_report import substance_section

    s = substance_section([Musing("ja digga"), Musing("Rising at 21 km.", MusingFacts(alt_m=21400))], tmp_path / "old")
    assert s["aired"] == 2 and s["words_beyond"] is None and s["says_little"] is None
    assert s["distinct_share"] == 1.0 and s["of_this_moment"] == 0.5 and "no [owner] fillers" in s["note"]


# ----------------------------------------------------------------------------- flights
def _flight(root, texts, facts=None):
    root.mkdir(parents=True)
    lines = [json.dumps({"event": "persona_language_unguarded", "language": "es", "asked_in": "en",
                         "reads": "numbers and units", "level": "warning"})]
    lines += [json.dumps({"seq": i, "text": t, "event": "musing", "t_s": 60.0 * i, "boot": 1, "finish": "stop",
                          **({"facts": facts.to_dict()} if facts else {})}) for i, t in enumerate(texts)]
    (root / VF.LOG).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_voice_of_flight_prints_the_substance_beside_the_voice(corpus_data_dir, tmp_path, capsys):
    val = load_conversations(corpus_data_dir / "val.jsonl")
    persona = _flight(tmp_path / "p1", turns(val))
    base = _flight(tmp_path / "b1", ["ok", "haha", "ok", "yes", "ok haha"] * 4)
    said = VF.substance(corpus_data_dir, [persona], [base])
    assert [s.role for s in said.sets] == ["ceiling", "flown", "control"]
    assert said.says_little(said.find("flown")) is False and said.says_little(said.find("control")) is True
    assert main(["voice-of-flight", "--data", str(corpus_data_dir), str(persona), "--base", str(base)]) == 0
    printed = capsys.readouterr().out
    assert "| persona p1 |" in printed and "| base b1 | 20 |" in printed and "**says little** |" in printed
    assert "of this moment |" in printed and "warning: base b1: says little beside the owner" in printed
    assert main(["voice-of-flight", "--data", str(corpus_data_dir), str(persona), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["sets"] and [s["role"] for s in figures["substance"]["sets"]] == ["ceiling", "flown"]


def test_the_flight_report_says_what_the_musings_say_and_that_the_language_is_unguarded(tmp_path):
    from stratoecho.bundle import OwnerSection, write_bundle

    bundle = tmp_path / "persona"
    owner = OwnerSection(fillers=["ja", "digga", "ich", "hab", "nich", "weiß"], words_beyond=6.4)
    write_bundle(bundle, _manifest().model_copy(update={"owner": owner}))
    up = MusingFacts(phase="ascent", alt_m=21400, sun_up=True)
    flight = _flight(tmp_path / "flight", ["ja digga", "ich weiß nich", "ja digga", "Rising at 21 km."], up)
    section = musings_section(flight, bundle=bundle)
    s = section["substance"]
    assert (s["aired"], s["fillers"], s["owner_words_beyond"], s["says_little"]) == (4, 6, 6.4, True)
    assert s["distinct_share"] == 0.75 and s["of_this_moment"] == 0.25 and s["filler_only_share"] == 0.75
    assert section["claims"]["unguarded"] == {"language": "es", "reads": "numbers and units", "asked_in": "en"}
    words = "\n".join(describe_musings(section))
    assert "substance  4 aired: 0.8 words a musing beyond the owner's 6 commonest (the owner's own turns 6.4)" in words
    assert "says little beside its owner, whatever its voice" in words and "of this moment 25 %" in words
    assert "UNGUARDED: the truth guard has no claim words for Spanish (es)" in words
    assert "numbers and units only" in words
    # A flight in a guarded language has no such line.
    (flight / "payload.log").write_text("\n".join(line for line in (flight / "payload.log").read_text().splitlines()
                                                  if "unguarded" not in line) + "\n")
    section = musings_section(flight, bundle=bundle)
    assert section["claims"]["unguarded"] is None and "UNGUARDED" not in "\n".join(describe_musings(section))


def test_sim_report_reads_the_substance_against_the_flown_bundle(tmp_path, capsys):
    """`python -m sim report DIR` finds the bundle report.json names and prints the lines."""
    from sim.__main__ import main as sim_main
    from stratoecho.bundle import OwnerSection, write_bundle

    bundle = tmp_path / "persona"
    write_bundle(bundle, _manifest().model_copy(update={"owner": OwnerSection(fillers=["ja"], words_beyond=2.0)}))
    flight = _flight(tmp_path / "flight", ["ja", "ja ja", "ja"])
    (flight / "report.json").write_text(json.dumps({"persona": str(bundle), "seed": 1}))
    assert sim_main(["report", str(flight), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["musings"]["substance"]["says_little"] is True and r["musings"]["substance"]["owner_words_beyond"] == 2.0
    assert tomllib.loads((bundle / "persona.toml").read_text())["owner"]["fillers"] == ["ja"]
