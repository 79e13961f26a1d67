"""The judging page (`judge`): blind pairs of the owner's real reply and the persona's, and the
folding of people's answers into a share with its interval.

Texts and answers by hand first (cutting, placeholders, the Wilson interval worked out on
paper, malformed and mismatched answers), then the page made by the real command line from the
session's tiny bundle (real llama-cpp-python generation: it babbles, which is fine), read back
to check that it carries no key, then clicked through in a real headless Chromium (Debian's
/usr/bin/chromium and /usr/bin/chromedriver, as the dashboard's tests drive it) whose saved
answers must fold into the expected figures.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from host_training.__main__ import main
from host_training.evaluate import judge_score as S
from host_training.evaluate import reply_cases
from host_training.judge import cli as J
from host_training.judge import page as judge_page
from host_training.train.tokenizer import load_conversations
from stratoecho.bundle import load_bundle, sha256_file, write_bundle

PAIRS = 8
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WAIT_S = 20  # a loaded 2-core machine is slow to start a browser
HOSTILE_USER = '</script><script>window.__pwned = 1</script><img src="x" onerror="window.__pwned = 2">'
HOSTILE_OWNER = '<img src=y onerror="window.__pwned = 3"> & <b>bold</b> </textarea></main>'
HOSTILE_NAME = 'Ada <img src=z onerror="window.__pwned = 4">'


# ----------------------------------------------------------------------------- reading a page back
class PageReader(HTMLParser):
    """The pairs a judge sees (context, A, B, in page order), every tag and attribute, the scripts."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.pairs: list[dict] = []
        self.tags: list[tuple[str, dict]] = []
        self.scripts: list[str] = []
        self._in_script = False
        self._open = self._side = ""
        self._text: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "article":
            self.pairs.append({"id": attrs["data-pair"], "context": [], "A": None, "B": None})
        elif tag == "script":
            self._in_script = True
            self.scripts.append("")
        elif tag == "input" and attrs.get("value") in ("A", "B"):
            self._side = attrs["value"]
        elif tag == "span" and attrs.get("class") == "text":
            self._text = []
        elif tag == "ol":
            self._open = "context"
        elif tag == "fieldset":
            self._open = "choices"

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False
        elif tag == "span" and self._text is not None:
            text = "".join(self._text)
            if self._open == "context":
                self.pairs[-1]["context"].append(text)
            else:
                self.pairs[-1][self._side] = text
            self._text = None

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data
        elif self._text is not None:
            self._text.append(data)


def owner_texts(key: dict, data_dir: Path) -> dict[str, str]:
    """Each pair's owner reply from val.jsonl, as the page should show it."""
    cases = reply_cases(load_conversations(data_dir / "val.jsonl"), 10**6)
    return {pid: J.shorten(J.clean(cases[p["case"]][1]), key["max_chars"]) for pid, p in key["pairs"].items()}


# ----------------------------------------------------------------------------- texts by hand
def test_placeholders_leave_both_texts_and_blanks_are_tidied():
    assert J.clean("call me on <PHONE_1> tomorrow\r\n<URL_2>") == "call me on tomorrow"
    assert J.clean("mail <EMAIL_12>. ok\n\n\n\n  bye  ") == "mail. ok\n\nbye"
    assert J.clean("<SECRET_URL_3>") == ""
    assert J.clean("caf\u0065\u0301 \ufffd") == "café"  # one normal form; no undecodable bytes


def test_long_texts_are_cut_at_a_sentence_or_word_end_with_one_marker():
    assert J.shorten("hi", 40) == "hi"
    assert J.shorten("One two three. Four five six seven", 20) == "One two three. […]"
    assert J.shorten("aaaa bbbb cccc dddd eeee", 12) == "aaaa bbbb […]"
    assert J.shorten("aaaa bbbb cccc dddd eeee", 14) == "aaaa bbbb cccc […]"  # the limit falls on a word end
    assert J.shorten("Hi. aaaa bbbb cccc dddd", 20) == "Hi. aaaa bbbb cccc […]"  # a sentence end too early
    assert J.shorten("今天天气很好。我们去公园吧。明天见", 10) == "今天天气很好。 […]"
    assert J.shorten("x" * 50, 40) == "x" * 40 + " […]"
    # max_tokens stopped it: the last word may be half-written, so it goes, however short the text
    assert J.shorten("It was lovely and the clo", 63, cut=True) == "It was lovely and the […]"
    assert J.shorten("It was lovely.", 63, cut=True) == "It was lovely. […]"


