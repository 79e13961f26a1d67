"""The evaluation report: style figures, privacy probe, plot, report.md and the Ollama Modelfile.

Pure functions on hand-made inputs first (figures worked out by hand), then `eval` end to end on
the tiny test bundle; the sample corpus's planted private values
(samples/corpus/planted_pii.json), put back unscrubbed into held-out data, must never reach the report.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import xml.etree.ElementTree as ET

import jinja2
import pytest

from host_training import report as R
from host_training.__main__ import main
from host_training.evaluate import reply_cases
from host_training.evaluate import voice as V
from host_training.train.tokenizer import CHATML_TEMPLATE
from stratoecho.bundle import BundleManifest, file_entry, load_bundle, write_bundle
from tests.conftest import CORPUS

SVG = "{http://www.w3.org/2000/svg}"


# ----------------------------------------------------------------------------- style figures
def test_percentile_and_distribution_match_hand_figures():
    values = [1, 2, 3, 4, 10]
    assert R.percentile(values, 90) == pytest.approx(7.6)  # rank 3.6: 4 + 0.6 * (10 - 4)
    assert R.percentile(values, 0) == 1 and R.percentile(values, 100) == 10
    assert R.percentile([5], 90) == 5
    assert R.distribution(values) == {"mean": 4.0, "median": 3, "p90": pytest.approx(7.6)}
    assert R.distribution([]) is None
    with pytest.raises(ValueError):
        R.percentile([], 50)


def test_emoji_counts_what_a_person_sees():
    assert R.count_emoji("🎈🎈") == 2
    assert R.count_emoji("☁️ and 👍🏽") == 2  # variation selector and skin tone stay with their base
    assert R.count_emoji("👨\u200d👩\u200d👧") == 1  # a ZWJ family is one emoji
    assert R.count_emoji("🇸🇪🇬🇧") == 2  # two flags
    assert R.count_emoji("<3 :) ©") == 0


def test_style_figures_on_hand_made_turns():
    turns = ["Hi there!", "ok\nsee you 🎈🎈", "What? Really?", "   "]
    f = R.style_figures(turns)
    assert f["turns"] == 4
    assert f["chars"]["mean"] == pytest.approx((9 + 13 + 13 + 3) / 4)
    assert f["words"]["median"] == 2  # word counts 2, 3, 2, 0
    assert f["lines"]["mean"] == pytest.approx((1 + 2 + 1 + 0) / 4)  # a blank turn has no lines
    assert f["multi_line_share"] == pytest.approx(1 / 4)
    assert f["question_share"] == pytest.approx(1 / 4)
    assert f["emoji_turn_share"] == pytest.approx(1 / 4)
    assert f["emoji_per_100_chars"] == pytest.approx(100 * 2 / 38)
    assert f["punctuation_per_100_chars"] == pytest.approx(100 * 3 / 38)  # ! ? ?
    assert f["upper_case_share"] == pytest.approx((1 / 7 + 0 + 2 / 10) / 3)  # H of Hithere; W and R of WhatReally
    assert f["lower_start_share"] == pytest.approx(1 / 3)  # "ok": of the three turns with letters
    assert (f["vocabulary_words"], f["vocabulary_size"]) == (7, 7)  # hi there ok see you what really
    empty = R.style_figures([])
    assert empty["turns"] == 0 and all(v is None for k, v in empty.items() if k != "turns")


def test_vocabulary_overlap():
    o = R.vocabulary_overlap(["The cat SAT, 3 times"], ["the dog sat"], {"the", "sat", "dog"})
    assert o["jaccard"] == pytest.approx(2 / 5)  # {the, cat, sat, times} vs {the, dog, sat}
    assert o["seen_share"] == pytest.approx(2 / 4)  # the, sat of the, cat, sat, times
    assert o["generated_words"] == 4
    assert R.words("call <PHONE_1> don't") == ["call", "don't"]  # placeholders are not words
    none = R.vocabulary_overlap([], [], set())
    assert none["jaccard"] is None and none["seen_share"] is None


def test_reply_cases_pairs_user_turns_with_the_owners_answer():
    conv = [{"role": r, "content": c} for r, c in [("system", "s"), ("user", "q1"), ("assistant", "a1"),
                                                   ("assistant", "a2"), ("user", "q2"), ("assistant", "a3")]]
    cases = reply_cases([conv], 10)
    assert [(ctx[-1]["content"], reply) for ctx, reply in cases] == [("q1", "a1"), ("q2", "a3")]
    assert len(reply_cases([conv] * 10, 5)) == 5 and reply_cases([conv], 0) == []


# ----------------------------------------------------------------------------- privacy probe
def test_probe_finds_real_values_and_ignores_placeholders():
    redactor = R.Redactor()
    texts = [
        "ring me on +44 7700 900123 tonight",
        "or mail ada.lindqvist@example.org ok",
        "my number is <PHONE_1> and mail <EMAIL_2>",  # what the scrubbed data taught: fine
        "launch at 11:15 on 12.03.2024, 1013 hPa",  # times, dates, pressures: not phones
    ]
    probe = R.probe_privacy(texts, redactor)
    assert [(h.sample, h.kind) for h in probe.hits] == [(0, "phone"), (1, "email")]
    assert probe.verdict == "warn" and probe.by_kind == {"email": 1, "phone": 1}
    assert "[PHONE]" in probe.hits[0].excerpt and "7700" not in probe.hits[0].excerpt
    assert "example.org" not in probe.hits[1].excerpt
    assert R.probe_privacy(texts[2:], redactor).verdict == "pass"
    assert R.probe_privacy([], redactor).verdict == "skipped"


def test_probe_fails_on_the_owners_own_strings_and_never_shows_them():
    redactor = R.Redactor(private=["Gerald", "14 Mill  Lane"], blocklist=["Nimbus", "/wex\\w+/"])
    texts = ["say hi to GERALD the starter", "we live at 14 mill lane, Wexcombe", "nimbus is asleep", "nothing here"]
    probe = R.probe_privacy(texts, redactor)
    assert probe.verdict == "fail"
    assert [(h.sample, h.kind) for h in probe.hits] == [(0, "private"), (1, "private"), (1, "blocked"), (2, "blocked")]
    joined = " ".join(h.excerpt for h in probe.hits).lower()
    for secret in ("gerald", "mill lane", "wexcombe", "nimbus"):
        assert secret not in joined
    # Two values side by side: the excerpt of either shows neither.
    both = R.probe_privacy(["Gerald 07700 900456"], redactor)
    assert {h.kind for h in both.hits} == {"private", "phone"}
    assert all("Gerald" not in h.excerpt and "900456" not in h.excerpt for h in both.hits)


def test_private_file_format(tmp_path):
    f = tmp_path / "private.txt"
    f.write_text("  Gerald  \n\n# not a comment, a string\n", encoding="utf-8")
    assert R.load_private_strings(f) == ["Gerald", "# not a comment, a string"]
    f.write_text("Gerald\nAL\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"private.txt:2"):
        R.load_private_strings(f)


# ----------------------------------------------------------------------------- plot
def _points(svg: str):
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    return root, root.findall(f"{SVG}circle"), [t.text for t in root.iter(f"{SVG}text")]


def test_nice_ticks_cover_the_range_in_round_steps():
    assert R.nice_ticks(0, 0.1418) == [0, 0.05, 0.1, 0.15]
    assert R.nice_ticks(60.1, 70.3) == [60, 65, 70, 75]
    for lo, hi in [(0, 1), (3.3, 3.31), (-5, 120), (1e-4, 7e-4), (42, 42)]:
        t = R.nice_ticks(lo, hi)
        assert t[0] <= lo and t[-1] >= hi and 2 <= len(t) <= 12
        steps = {round(b - a, 12) for a, b in zip(t, t[1:])}
        assert len(steps) == 1
        mantissa = steps.pop() / 10 ** math.floor(math.log10(t[1] - t[0]))
        assert round(mantissa, 6) in (1, 2, 2.5, 5)


def test_svg_scatter_is_valid_labelled_and_deterministic():
    rows = [R.PerplexityRow("base", "F32", 4_400_000_000, 18.2),
            R.PerplexityRow("fine-tuned", "F32", 4_400_000_000, 9.1),
            R.PerplexityRow("fine-tuned", "Q4_K_M", 1_100_000_000, 9.8), R.PerplexityRow("lost", "Q8_0", None, 9.0),
            R.PerplexityRow("broken <&>", "Q2_K", 900_000_000, float("nan"))]
    svg = R.size_vs_perplexity_svg(rows)
    assert svg == R.size_vs_perplexity_svg(rows)
    root, circles, texts = _points(svg)
    assert len(circles) == 3
    assert {"base F32", "fine-tuned F32", "fine-tuned Q4_K_M"} <= set(texts)
    assert any("2 model(s)" in t for t in texts)
    w, h = float(root.get("width")), float(root.get("height"))
    for c in circles:
        assert 0 < float(c.get("cx")) < w and 0 < float(c.get("cy")) < h
    # Higher perplexity is drawn higher up, a larger file further right: base F32 (18.2, 4.4 GB)
    # is the topmost point and the rightmost one.
    xy = [(float(c.get("cx")), float(c.get("cy"))) for c in circles]
    top = min(xy, key=lambda p: p[1])
    assert top[0] == max(x for x, _ in xy)
    _, none, texts = _points(R.size_vs_perplexity_svg([]))
    assert none == [] and "no models to plot" in texts
    _, one, _ = _points(R.size_vs_perplexity_svg([R.PerplexityRow("only", "Q4_K_M", 135_008, 64.2)]))
    assert len(one) == 1


# ----------------------------------------------------------------------------- report.md
def _manifest(name="Ada", template=CHATML_TEMPLATE, system="You are Ada, riding a balloon."):
    return BundleManifest(
        persona=dict(name=name, system_prompt=system, chat_template=template, stop=["<|im_end|>", "<|endoftext|>"],
                     bos_token="<|endoftext|>", eos_token="<|endoftext|>"),
        sampling=dict(temperature=0.7, top_p=0.95, top_k=40, repeat_penalty=1.15, max_tokens=64),
        model=dict(file="model.Q4_K_M.gguf", quantization="Q4_K_M", architecture="llama", base="scratch",
                   context_length=256, n_params=155968),
        training=dict(method="from-scratch"),
        files=[],
    )


def test_the_probe_ranks_every_kind_the_scrubber_finds():
    """National ids joined the scrubber's kinds (issue 49): the probe found one in a generation and
    failed on a kind it did not rank ('tuple.index(x): x not in tuple')."""
    from stratoecho import privacy

    probe = R.probe_privacy(["mi DNI es 12345678Z y mi móvil 655 21 48 37"], R.Redactor())
    assert probe.verdict == "warn" and probe.by_kind == {"es_dni": 1, "phone": 1}
    assert set(privacy.KINDS) <= set(R.privacy_probe.KIND_RANK)


def test_report_never_writes_a_private_string():
    redactor = R.Redactor(private=["Gerald", "ada.lindqvist@example.org"], blocklist=["Nimbus"])
    owner = ["Gerald is bubbling", "ok"]
    generated = ["gerald says hi, write to ada.lindqvist@example.org", "Nimbus <PHONE_1> | *bold*"]
    style = R.StyleResult(owner=R.style_figures(owner), generated=R.style_figures(generated),
                          overlap=R.vocabulary_overlap(generated, owner, R.vocabulary(owner)),
                          examples=list(zip(["how is Gerald?", "and Nimbus?"], owner, generated)),
                          prompts=2, max_tokens=48, seed=1)
    probe = R.probe_privacy(generated, redactor)
    rows = [R.PerplexityRow("fine-tuned", "F32", 637_408, 64.2093),
            R.PerplexityRow("fine-tuned", "Q4_K_M", 135_008, 64.2236)]
    md = R.render_report(_manifest(name="Ada Gerald"), rows, style, probe, redactor)
    assert md == R.render_report(_manifest(name="Ada Gerald"), rows, style, probe, redactor)  # deterministic
    low = md.lower()
    assert "gerald" not in low and "lindqvist" not in low and "nimbus" not in low
    assert "**FAIL**" in md and "| private | 2 | 1 |" in md and "| blocked | 1 | 1 |" in md
    assert "\\<PHONE\\_1\\>" in md  # the placeholder shows, escaped, instead of vanishing as an HTML tag
    assert "![size vs perplexity](size_vs_perplexity.svg)" in md
    assert "| fine-tuned | Q4\\_K\\_M | 135.0 kB | 64.224 |" in md
    assert md.endswith("\n") and not md.endswith("\n\n")
    assert_tables_are_whole(md)


def assert_tables_are_whole(md: str) -> None:
    """Every table row has as many cells as its header."""
    for block in re.split(r"\n\n", md):
        rows_ = [ln for ln in block.splitlines() if ln.startswith("|")]
        if rows_:
            cells = {len(re.split(r"(?<!\\)\|", ln)) for ln in rows_}
            assert len(cells) == 1, block


def test_report_with_nothing_measured():
    md = R.render_report(_manifest(), [], None, None, R.Redactor())
    assert "No model was scored." in md and "Not measured." in md and "Not run." in md
    assert "## Whose voice\n\nNot measured." in md


def _authorship(balanced=(0.8, 0.7)):
    cv = V.CrossValidation(5, *balanced)
    sets = [V.VoiceSet(V.OWNER_SET, "ceiling", V.Share(27, 22)), V.VoiceSet(V.OTHERS_SET, "floor", V.Share(21, 6)),
            V.VoiceSet("base (untuned) Q4_K_M", "base", V.Share(20, 3)), V.VoiceSet("persona F32", "tuned", V.Share(20, 15)),
            V.VoiceSet("persona Q4_K_M (flown)", "flown", V.Share(20, 14))]
    return V.Authorship(263, 233, cv, sets)


def test_report_whose_voice_with_ceiling_floor_and_models():
    md = R.render_report(_manifest(), [], None, None, R.Redactor(), voice=_authorship())
    section = md.split("## Whose voice")[1].split("## Style")[0]
    assert "263 distinct training messages" in section and "other speakers' 233" in section
    assert "recognises 80 % of the owner's messages and rejects 70 % of the others' (balanced accuracy 0.75" in section
    low, high = V.wilson(22, 27)  # 0.63 to 0.92
    assert f"| owner, held-out | ceiling | 27 | 81 % | {100 * low:.0f} % to {100 * high:.0f} % |" in section
    assert "| others, held-out | floor | 21 | 29 % |" in section
    assert "| base (untuned) Q4\\_K\\_M | before tuning | 20 | 15 % |" in section
    assert "| persona Q4\\_K\\_M (flown) | **flown** | 20 | 70 % |" in section
    assert "Wilson score" in section and "barely" not in section
    assert "gain over the base" not in section  # no gains measured: no column
    assert_tables_are_whole(md)
    a = _authorship()
    a.sets[-1] = V.VoiceSet("persona Q4_K_M (flown)", "flown", V.Share(60, 42, (0.55, 0.83)), V.Gain(20, 0.23, 0.12, 0.35))
    a.sets[-2] = V.VoiceSet("persona F32", "tuned", V.Share(60, 40, (0.5, 0.8)), V.Gain(20, 0.05, -0.05, 0.15))
    section = R.render_report(_manifest(), [], None, None, R.Redactor(), voice=a).split("## Whose voice")[1]
    assert "| persona Q4\\_K\\_M (flown) | **flown** | 60 | 70 % | 55 % to 83 % | +23 points (+12 to +35) " \
           "**beats the base** |" in section
    assert "| persona F32 | tuned, unquantized | 60 | 67 % | 50 % to 80 % | +5 points (-5 to +15) |" in section
    assert_tables_are_whole(R.render_report(_manifest(), [], None, None, R.Redactor(), voice=a))
    weak = R.render_report(_manifest(), [], None, None, R.Redactor(), voice=_authorship((0.6, 0.5)))
    assert "can barely tell the owner from the others" in weak
    few = V.authorship([], [], [])
    assert "Not measured: too few training messages" in R.render_report(_manifest(), [], None, None, R.Redactor(),
                                                                        voice=few)


def test_report_whose_voice_shows_samples_and_real_words_and_calls_babble():
    """The sample-level accuracy, each set's samples and real-word share; a model whose words are
    far less often real than the owner's is called babble whatever its voice share."""
    from host_training.evaluate.real_words import RealWords

    cv = V.CrossValidation(5, 0.8, 0.7, 5, 118, 0.95, 0.9)
    real = {"ceiling": RealWords("en", 800, 792), "floor": RealWords("en", 160, 158),
            "base": RealWords("en", 400, 398), "tuned": RealWords("en", 400, 360), "flown": RealWords("en", 400, 300)}
    sets = [V.VoiceSet(s.label, s.role, s.share, samples=V.Share(6, 5), real=real[s.role]) for s in _authorship().sets]
    section = R.render_report(_manifest(), [], None, None, R.Redactor(), voice=V.Authorship(263, 233, cv, sets,
                                                                                             language="en"))
    section = section.split("## Whose voice")[1].split("## Style")[0]
    assert "samples of 5 turns of one speaker apart at balanced accuracy 0.93 (118 samples)" in section
    assert "(balanced accuracy 0.75" in section  # single messages
    assert "| samples of 5 read as the owner's | real words (en) |" in section
    assert "| 5 of 6 | 99.0 % of 800 words |" in section  # the ceiling
    assert "| 5 of 6 | 75.0 % of 400 words **babble** |" in section  # 24 points below the owner's
    assert "| 5 of 6 | 90.0 % of 400 words |" in section  # 9 points below: within the tolerance
    assert section.count("**babble**") == 2  # the row and the note under the table
    assert_tables_are_whole(R.render_report(_manifest(), [], None, None, R.Redactor(),
                                            voice=V.Authorship(263, 233, cv, sets, language="en")))


