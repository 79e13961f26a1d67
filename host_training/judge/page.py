"""The judging page: one self-contained HTML file of blind pairs, for a person to pick whose voice.

`render_page` gets only what the judge may see — the context and the two texts A and B of each
pair — never which side is the owner's: the key stays in key.json (judge_score.py), so the
page cannot leak it, not even by accident. Every text is HTML-escaped; besides, the page's
Content-Security-Policy runs only its own script (by hash) and allows no network at all, so
even text that escaped escaping could neither run nor call home.

The page works opened from disk (file://) in any current browser, on a phone too: radio
buttons hold the answers (changeable until saved), a bar counts them, the URL's fragment keeps
them across a reload and localStorage across a closed tab where the browser allows it, and
"Save my answers" offers a JSON file
(Blob + a download link) and shows the same JSON in a text box to copy, for browsers that
block downloads from file://.

Its words are the owner's language's (words.py: host_training/data/judge_words.toml). What the
script says is written into the page as hidden text, never into the script, so every page runs the
one script the Content-Security-Policy allows.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from html import escape
from string import Template

from ..evaluate.judge_score import ANSWERS_FORMAT, CANT_TELL, VERSION
from .words import fill, page_words

# What the script says, in the page's language: each a hidden <span id="say-KEY">, its {fields}
# filled in by the script.
SCRIPT_WORDS = ("need_name", "nothing_to_save", "download_file_again", "saved_some", "saved_all", "send_back")


@dataclass(frozen=True)
class Pair:
    """What the page shows of one pair: (speaker, text) of the messages before the reply (the
    last is the message answered) and the two replies in page order. Not which one is real."""

    id: str
    context: tuple[tuple[str, str], ...]
    a: str
    b: str


CSS = """
:root { color-scheme: light dark; --fg: #1d1d1f; --muted: #5f6368; --bg: #f6f5f1; --card: #fff;
  --line: #d5d3cc; --accent: #1f5fa8; --chosen: #e8f0fb; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #ececec; --muted: #a8a8a8; --bg: #141414; --card: #1f1f1f; --line: #444; --accent: #7fb2ff;
    --chosen: #1d2a3b; }
}
* { box-sizing: border-box; }
body { margin: 0; font: 17px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
  background: var(--bg); }
header { position: sticky; top: 0; z-index: 1; background: var(--bg); border-bottom: 1px solid var(--line); }
header div, .intro, main, footer { max-width: 42rem; margin: 0 auto; padding: 0 1rem; }
header div { display: flex; gap: 1rem; align-items: center; padding: .5rem 1rem; }
header progress { flex: 1; height: .6rem; }
h1 { font-size: 1.4rem; margin: 1rem 0 .5rem; }
h2 { font-size: .9rem; color: var(--muted); font-weight: 600; margin: 0 0 .5rem; }
.intro p { margin: .5rem 0; }
.intro label { display: block; margin: 1rem 0; font-weight: 600; }
.intro input { display: block; width: 100%; max-width: 20rem; font: inherit; padding: .5rem; margin-top: .25rem; }
.pair { background: var(--card); border: 1px solid var(--line); border-radius: 12px; padding: 1rem; margin: 1rem 0; }
.pair.answered { border-color: var(--accent); }
.context { list-style: none; padding: 0; margin: 0 0 1rem; }
.context li { margin: .35rem 0; color: var(--muted); }
.context li:last-child { color: var(--fg); }
.who { font-weight: 600; }
.text { white-space: pre-wrap; overflow-wrap: anywhere; }
fieldset { border: 0; padding: 0; margin: 0; min-width: 0; }
legend { font-weight: 600; padding: 0; margin-bottom: .25rem; }
label.choice { display: flex; gap: .75rem; align-items: flex-start; border: 2px solid var(--line); border-radius: 10px;
  padding: .75rem; margin: .5rem 0; cursor: pointer; }
label.choice.chosen { border-color: var(--accent); background: var(--chosen); }
label.unsure { display: inline-flex; gap: .5rem; align-items: center; padding: .5rem .25rem; cursor: pointer;
  color: var(--muted); }
.tag { font-weight: 700; min-width: 1.2rem; }
input[type=radio] { width: 1.2rem; height: 1.2rem; margin: .15rem 0 0; flex: none; }
footer { padding-bottom: 3rem; }
button { font: inherit; font-weight: 600; padding: .8rem 1.4rem; border-radius: 10px; border: 0; background: var(--accent);
  color: var(--bg); cursor: pointer; }