def chosen(persona: str, cut: bool, case: int = 0) -> J.Chosen:
    return J.Chosen(case, [{"role": "user", "name": "Ben", "content": "hi"}], "owner text", persona, cut)


def test_the_length_cut_to_is_what_max_tokens_comes_to_in_the_personas_characters():
    stopped = [chosen("x" * n, True) for n in (70, 90, 80)]
    assert J.char_limit(stopped + [chosen("y" * 200, False)]) == 80  # the median of the stopped ones
    assert J.char_limit([chosen("y" * 55, False), chosen("y" * 61, False)]) == 61  # none stopped: the longest
    assert J.char_limit([chosen("y", False)]) == J.MIN_CHARS


def test_pairs_the_persona_left_empty_are_skipped_and_counted():
    context = [{"role": "user", "name": "Ben", "content": "hello?"}]
    cases = [(context, "<PHONE_1>"), (context, "a"), (context, "b"), (context, "same"), (context, "ok then")]
    replies = {1: J.Reply(" <URL_1> "), 2: J.Reply(None), 3: J.Reply("same"), 4: J.Reply("sure", cut=True)}
    asked = []

    def reply(ctx, case):
        asked.append(case)
        return replies[case]

    picked, skipped = J.select(cases, reply, 5, random.Random(0))
    assert [(c.case, c.owner, c.persona, c.persona_cut) for c in picked] == [(4, "ok then", "sure", True)]
    assert sorted(asked) == [1, 2, 3, 4]  # an owner reply of placeholders only is not worth a generation
    assert skipped == {"the owner's reply is only placeholders": 1, "the persona said nothing": 1,
                       "the conversation does not fit the context": 1, "the persona repeated the owner's reply": 1}


# ----------------------------------------------------------------------------- answers by hand
MODEL, DATA, PAGE = "a" * 64, "d" * 64, "0123456789abcdef"


def write_key(folder: Path, sides: str) -> dict:
    key = {"format": S.KEY_FORMAT, "version": 1, "page": PAGE, "persona": "Ada", "model": "model.Q4_K_M.gguf",
           "model_sha256": MODEL, "data_sha256": DATA, "seed": 1, "max_chars": 80, "created": "2025-06-01T09:00:00+00:00",
           "pairs": {str(i + 1): {"owner": side, "case": i} for i, side in enumerate(sides)}}
    (folder / S.ANSWERS_DIR).mkdir(parents=True, exist_ok=True)
    (folder / S.KEY_FILE).write_text(json.dumps(key), encoding="utf-8")
    return key


def answers_doc(picks: dict[str, str], *, judge="JS", session="s1", saved_at="2025-06-02T10:00:00.000Z",
                pairs=20, **over) -> dict:
    doc = {"format": S.ANSWERS_FORMAT, "version": 1, "page": PAGE, "persona": "Ada", "model_sha256": MODEL,
           "data_sha256": DATA, "judge": judge, "session": session, "saved_at": saved_at, "pairs": pairs,
           "answers": picks}
    return doc | over


def put(folder: Path, name: str, doc) -> Path:
    path = folder / S.ANSWERS_DIR / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    return path


def flip(side: str) -> str:
    return "B" if side == "A" else "A"


SIDES = "ABBABAABBBABAABABBAA"  # the owner's side of pairs 1..20