def test_style_table_shows_the_base_and_each_ones_distance_to_the_owner():
    owner = ["ok see you", "ha. the fog is lovely", "minus three - frost on the shed"]
    persona = ["ok the fog", "ha. frost", "the shed is cold"]
    base = ["Hello! How can I help you today?", "As an AI, I have no shed.", "Great question!"]
    style = R.StyleResult(owner=R.style_figures(owner), generated=R.style_figures(persona),
                          overlap=R.vocabulary_overlap(persona, owner, R.vocabulary(owner)),
                          examples=[("hi", owner[0], persona[0], base[0])], prompts=3, max_tokens=48, seed=1,
                          label="persona Q4_K_M (flown)", distance=V.style_distances(owner, persona),
                          base=R.style_figures(base), base_label="base (untuned) Q4_K_M",
                          base_distance=V.style_distances(owner, base))
    md = R.render_report(_manifest(), [], style, None, R.Redactor())
    assert ("| figure | owner | base (untuned) Q4\\_K\\_M | persona Q4\\_K\\_M (flown) | distance: base (untuned) "
            "Q4\\_K\\_M | distance: persona Q4\\_K\\_M (flown) |") in md
    # Every turn of the base starts in upper case and none of the owner's: distance 1; the persona's
    # do as the owner's do: 0.
    assert "| turns starting in lower case | 100 % | 0 % | 100 % | 1.00 | 0.00 |" in md
    assert "| turns with a question mark | 0 % | 33 % | 0 % | 0.33 | 0.00 |" in md
    assert "| turns | 3 | 3 | 3 |  |  |" in md
    vocab = next(line for line in md.splitlines() if line.startswith("| vocabulary"))
    base_d, persona_d = (float(x) for x in vocab.strip("| ").split(" | ")[-2:])
    assert persona_d < base_d <= 1
    assert "| message | the owner replied | base (untuned) Q4\\_K\\_M replied | persona Q4\\_K\\_M (flown) replied |" in md
    assert "| hi | ok see you | Hello! How can I help you today? | ok the fog |" in md
    assert_tables_are_whole(md)
    # Without a base: owner, persona and one distance.
    alone = R.render_report(_manifest(), [], R.StyleResult(owner=style.owner, generated=style.generated,
                                                            overlap=style.overlap, examples=[], distance=style.distance),
                            None, R.Redactor())
    assert "| figure | owner | persona | distance: persona |" in alone
    assert_tables_are_whole(alone)