#status { min-height: 1.5rem; }
textarea { width: 100%; min-height: 12rem; font: 13px/1.35 ui-monospace, Menlo, Consolas, monospace; }
"""

# Written for every current browser as it is: no build step, no modules.
SCRIPT = """
"use strict";
(function () {
  var page = document.getElementById("page");
  var meta = page.dataset;
  var pairs = Array.prototype.slice.call(document.querySelectorAll(".pair"));
  var nameInput = document.getElementById("judge-name");
  var done = document.getElementById("done");
  var bar = document.getElementById("bar");
  var status = document.getElementById("status");
  var link = document.getElementById("download");
  var output = document.getElementById("answers-json");
  var storeKey = "stratoecho-judge:" + meta.page;
  // The page's words for what this script says (hidden in the page, in the owner's language).
  function say(key, values) {
    return document.getElementById("say-" + key).textContent.replace(/\\{(\\w+)\\}/g, function (field, name) {
      return values && name in values ? String(values[name]) : field;
    });
  }
  var store = null;
  try { store = window.localStorage; store.getItem(storeKey); } catch (e) { store = null; }

  function randomId() {
    var bytes = new Uint8Array(8);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return (b + 256).toString(16).slice(1); }).join("");
  }
  function remembered() {
    try { return JSON.parse(store.getItem(storeKey)) || {}; } catch (e) { return {}; }
  }
  function answers() {
    var out = {};
    pairs.forEach(function (p) {
      var checked = p.querySelector("input:checked");
      if (checked) { out[p.dataset.pair] = checked.value; }
    });
    return out;
  }
  // The state goes two places. localStorage keeps it for a tab opened again later; the URL's
  // fragment keeps it for this tab's reload, because Chromium sometimes reloads a file:// page
  // into a fresh, empty localStorage (seen in headless Chromium 156).
  function toFragment(state) {
    var q = new URLSearchParams();
    q.set("page", meta.page);
    q.set("s", state.session);
    q.set("j", state.judge);
    Object.keys(state.answers).forEach(function (pid) { q.set("a" + pid, state.answers[pid]); });
    return "#" + q.toString();
  }
  function fromFragment() {
    var q = new URLSearchParams(window.location.hash.slice(1));
    if (q.get("page") !== meta.page) { return {}; }  // another page once had this file's name
    var state = { session: q.get("s") || "", judge: q.get("j") || "", answers: {} };
    q.forEach(function (value, key) {
      if (key.charAt(0) === "a") { state.answers[key.slice(1)] = value; }
    });
    return state;
  }
  function remember() {
    var state = { session: session, judge: nameInput.value, answers: answers() };
    try { window.history.replaceState(null, "", toFragment(state)); } catch (e) { /* kept in storage only */ }
    if (!store) { return; }
    try {
      store.setItem(storeKey, JSON.stringify(state));
    } catch (e) { /* private mode or full: the answers stay on the page until it is closed */ }
  }
  function update() {
    var given = answers();
    var n = Object.keys(given).length;
    done.textContent = String(n);
    bar.value = n;
    pairs.forEach(function (p) { p.classList.toggle("answered", p.dataset.pair in given); });
    Array.prototype.forEach.call(document.querySelectorAll("label.choice"), function (label) {
      label.classList.toggle("chosen", label.querySelector("input").checked);
    });
    remember();
  }
  function slug(text) {
    var s = text.normalize("NFKD").replace(/[^A-Za-z0-9]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 24);
    return s || "judge";
  }
  function save() {
    var judge = nameInput.value.trim();
    if (!judge) {
      status.textContent = say("need_name");
      nameInput.focus();
      return;
    }
    var given = answers();
    var n = Object.keys(given).length;
    if (n === 0) {
      status.textContent = say("nothing_to_save");
      return;
    }
    var doc = {
      format: meta.format, version: Number(meta.version), page: meta.page, persona: meta.persona,
      model_sha256: meta.model, data_sha256: meta.data, judge: judge, session: session,
      saved_at: new Date().toISOString(), pairs: pairs.length, answers: given
    };
    var text = JSON.stringify(doc, null, 2) + "\\n";
    var name = "answers-" + slug(judge) + "-" + meta.page.slice(0, 8) + ".json";
    output.value = text;
    output.hidden = false;
    if (link.getAttribute("href")) { URL.revokeObjectURL(link.getAttribute("href")); }
    link.href = URL.createObjectURL(new Blob([text], { type: "application/json" }));
    link.download = name;
    link.textContent = say("download_file_again", { file: name });
    link.hidden = false;
    link.click();
    status.textContent = (n < pairs.length
      ? say("saved_some", { n: n, count: pairs.length })
      : say("saved_all", { n: n })) + " " + say("send_back", { file: name });
  }

  var here = fromFragment();  // this tab's own state first, then what the browser kept
  var before = here.session ? here : (store ? remembered() : {});
  var session = typeof before.session === "string" && before.session ? before.session : randomId();
  if (typeof before.judge === "string") { nameInput.value = before.judge; }
  pairs.forEach(function (p) {
    var pick = before.answers && before.answers[p.dataset.pair];
    Array.prototype.forEach.call(p.querySelectorAll("input"), function (input) {
      if (input.value === pick) { input.checked = true; }
    });
  });
  document.addEventListener("change", update);
  nameInput.addEventListener("input", remember);
  document.getElementById("save").addEventListener("click", save);
  update();
  // Marks the page as restored: whoever reads it (a test, a helper) knows the counts are this script's.
  document.documentElement.dataset.ready = "yes";
})();
"""

PAGE = Template("""<!DOCTYPE html>
<html lang="$lang">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; \
script-src '$script_hash'; img-src 'none'; connect-src 'none'; form-action 'none'; base-uri 'none'">
<meta name="referrer" content="no-referrer">
<title>$title</title>
<style>$css</style>
</head>
<body>
<header><div><span>$answered</span>\
<progress id="bar" max="$count" value="0"></progress></div></header>
<section class="intro">
<h1>$title</h1>
<p>$intro</p>
<p>$cut_note</p>
<label>$your_name <input id="judge-name" autocomplete="name" maxlength="100"></label>
</section>
<main id="page" data-format="$format" data-version="$version" data-page="$page" data-persona="$name" \
data-model="$model" data-data="$data">
$pairs
</main>
<footer>
<p>$footer</p>
<button id="save" type="button">$save</button>
<p id="status" role="status"></p>
<p><a id="download" hidden>$download_again</a></p>
<textarea id="answers-json" readonly hidden aria-label="$answers_label"></textarea>
<div hidden>
$says
</div>
</footer>
<script>$script</script>
</body>
</html>
""")


def _text(text: str) -> str:
    return escape(text, quote=True)


def _words(text: str, **html: str) -> str:
    """A text of the words table as HTML: escaped, then its {fields} filled with `html` (markup
    already escaped or made here)."""
    return fill(_text(text), **html)


def _pair_html(pair: Pair, number: int, count: int, words: dict[str, str], name: str) -> str:
    pid = _text(pair.id)
    context = "\n".join(f'<li><span class="who">{_text(who)}:</span> <span class="text">{_text(text)}</span></li>'
                        for who, text in pair.context)
    choices = "\n".join(
        f'<label class="choice"><input type="radio" name="pair-{pid}" value="{side}">'
        f'<span class="tag">{side}</span><span class="text">{_text(text)}</span></label>'
        for side, text in (("A", pair.a), ("B", pair.b)))
    heading = _words(words["pair_number"], number=str(number), count=str(count))
    return (f'<article class="pair" data-pair="{pid}">\n<h2>{heading}</h2>\n'
            f'<ol class="context">\n{context}\n</ol>\n<fieldset>\n<legend>{_words(words["title"], name=name)}</legend>\n'
            f'{choices}\n<label class="unsure"><input type="radio" name="pair-{pid}" value="{CANT_TELL}">'
            f"{_words(words['cant_tell'])}</label>\n</fieldset>\n</article>")


def script_hash(script: str = SCRIPT) -> str:
    """The CSP source that lets exactly this inline script run."""
    return "sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")


def render_page(*, persona: str, page: str, model_sha256: str, data_sha256: str, pairs: list[Pair],
                marker: str, language: str | None = None) -> str:
    """judge.html as text, in `language` (ISO 639-1; English where judge_words.toml has no table
    for it). Every text from the data, the model or persona.toml is escaped here."""
    lang, words = page_words(language)
    name = _text(persona)
    body = "\n".join(_pair_html(p, i + 1, len(pairs), words, name) for i, p in enumerate(pairs))
    says = "\n".join(f'<span id="say-{key}">{_text(words[key])}</span>' for key in SCRIPT_WORDS)
    count = str(len(pairs))
    return PAGE.substitute(
        lang=lang, title=_words(words["title"], name=name), intro=_words(words["intro"], name=name),
        cut_note=_words(words["cut_note"], marker=_text(marker)), your_name=_words(words["your_name"]),
        answered=_words(words["answered"], done='<strong id="done">0</strong>', count=count),
        footer=_words(words["footer"]), save=_words(words["save"]), download_again=_words(words["download_again"]),
        answers_label=_words(words["answers_label"]), says=says,
        name=name, css=CSS, script=SCRIPT, script_hash=script_hash(), count=count,
        format=ANSWERS_FORMAT, version=VERSION, page=_text(page), model=_text(model_sha256),
        data=_text(data_sha256), pairs=body)