def test_answers_fold_into_the_share_with_its_wilson_interval(tmp_path):
    write_key(tmp_path, SIDES)
    # 14 right, 4 wrong, 2 can't tell: (14 + 2/2) / 20 = 75 %, Wilson 95 % interval 53.1 % to 88.8 %
    picks = {str(i + 1): (s if i < 14 else flip(s) if i < 18 else S.CANT_TELL) for i, s in enumerate(SIDES)}
    put(tmp_path, "js.json", answers_doc(picks))
    # the same browser saved earlier with fewer answers: only the later file counts
    put(tmp_path, "js-early.json", answers_doc({"1": flip(SIDES[0])}, saved_at="2025-06-02T09:00:00.000Z"))
    # made for another build of the model: ignored, with a warning
    put(tmp_path, "old.json", answers_doc({"1": SIDES[0]}, session="s2", model_sha256="b" * 64))
    with capture_logs() as logs:
        s = S.summary(tmp_path)
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["judge.answers_for_other_build"]
    assert (s["judges"], s["answered"], s["owner_picked"], s["persona_picked"], s["cant_tell"]) == (1, 20, 14, 4, 2)
    assert s["share"] == pytest.approx(0.75)
    assert (s["low"], s["high"]) == (pytest.approx(0.5313, abs=1e-4), pytest.approx(0.8881, abs=1e-4))
    assert s["ignored"] == ["old.json"] and s["per_judge"][0]["file"] == "js.json"
    assert "more often than chance" in s["meaning"]
    text = "\n".join(S.report_lines(s))
    assert "## Judged by people" in text and "| JS | 20 | 14 | 4 | 2 | 75 % |" in text
    assert "**Told apart 75 % of the time (95 % interval 53 % to 89 %)**" in text and "old.json" in text


def test_two_judges_pool_and_chance_reads_as_chance(tmp_path):
    write_key(tmp_path, SIDES)
    half = {str(i + 1): (s if i % 2 else flip(s)) for i, s in enumerate(SIDES)}  # 10 of 20 right
    put(tmp_path, "a.json", answers_doc(half, judge="Ann", session="a"))
    put(tmp_path, "b.json", answers_doc({"1": S.CANT_TELL, "2": S.CANT_TELL}, judge="Bo", session="b"))
    s = S.summary(tmp_path)
    assert (s["judges"], s["answered"], s["share"]) == (2, 22, pytest.approx(11 / 22))
    assert s["meaning"].startswith("Within chance")
    assert [j["judge"] for j in s["per_judge"]] == ["Ann", "Bo"]
    assert "| **all** | 22 | 10 | 10 | 2 | 50 % |" in S.report_lines(s)


def test_meaning_reads_the_interval():
    assert S.meaning(0.95, 0.8, 0.99, "Ada").startswith("The judges almost always told")
    assert "passes for Ada" in S.meaning(0.2, 0.1, 0.4, "Ada")
    assert "wide" in S.meaning(0.5, 0.2, 0.8, "Ada") and "wide" not in S.meaning(0.5, 0.45, 0.55, "Ada")
    assert S.meaning(None, None, None, "Ada") == "No answers yet."


def test_wilson_by_hand_and_at_the_edges():
    assert S.wilson(15, 20) == (pytest.approx(0.5313, abs=1e-4), pytest.approx(0.8881, abs=1e-4))
    low, high = S.wilson(0, 10)
    assert low == 0 and high == pytest.approx(0.2775, abs=1e-4)
    assert S.wilson(10, 10) == (pytest.approx(1 - 0.2775, abs=1e-4), pytest.approx(1))
    assert S.wilson(0, 0) is None


@pytest.mark.parametrize("doc, says", [
    ("{not json", "not JSON"),
    (json.dumps([1, 2]), "not a judge's answers file"),
    (answers_doc({"1": "C"}), "answers.1"),
    (answers_doc({"21": "A"}), "pair ids do not match"),
    (answers_doc({"1": "A"}, pairs=12), "pair ids do not match"),
    (answers_doc({"1": "A"}, page="fedcba9876543210"), "made on page fedcba9876543210"),
    (answers_doc({"1": "A"}, judge=""), "[judge]"),
])
def test_a_bad_answers_file_is_refused_by_name(tmp_path, doc, says):
    write_key(tmp_path, SIDES)
    put(tmp_path, "good.json", answers_doc({"1": "A"}, session="g"))
    bad = put(tmp_path, "bad.json", doc)
    with pytest.raises(S.JudgeError) as e:
        S.summary(tmp_path)
    assert str(bad) in str(e.value) and says in str(e.value)
    assert S.report_section(tmp_path, MODEL)[2].startswith("Not scored:")  # the report says so, no crash