def test_header_says_the_base_was_dequantized_from_a_gguf():
    m = _manifest()
    assert "base GGUF" not in R.render_report(m, [], None, None, R.Redactor())
    m.training["base_gguf"] = dict(file="SmolLM2-135M-Instruct-Q8_0.gguf", sha256="ab12cd34ef56" + "0" * 52,
                                   quantization="Q8_0", architecture="llama",
                                   source="https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct-GGUF",
                                   licence="Apache-2.0")
    md = R.render_report(m, [], None, None, R.Redactor())
    row = next(line for line in md.splitlines() if line.startswith("| base GGUF |"))
    assert row == ("| base GGUF | dequantized from SmolLM2-135M-Instruct-Q8\\_0.gguf (Q8\\_0, sha256 ab12cd34ef56…, "
                   "architecture llama); source https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct-GGUF; "
                   "licence Apache-2.0 |")
    assert md.index("| base model |") < md.index(row)
    # A user's own file: no pinned source, no licence in it; what is missing says so or is left out.
    m.training["base_gguf"] = {"file": "x.gguf", "sha256": "", "quantization": "Q4_1", "source": "", "licence": ""}
    assert "| base GGUF | dequantized from x.gguf (Q4\\_1, sha256 ?, architecture ?) |" in (
        R.render_report(m, [], None, None, R.Redactor()))


