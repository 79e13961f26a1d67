"""The report's "Language and repetition" section (host_training/report/replies.py): replies
in another language than the owner's, and replies that collapse into one, are warned about."""

from __future__ import annotations

from host_training import report

OWNER = ["mücke hat heute nacht die pflanze umgeschmissen", "ja digga", "bin dabei", "ich komm um 8",
         "haha das is wie ich", "keine ahnung ey ich frag ute", "hab grad 3 schläuche geflickt", "safe",
         "ich bring kaffee mit", "die box is fertig"]


def result(*sets: tuple[str, str, list[str]], owner_language: str | None = "de", note: str | None = None):
    figures = [report.reply_figures("owner held-out", "owner", OWNER, owner_language)]
    figures += [report.reply_figures(label, role, texts, owner_language) for label, role, texts in sets]
    return report.LanguageResult(owner_language, figures, note)


def test_replies_in_the_owners_language_that_differ_pass():
    german = ["ich hab keine ahnung", "ja digga das is gut", "mücke schläft auf dem laptop", "bin gleich da",
              "ich bring chips mit", "haha", "wir fahren um 7 los", "die box hält das aus", "ich hab hunger",
              "mama hat angerufen und ich war nich da", "is schon spät", "kommst du morgen mit"]
    r = result(("persona Q4_K_M (flown)", "flown", german))
    assert r.warnings() == []
    text = "\n".join(report.language_lines(r))
    assert "## Language and repetition" in text and "The owner writes German (de)" in text
    assert "none collapses into one reply" in text
    assert r.eval_figures() == {"reply_language": "de", "distinct_reply_share": 1.0, "replies_in_owner_language": 1.0}


def test_english_replies_to_a_german_owner_are_warned_about():
    english = ["I am going to the station now", "that is a good idea", "the weather is nice today",
               "I think we should go", "what do you want to do", "see you there", "it was great", "no idea",
               "I have to work tomorrow", "this is the best day", "you are right about that", "is it cold"]
    r = result(("base (untuned) Q4_K_M", "base", english), note="the base x does not write German (de)")
    (warning,) = r.warnings()
    assert warning.startswith("base (untuned) Q4_K_M: **its replies are not in the owner's language** (German)")
    assert "most are English" in warning
    text = "\n".join(report.language_lines(r))
    assert "Build said: the base x does not write German (de)." in text


def test_a_chat_that_collapses_into_one_reply_is_warned_about():
    # issue 40: the same reply 8 times in 10
    collapsed = ["ja digga"] * 8 + ["ich hab das"] * 6 + ["bin dabei"] * 6
    r = result(("persona Q4_K_M (flown)", "flown", collapsed))
    (warning,) = r.warnings()
    assert "**its replies collapse**: 3 different of 20 (15 %" in warning and "8 times" in warning
    assert r.eval_figures()["distinct_reply_share"] == 0.15


def test_too_few_replies_that_say_their_language_are_not_judged():
    r = result(("tiny", "flown", ["", "", "haha", "ich hab das", "ok", "xyz", "abc", "qq", "ww", "ee"]))
    assert any("only 1 of its 10 replies say enough to tell" in w for w in r.warnings())


def test_repeats_are_compared_without_case_spacing_or_end_punctuation():
    assert report.replies.fold("Ja  DIGGA!!") == report.replies.fold("ja digga") == "ja digga"
    f = report.reply_figures("x", "flown", ["Ja digga.", "ja digga", "JA DIGGA!"], "de")
    assert f.distinct == 1 and f.top == ("ja digga", 3)


def test_the_section_is_left_out_when_nothing_was_measured():
    assert report.language_lines(None) == []
    assert report.language_lines(report.LanguageResult("de", [])) == []


def test_private_values_in_a_shown_reply_are_redacted():
    r = result(("persona", "flown", ["ruf mich an 0176 555 0101"] * 5))
    text = "\n".join(report.language_lines(r, redact=lambda t: t.replace("0176 555 0101", "<PHONE>")))
    assert "0176 555 0101" not in text and "\\<PHONE\\>" in text