def test_no_page_or_a_page_for_another_build_folds_nothing(tmp_path):
    assert S.summary(tmp_path) is None and S.report_lines(None) == [] and S.report_section(tmp_path, MODEL) == []
    write_key(tmp_path, SIDES)
    assert S.summary(tmp_path, model_sha256="b" * 64) is None
    assert S.summary(tmp_path, model_sha256=MODEL, data_sha256="e" * 64) is None
    s = S.summary(tmp_path, model_sha256=MODEL, data_sha256=DATA)
    assert s["answered"] == 0 and s["share"] is None
    assert "No answers yet" in "\n".join(S.report_lines(s))


# ----------------------------------------------------------------------------- the page, made for real
def make(bundle: Path, data: Path, out: Path, *extra: str) -> int:
    return main(["judge", str(bundle), "--data", str(data), "--out", str(out), "--threads", "1", *extra])


@pytest.fixture(scope="module")
def judged(tiny_bundle, chat_data_dir, tmp_path_factory) -> Path:
    """A judge folder made by the command line from the tiny bundle (outside it: the bundle is shared)."""
    out = tmp_path_factory.mktemp("judged") / "judge"
    assert make(tiny_bundle, chat_data_dir, out, "--pairs", str(PAIRS)) == 0
    return out


def test_the_page_shows_each_pair_and_the_key_stays_beside_it(judged, tiny_bundle, chat_data_dir):
    assert sorted(p.name for p in judged.iterdir()) == ["answers", "judge.html", "key.json"]
    key = json.loads((judged / "key.json").read_text())
    bundle = load_bundle(tiny_bundle)
    assert key["model_sha256"] == J.model_sha256(bundle) == sha256_file(bundle.model_path)
    assert key["data_sha256"] == sha256_file(chat_data_dir / "val.jsonl")
    page = PageReader((judged / "judge.html").read_text())
    assert [p["id"] for p in page.pairs] == [str(i) for i in range(1, PAIRS + 1)] == list(key["pairs"])
    owner = owner_texts(key, chat_data_dir)
    for pair in page.pairs:
        side = key["pairs"][pair["id"]]["owner"]
        assert pair[side] == owner[pair["id"]]  # the key names the owner's real reply ...
        assert pair[flip(side)] and pair[flip(side)] != pair[side]  # ... and the other is the persona's
        for text in (pair["A"], pair["B"]):
            assert len(text.removesuffix(" " + J.MARKER)) <= key["max_chars"]
            assert not re.search(r"<[A-Z]+(?:_[A-Z]+)*_\d+>", text)
        assert pair["context"]  # the message answered, at least
    assert {p["owner"] for p in key["pairs"].values()} == {"A", "B"}


def test_the_page_carries_no_key(judged):
    html = (judged / "judge.html").read_text()
    page = PageReader(html)
    # One script, the same for every page: it cannot hold a key.
    assert page.scripts == [judge_page.SCRIPT]
    # Nothing in the markup of a pair but its number, its texts and the labels A and B: the two
    # choices are written alike, text aside, so neither position nor markup says which is real.
    for article in re.findall(r'<article class="pair".*?</article>', html, flags=re.S):
        a, b = re.findall(r'<label class="choice">.*?</label>', article, flags=re.S)
        blank = [re.sub(r'<span class="text">.*?</span>', "", x, flags=re.S) for x in (a, b)]
        assert blank[0].replace('"A"', '"X"').replace(">A<", ">X<") == blank[1].replace('"B"', '"X"').replace(">B<", ">X<")
    allowed = {"lang", "charset", "name", "content", "http-equiv", "id", "class", "data-pair", "type", "value",
               "autocomplete", "maxlength", "max", "role", "hidden", "readonly", "aria-label", "data-format",
               "data-version", "data-page", "data-persona", "data-model", "data-data"}
    assert {a for _, attrs in page.tags for a in attrs} <= allowed
    assert {attrs["value"] for tag, attrs in page.tags if tag == "input" and "value" in attrs} == {"A", "B", "cant_tell"}
    key = json.loads((judged / "key.json").read_text())
    main_tag = next(attrs for tag, attrs in page.tags if tag == "main")
    assert {main_tag["data-model"], main_tag["data-page"]} == {key["model_sha256"], key["page"]}
    pairs_markup = re.sub(r'<span class="text">.*?</span>', "", re.search(r"<main[^>]*>(.*)</main>", html, re.S)[1],
                          flags=re.S)  # the pairs, their texts left out
    assert not re.search(r"owner|real|persona|case|generated|model", pairs_markup, flags=re.I)