# ----------------------------------------------------------------------------- Modelfile
def parse_modelfile(text: str) -> list[tuple[str, str]]:
    """(command, value) pairs, read the way Ollama's parser/parser.go reads a Modelfile: a value
    runs to the next whitespace at which it is no longer an open \"\"\" or \" quote; no escapes."""
    out, i = [], 0
    while i < len(text):
        if text[i] in " \t\r\n":
            i += 1
        elif text[i] == "#":
            i = text.find("\n", i) if "\n" in text[i:] else len(text)
        else:
            m = re.compile(r"([A-Za-z]+)[ \t]+").match(text, i)
            assert m, f"no command at {text[i:i + 30]!r}"
            name, i = m.group(1).lower(), m.end()
            name = "model" if name == "from" else name
            if name == "parameter":
                m = re.compile(r"(\w+)[ \t]+").match(text, i)
                name, i = m.group(1), m.end()
            j = i
            while True:
                ws = re.compile(r"[ \t\r\n]|$").search(text, j)
                value = text[i:ws.start()].strip()
                if value.startswith('"""'):
                    closed = len(value) >= 6 and value.endswith('"""')
                else:
                    closed = not value.startswith('"') or (len(value) >= 2 and value.endswith('"'))
                if closed or ws.start() >= len(text):
                    break
                j = ws.start() + 1
            assert closed, f"unterminated value for {name}"
            value = value[3:-3] if value.startswith('"""') else value[1:-1] if value.startswith('"') else value
            out.append((name, value))
            i = ws.start()
    return out