def test_the_same_seed_makes_the_same_page_and_another_seed_another(judged, tiny_bundle, chat_data_dir, tmp_path):
    assert make(tiny_bundle, chat_data_dir, tmp_path / "same", "--pairs", str(PAIRS)) == 0
    assert (tmp_path / "same" / "judge.html").read_bytes() == (judged / "judge.html").read_bytes()
    assert make(tiny_bundle, chat_data_dir, tmp_path / "other", "--pairs", str(PAIRS), "--seed", "7") == 0
    assert json.loads((tmp_path / "other" / "key.json").read_text())["page"] != \
        json.loads((judged / "key.json").read_text())["page"]


@pytest.fixture(scope="module")
def hostile(tiny_bundle, tmp_path_factory) -> Path:
    """A page made from held-out chats full of markup, for a persona whose name is markup too."""
    root = tmp_path_factory.mktemp("hostile")
    bundle = root / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    manifest = load_bundle(bundle).manifest
    write_bundle(bundle, manifest.model_copy(update={"persona": manifest.persona.model_copy(update={"name": HOSTILE_NAME})}))
    data = root / "data"
    data.mkdir()
    convs = [{"messages": [{"role": "user", "name": f"<b>Friend {i}</b>", "content": f"{HOSTILE_USER} how was the rain?"},
                           {"role": "assistant", "name": "Ada", "content": f"{HOSTILE_OWNER} it was lovely {i}"}]}
             for i in range(4)]
    (data / "val.jsonl").write_text("".join(json.dumps(c) + "\n" for c in convs), encoding="utf-8")
    assert make(bundle, data, root / "judge", "--pairs", "3") == 0
    return root / "judge"