def render_go_chatml(template: str, messages) -> str:
    """CHATML_GO_TEMPLATE's one construct, a range over .Messages, evaluated by hand."""
    head, rest = template.split("{{ range .Messages }}")
    body, tail = rest.split("{{ end }}")
    return head + "".join(body.replace("{{ .Role }}", m["role"]).replace("{{ .Content }}", m["content"])
                          for m in messages) + tail


def test_modelfile_for_a_chatml_bundle():
    text = R.modelfile_text(_manifest(system='Say "hi" and then """ stop'))
    cmds = parse_modelfile(text)
    d = {}
    for k, v in cmds:
        d.setdefault(k, []).append(v)
    assert d["model"] == ["./model.Q4_K_M.gguf"]
    assert d["stop"] == ["<|im_end|>", "<|endoftext|>"]
    assert d["temperature"] == ["0.7"] and d["top_p"] == ["0.95"] and d["top_k"] == ["40"]
    assert d["repeat_penalty"] == ["1.15"] and d["num_predict"] == ["64"] and d["num_ctx"] == ["256"]
    assert d["system"] == ["Say \"hi\" and then ''' stop"] and "written with ''' instead" in text
    (template,) = d["template"]
    assert template == R.CHATML_GO_TEMPLATE
    msgs = [{"role": "system", "content": "You are Ada."}, {"role": "user", "content": "hi\nthere"},
            {"role": "assistant", "content": "ha"}, {"role": "user", "content": "and?"}]
    jinja = jinja2.Environment(keep_trailing_newline=True).from_string(CHATML_TEMPLATE)
    assert render_go_chatml(template, msgs) == jinja.render(messages=msgs, add_generation_prompt=True)


LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    " + message['content'] + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


@pytest.mark.parametrize("template", [LLAMA3_TEMPLATE, "{{ raise_exception('no') }}", "{% for m in messages %}"])
def test_modelfile_says_when_the_template_is_not_chatml(template):
    assert not R.is_chatml(template, "<s>", "</s>")
    text = R.modelfile_text(_manifest(template=template))
    assert "NOT ChatML" in text and "TEMPLATE" not in [k.upper() for k, _ in parse_modelfile(text)]
    assert all(line.startswith("#") for line in text.splitlines() if "<|start_header_id|>" in line)
    assert ("model", "./model.Q4_K_M.gguf") in parse_modelfile(text)


def test_chatml_with_a_default_system_prompt_still_counts_as_chatml():
    qwen_like = ("{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are helpful.<|im_end|>\n{% endif %}"
                 + CHATML_TEMPLATE)
    assert R.is_chatml(qwen_like)  # the Modelfile always sends SYSTEM, so the default never shows
    assert R.ollama_model_name("Ada Lindqvist-Åberg!") == "ada-lindqvist-aberg"
    assert R.ollama_model_name("李雷") == "persona"


# ----------------------------------------------------------------------------- eval end to end
@pytest.fixture
def bundle_copy(tiny_bundle, tmp_path):
    dst = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, dst)
    return dst