def test_hostile_texts_stay_text(hostile):
    html = (hostile / "judge.html").read_text()
    page = PageReader(html)
    assert [tag for tag, _ in page.tags if tag in ("script", "img", "b")] == ["script"]
    assert page.scripts == [judge_page.SCRIPT]
    assert html.count("&lt;/script&gt;&lt;script&gt;window.__pwned = 1&lt;/script&gt;") == 3
    # the owner's replies as the page shows them: cut to the key's length (which the persona's
    # sampling decides), then escaped
    limit = json.loads((hostile / "key.json").read_text())["max_chars"]
    shown = [J.shorten(J.clean(f"{HOSTILE_OWNER} it was lovely {i}"), limit) for i in range(4)]
    assert all(s.startswith('<img src=y onerror="window.__pwned = 3">') for s in shown)  # the attack survives the cut
    escaped = [t.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;") for t in shown]
    assert sum(html.count(e) for e in set(escaped)) >= 3
    assert "Which one did Ada &lt;img src=z onerror=&quot;window.__pwned = 4&quot;&gt; write?" in html
    assert "&lt;b&gt;Friend 0&lt;/b&gt;:" in html


def test_a_spanish_owners_page_is_in_spanish(tiny_bundle, chat_data_dir, tmp_path):
    """The people who judge know the owner: the page speaks the language prepare recorded for her
    (persona.toml [persona] language); its key and scoring are the same as in any language."""
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    manifest = load_bundle(bundle).manifest
    write_bundle(bundle, manifest.model_copy(update={"persona": manifest.persona.model_copy(update={"language": "es"})}))
    assert make(bundle, chat_data_dir, tmp_path / "judge", "--pairs", "3") == 0
    html = (tmp_path / "judge" / "judge.html").read_text()
    assert '<html lang="es">' in html and "<h1>¿Cuál de las dos escribió Ada?</h1>" in html
    assert "<h2>1 de 3</h2>" in html and "No sabría decirlo</label>" in html and ">Guardar mis respuestas</button>" in html
    assert "Which one" not in html and "Save my answers" not in html and "Welche" not in html
    assert PageReader(html).scripts == [judge_page.SCRIPT]


# ----------------------------------------------------------------------------- the command line
def test_answers_given_on_the_command_line_are_checked_copied_and_scored(judged, tiny_bundle, tmp_path, capsys):
    folder = tmp_path / "judge"
    shutil.copytree(judged, folder)
    key = json.loads((folder / "key.json").read_text())
    picks = {pid: (p["owner"] if pid != "1" else flip(p["owner"])) for pid, p in key["pairs"].items()}
    doc = answers_doc(picks, page=key["page"], model_sha256=key["model_sha256"], data_sha256=key["data_sha256"],
                      pairs=PAIRS)
    sent = tmp_path / "answers-JS.json"
    sent.write_text(json.dumps(doc))
    capsys.readouterr()
    assert main(["judge", str(tiny_bundle), "--out", str(folder), "--answers", str(sent)]) == 0
    out = capsys.readouterr().out
    assert (folder / "answers" / "answers-JS.json").read_bytes() == sent.read_bytes()
    assert f"| JS | {PAIRS} | {PAIRS - 1} | 1 | 0 |" in out
    assert main(["judge", str(tiny_bundle), "--out", str(folder), "--score"]) == 0
    assert f"| JS | {PAIRS} | {PAIRS - 1} | 1 | 0 |" in capsys.readouterr().out

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc | {"answers": {"99": "A"}}))
    assert main(["judge", str(tiny_bundle), "--out", str(folder), "--answers", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: {bad}: its pair ids do not match")
    assert not (folder / "answers" / "bad.json").exists()


def test_a_new_page_never_overwrites_answers_without_force(judged, tiny_bundle, chat_data_dir, tmp_path, capsys):
    folder = tmp_path / "judge"
    shutil.copytree(judged, folder)
    put(folder, "friend.json", {"anything": "a person's answers"})
    assert make(tiny_bundle, chat_data_dir, folder, "--pairs", "4") == 2
    assert "--force" in capsys.readouterr().err.strip().splitlines()[-1]
    assert (folder / "key.json").read_bytes() == (judged / "key.json").read_bytes()
    assert make(tiny_bundle, chat_data_dir, folder, "--pairs", "4", "--force") == 0
    old = folder / "replaced" / json.loads((judged / "key.json").read_text())["page"]
    assert (old / "answers" / "friend.json").exists() and (old / "key.json").read_bytes() == (judged / "key.json").read_bytes()
    assert len(json.loads((folder / "key.json").read_text())["pairs"]) == 4 and not list((folder / "answers").iterdir())


@pytest.mark.parametrize("args, says", [
    (["{missing}", "--data", "{data}"], "no persona bundle here"),
    (["{bundle}", "--data", "{missing}"], "val.jsonl: not found"),
    (["{bundle}", "--data", "{data}", "--pairs", "999"], "fewer than --pairs 999"),
    (["{bundle}", "--data", "{data}", "--pairs", "0"], "--pairs must be 1 or more"),
    (["{bundle}"], "--data DIR is needed"),
    (["{bundle}", "--score", "--out", "{missing}"], "no judging page here"),
])
def test_bad_input_is_one_line_and_status_2(args, says, tiny_bundle, chat_data_dir, tmp_path, capsys):
    fill = {"bundle": str(tiny_bundle), "data": str(chat_data_dir), "missing": str(tmp_path / "missing")}
    assert main(["judge", *(a.format(**fill) for a in args), "--threads", "1"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and says in errors[0], errors
    assert not (tiny_bundle / "judge").exists()


# ----------------------------------------------------------------------------- the real browser
@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian's chromium and chromium-driver packages; make test installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path_factory.mktemp("downloads")
    options = Options()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1000,1600",
                "--disable-background-networking", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(WAIT_S)
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver, condition, message: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S, poll_frequency=0.1).until(lambda d: condition(d), message)


def click(driver, pair: str, value: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, f'.pair[data-pair="{pair}"] input[value="{value}"]').find_element(
        By.XPATH, "..").click()  # the label, as a finger would


def restored(driver) -> None:
    """Wait for the page's script to have restored the answers: a load can return before it has run."""
    wait(driver, lambda d: d.execute_script("return document.documentElement.dataset.ready") == "yes",
         "the page's script did not run")


def severe_console(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_in_chromium_a_judge_clicks_through_saves_and_the_answers_fold(browser, judged, tmp_path):
    from selenium.webdriver.common.by import By

    folder = tmp_path / "judge"
    shutil.copytree(judged, folder)
    key = json.loads((folder / "key.json").read_text())
    sides = {pid: p["owner"] for pid, p in key["pairs"].items()}
    browser.get((folder / "judge.html").as_uri())
    browser.execute_script("localStorage.clear()")
    browser.refresh()
    restored(browser)
    progress = lambda d: d.find_element(By.ID, "done").text  # noqa: E731
    assert progress(browser) == "0"

    # pairs 1-5 right (pair 1 first wrong, then changed), 6-7 wrong, 8 can't tell
    click(browser, "1", flip(sides["1"]))
    for pid in "12345":
        click(browser, pid, sides[pid])
    for pid in "67":
        click(browser, pid, flip(sides[pid]))
    click(browser, "8", S.CANT_TELL)
    assert progress(browser) == str(PAIRS)
    assert browser.execute_script("return document.querySelectorAll('.pair.answered').length") == PAIRS

    browser.find_element(By.ID, "save").click()  # no name yet: asked for, nothing saved
    assert "name or initials" in browser.find_element(By.ID, "status").text
    assert not browser.find_element(By.ID, "answers-json").is_displayed()
    browser.find_element(By.ID, "judge-name").send_keys("T. J.")
    browser.find_element(By.ID, "save").click()
    shown = wait(browser, lambda d: d.find_element(By.ID, "answers-json").get_attribute("value"), "no JSON shown")
    name = f"answers-T-J-{key['page'][:8]}.json"
    assert name in browser.find_element(By.ID, "status").text
    downloaded = wait(browser, lambda d: next(iter(d.downloads.glob(name)), None), "the download never came")
    time.sleep(0.2)  # the file appears under its name once complete; let the writer close it
    assert json.loads(downloaded.read_text()) == json.loads(shown)

    shutil.copy(downloaded, folder / "answers" / name)
    s = S.summary(folder, model_sha256=key["model_sha256"], data_sha256=key["data_sha256"])
    assert (s["judges"], s["answered"], s["owner_picked"], s["persona_picked"], s["cant_tell"]) == (1, PAIRS, 5, 2, 1)
    assert s["per_judge"][0]["judge"] == "T. J."

    # A reload keeps the answers and the name, and the same session: a re-save replaces. The tab's
    # URL carries them: Chromium sometimes reloads a file:// page into an empty localStorage,
    # which the cleared storage here stands for.
    assert "s=" in browser.current_url.split("#", 1)[1]
    browser.execute_script("localStorage.clear()")
    browser.refresh()
    restored(browser)
    assert progress(browser) == str(PAIRS)
    assert browser.find_element(By.ID, "judge-name").get_attribute("value") == "T. J."
    click(browser, "6", sides["6"])
    browser.find_element(By.ID, "save").click()
    again = json.loads(wait(browser, lambda d: d.find_element(By.ID, "answers-json").get_attribute("value"), "no JSON"))
    assert again["session"] == json.loads(shown)["session"]
    put(folder, "resaved.json", again)
    assert S.summary(folder)["owner_picked"] == 6 and S.summary(folder)["judges"] == 1
    assert severe_console(browser) == []  # the CSP let the page's own script run, and nothing failed


@pytest.fixture
def served(judged, tmp_path):
    """The judging folder over loopback HTTP, where Chromium keeps localStorage as it should
    (opened from file:// it sometimes starts a reload on an empty one)."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    folder = tmp_path / "judge"
    shutil.copytree(judged, folder)
    quiet = type("Quiet", (SimpleHTTPRequestHandler,), {"log_message": lambda *a: None})
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}/judge.html"
    finally:
        server.shutdown()
        server.server_close()


def test_in_chromium_a_tab_opened_again_gets_the_answers_from_the_browsers_storage(browser, served):
    from selenium.webdriver.common.by import By

    folder, url = served
    sides = {pid: p["owner"] for pid, p in json.loads((folder / "key.json").read_text())["pairs"].items()}
    browser.get(url)
    browser.execute_script("localStorage.clear()")
    browser.get(url)  # no fragment: a fresh start
    restored(browser)
    for pid in "123":
        click(browser, pid, sides[pid])
    browser.find_element(By.ID, "judge-name").send_keys("K")
    first = browser.current_window_handle
    browser.switch_to.new_window("tab")
    try:
        browser.get(url)  # the page opened again from its link: no fragment, only the storage
        restored(browser)
        assert browser.find_element(By.ID, "done").text == "3"
        assert browser.find_element(By.ID, "judge-name").get_attribute("value") == "K"
        assert browser.execute_script("return document.querySelectorAll('.pair.answered').length") == 3
    finally:
        browser.close()
        browser.switch_to.window(first)
    # A fragment another page left at this address (a new page made in the same folder) is not
    # these pairs' answers. A new query makes each a new load, not a jump within the page.
    page = json.loads((folder / "key.json").read_text())["page"]
    fragment = browser.current_url.split("#", 1)[1]
    assert f"page={page}" in fragment and "a1=" in fragment
    browser.execute_script("localStorage.clear()")
    browser.get(f"{url}?again#{fragment.replace(f'page={page}', 'page=' + '0' * 16)}")
    restored(browser)
    assert browser.find_element(By.ID, "done").text == "0"
    browser.get(f"{url}?own#{fragment}")  # and its own fragment is
    restored(browser)
    assert browser.find_element(By.ID, "done").text == "3"


def test_in_chromium_hostile_texts_stay_text_and_a_phone_reads_the_page(browser, hostile):
    from selenium.webdriver.common.by import By

    browser.get((hostile / "judge.html").as_uri())
    restored(browser)
    assert browser.find_element(By.ID, "done").text == "0"
    assert browser.execute_script("return window.__pwned") is None
    assert browser.execute_script("return document.querySelectorAll('img, b, main script').length") == 0
    contexts = browser.execute_script("return [...document.querySelectorAll('.context .text')].map(e => e.textContent)")
    assert contexts and all(HOSTILE_USER in t for t in contexts)
    assert HOSTILE_NAME in browser.find_element(By.TAG_NAME, "legend").text
    browser.set_window_size(390, 844)
    try:
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    finally:
        browser.set_window_size(1000, 1600)


def test_eval_folds_the_bundles_judgements_into_report_md(judged, tiny_bundle, chat_data_dir, tmp_path):
    """People's answers in BUNDLE/judge reach report.md through `eval`, for this model and data only."""
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    folder = bundle / S.JUDGE_DIR
    shutil.copytree(judged, folder)
    key = json.loads((folder / "key.json").read_text())
    picks = {pid: p["owner"] for pid, p in key["pairs"].items()}  # told apart every time
    put(folder, "js.json", answers_doc(picks, page=key["page"], model_sha256=key["model_sha256"],
                                       data_sha256=key["data_sha256"], pairs=PAIRS))
    args = ["eval", str(bundle), "--data", str(chat_data_dir), "--samples", "0", "--prompts", "2", "--threads", "1"]
    assert main(args) == 0
    report = (bundle / "report.md").read_text()
    assert "## Judged by people" in report and report.index("## Judged by people") < report.index("## Privacy probe")
    assert f"| JS | {PAIRS} | {PAIRS} | 0 | 0 |" in report
    # the same answers against other data (another val.jsonl): not folded
    other = tmp_path / "data"
    shutil.copytree(chat_data_dir, other)
    with open(other / "val.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"messages": [{"role": "user", "name": "N", "content": "hi"},
                                         {"role": "assistant", "name": "Ada", "content": "hello"}]}) + "\n")
    assert main([*args[:3], str(other), *args[4:]]) == 0
    assert "## Judged by people" not in (bundle / "report.md").read_text()