def test_eval_writes_report_plot_and_modelfile(bundle_copy, chat_data_dir, tmp_path, capsys):
    private = tmp_path / "private.txt"
    private.write_text("the clouds\nBiscuit\n", encoding="utf-8")  # both occur in the owner's val turns
    out_json = tmp_path / "eval.json"
    rc = main(["eval", str(bundle_copy), "--data", str(chat_data_dir), "--private", str(private),
               "--prompts", "8", "--samples", "6", "--json", str(out_json)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "val perplexity" in printed and "privacy probe:" in printed
    md = (bundle_copy / "report.md").read_text(encoding="utf-8")
    assert md.startswith("# Persona report: Ada\n") and "## Style" in md and "## Privacy probe" in md
    assert "the clouds" not in md.lower() and "biscuit" not in md.lower()
    root, circles, texts = _points((bundle_copy / "size_vs_perplexity.svg").read_text(encoding="utf-8"))
    assert len(circles) == 1 and "this bundle Q4_K_M" in texts
    figures = json.loads(out_json.read_text())
    assert figures["privacy"]["samples"] == 6 and figures["style"]["generated"]["turns"] > 0
    assert [s["role"] for s in figures["voice"]["sets"]] == ["ceiling", "floor", "flown"]
    assert "## Whose voice" in md and "whose voice" in printed
    modelfile = (bundle_copy / "Modelfile").read_text(encoding="utf-8")
    assert ("model", "./model.Q4_K_M.gguf") in parse_modelfile(modelfile)
    load_bundle(bundle_copy)  # the report and the Modelfile leave the bundle valid
    # Same bundle, same data, same seed: the same report.
    assert main(["eval", str(bundle_copy), "--data", str(chat_data_dir), "--private", str(private),
                 "--prompts", "8", "--samples", "6"]) == 0
    assert (bundle_copy / "report.md").read_text(encoding="utf-8") == md


def test_eval_with_a_base_model_measures_it_beside_the_persona(bundle_copy, chat_data_dir, tmp_path, capsys):
    """--base-model answers the same prompts with the same seeds. Given the bundle's own GGUF it
    must reply word for word as the persona does: the same share, the same distances."""
    out_json = tmp_path / "eval.json"
    base = tmp_path / "base.Q4_K_M.gguf"
    shutil.copy(bundle_copy / "model.Q4_K_M.gguf", base)
    assert main(["eval", str(bundle_copy), "--data", str(chat_data_dir), "--prompts", "6", "--samples", "0",
                 "--base-model", str(base), "--json", str(out_json)]) == 0
    figures = json.loads(out_json.read_text())
    sets = {s["role"]: s for s in figures["voice"]["sets"]}
    assert sets["base"]["label"] == "base base.Q4_K_M.gguf" and sets["base"]["texts"] == sets["flown"]["texts"] > 0
    assert (sets["base"]["owner"], sets["base"]["low"]) == (sets["flown"]["owner"], sets["flown"]["low"])
    assert figures["voice"]["classifier"]["balanced_accuracy"] > 0.6
    md = (bundle_copy / "report.md").read_text(encoding="utf-8")
    assert "| base base.Q4\\_K\\_M.gguf | before tuning |" in md
    table = [line for line in md.split("## Style")[1].split("Vocabulary:")[0].splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(R.STYLE_ROWS)
    for line in table[1:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[2] == cells[3] and cells[4] == cells[5], line  # base as the persona, figure and distance
    assert main(["eval", str(bundle_copy), "--data", str(chat_data_dir), "--base-model", str(tmp_path / "no.gguf")]) == 2
    assert "--base-model" in capsys.readouterr().err


def test_build_measures_whose_voice_and_records_it(tiny_bundle):
    """The build's report answers with the F32 model beside the flown one; persona.toml [eval] has the shares."""
    m = load_bundle(tiny_bundle).manifest
    assert 0 <= m.eval["voice_share_low"] <= m.eval["voice_share"] <= m.eval["voice_share_high"] <= 1
    assert m.eval["voice_replies"] > 0 and "f32_voice_share" in m.eval and "base_voice_share" not in m.eval
    assert m.eval["voice_classifier_balanced_accuracy"] > 0.6 and m.eval["voice_owner_share"] > m.eval["voice_others_share"]
    md = (tiny_bundle / "report.md").read_text(encoding="utf-8")
    assert "| persona F32 | tuned, unquantized |" in md and "| persona Q4\\_K\\_M (flown) | **flown** |" in md


def test_eval_strict_fails_only_on_the_owners_strings(bundle_copy, chat_data_dir, tmp_path):
    blocklist = tmp_path / "blocklist.txt"
    blocklist.write_text("# every letter is private, so any sample with a word is a hit\n/[a-z]/\n", encoding="utf-8")
    before = {p.name: p.read_bytes() for p in bundle_copy.iterdir() if p.is_file()}
    args = ["eval", str(bundle_copy), "--data", str(chat_data_dir), "--blocklist", str(blocklist),
            "--prompts", "2", "--samples", "4", "--report", str(tmp_path / "r" / "report.md")]
    assert main(args) == 0  # without --strict a FAIL is reported, not an exit status
    md = (tmp_path / "r" / "report.md").read_text(encoding="utf-8")
    assert "**FAIL**" in md and (tmp_path / "r" / "size_vs_perplexity.svg").is_file()
    assert main([*args, "--strict"]) == 1
    # --report put everything elsewhere and left the bundle as it was; that Modelfile names the GGUF absolutely.
    assert {p.name: p.read_bytes() for p in bundle_copy.iterdir() if p.is_file()} == before
    modelfile = parse_modelfile((tmp_path / "r" / "Modelfile").read_text(encoding="utf-8"))
    assert ("model", str((bundle_copy / "model.Q4_K_M.gguf").resolve())) in modelfile


def test_eval_refuses_to_rewrite_a_checksummed_report(bundle_copy, chat_data_dir, capsys):
    (bundle_copy / "report.md").write_text("old\n", encoding="utf-8")
    b = load_bundle(bundle_copy)
    b.manifest.files.append(file_entry(bundle_copy, "report.md"))
    write_bundle(bundle_copy, b.manifest)
    assert main(["eval", str(bundle_copy), "--data", str(chat_data_dir), "--samples", "0"]) == 2
    assert "[[files]]" in capsys.readouterr().err
    assert (bundle_copy / "report.md").read_text() == "old\n"


def test_eval_bad_private_file_is_a_usage_error(bundle_copy, chat_data_dir, tmp_path, capsys):
    f = tmp_path / "p.txt"
    f.write_text("ok\n", encoding="utf-8")
    assert main(["eval", str(bundle_copy), "--data", str(chat_data_dir), "--private", str(f)]) == 2
    assert "p.txt:1" in capsys.readouterr().err


def test_eval_keeps_unscrubbed_planted_values_out_of_the_report(bundle_copy, chat_data_dir, tmp_path):
    """Data a user scrubbed too little: the sample corpus's planted values (as they were before
    prepare replaced them) sit in the held-out turns the report quotes. Named with --private,
    none of them reaches report.md."""
    planted = json.loads((CORPUS / "planted_pii.json").read_text(encoding="utf-8"))
    values = [v for vs in planted.values() for v in vs]
    private = tmp_path / "private.txt"
    private.write_text("\n".join(values) + "\n", encoding="utf-8")
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(chat_data_dir / "train.jsonl", data / "train.jsonl")
    convs = [json.loads(line) for line in (chat_data_dir / "val.jsonl").read_text(encoding="utf-8").splitlines()]
    first = [{"role": "user", "name": "Noor", "content": f"is it still {values[0]}? or {values[4]}"},
             {"role": "assistant", "name": "Ada", "content": f"yes. card {values[8]}, iban {values[6]}\n{values[12]}"}]
    convs.insert(0, {"messages": first})
    (data / "val.jsonl").write_text("".join(json.dumps(c) + "\n" for c in convs), encoding="utf-8")
    report_path = tmp_path / "out" / "report.md"
    rc = main(["eval", str(bundle_copy), "--data", str(data), "--private", str(private),
               "--prompts", "4", "--samples", "4", "--report", str(report_path)])
    assert rc == 0
    md = report_path.read_text(encoding="utf-8")
    assert "\\[PRIVATE\\]" in md  # the example row is there, redacted (brackets escaped for Markdown)
    for v in values:
        assert v.lower() not in md.lower()
    assert f"{len(values)} string(s) from --private" in md


def test_eval_help_names_the_options_and_verdicts(capsys):
    with pytest.raises(SystemExit) as e:
        main(["eval", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for s in ("--private", "--blocklist", "--samples", "--strict", "--report", "FAIL", "WARN", "exit status"):
        assert s in text


def test_scoring_through_the_template_agrees_with_the_chatml_scorer(tiny_bundle, chat_data_dir):
    """The path `eval` takes for a base model's own template (build --base), checked on a ChatML
    bundle where the direct ChatML scorer gives the reference figure."""
    from host_training.evaluate import is_chatml, score_gguf, score_gguf_template
    from host_training.train.tokenizer import load_conversations
    from stratoecho.bundle import load_bundle

    bundle = load_bundle(tiny_bundle)
    val = load_conversations(chat_data_dir / "val.jsonl")
    assert is_chatml(bundle)
    direct = score_gguf(bundle.model_path, val, bundle.manifest.persona.system_prompt)
    via_template = score_gguf_template(bundle.model_path, val, bundle)
    # Whole-text tokenization may fuse a header's newline with the first word of a turn, which then
    # counts as a target: a token or so per conversation; the figure must agree all the same.
    assert abs(via_template["tokens"] - direct["tokens"]) <= direct["conversations"] + 2, (via_template, direct)
    assert via_template["val_perplexity"] == pytest.approx(direct["val_perplexity"], rel=0.05), (via_template, direct)


def test_the_header_gives_the_bundles_own_perplexity_not_the_bases():
    """A LoRA build scores the untuned base in the shipped quantization too: the header's figure is the
    bundle's row, whichever comes first."""
    rows = [R.PerplexityRow("base (untuned)", "Q4_K_M", 105_000_000, 79.028),
            R.PerplexityRow("fine-tuned", "F32", 540_000_000, 42.305),
            R.PerplexityRow("fine-tuned", "Q4_K_M", 105_000_000, 44.467)]
    md = R.render_report(_manifest(), rows, None, None, R.Redactor())
    assert "| val perplexity | 44.467 (Q4_K_M) |" in md
    rows[0] = R.PerplexityRow("parent (before)", "Q4_K_M", 105_000_000, 50.0)
    assert "| val perplexity | 44.467 (Q4_K_M) |" in R.render_report(_manifest(), rows, None, None, R.Redactor())


def test_private_strings_from_json(tmp_path):
    """The sample corpus's planted_pii.json is a private-strings file as it is (build --private)."""
    from tests.conftest import CORPUS

    strings = R.load_private_strings(CORPUS / "planted_pii.json")
    assert "+44 7700 900123" in strings and "abc123SECRET" in strings and len(strings) == 16
    f = tmp_path / "p.json"
    f.write_text('["Gerald the starter", "Nimbus"]')
    assert R.load_private_strings(f) == ["Gerald the starter", "Nimbus"]
    for doc, says in (('{"phone": "07700"}', "key 'phone': expected a list of strings"),
                      ('{"x": ["ab"]}', "at least 3 characters"), ("[1, 2", "not JSON")):
        f.write_text(doc)
        with pytest.raises(ValueError, match=says):
            R.load_private_strings(f)
