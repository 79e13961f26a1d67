"""Musings made of the owner's words and the flight's facts (issue 49, item 3), through the daemon:
her own lines in the prompt, several candidates judged and the best aired, a true clause the
payload writes where a figure is owed, and how many candidates a musing gets."""

from __future__ import annotations

from structlog.testing import capture_logs

from payload.persona import clauses
from payload.persona.choosing import Candidate
from payload.persona.owner import Owner, load_owner
from payload.persona.wording import wording
from payload.persona.worker import Generation
from stratoecho.bundle import load_bundle
from stratoecho.exemplars import OwnerLine
from stratoecho.languages import clause_wordings
from stratoecho.musing_claims import FIGURE_KINDS, MusingFacts, claims
from stratoecho.substance import words_beyond
from tests.test_payload import _daemon


def _scripted(d, texts, prompts):
    said = iter(texts)

    def generate(prompt, max_tokens, seed=None):
        prompts.append(prompt)
        return Generation(next(said), 12, 0.5, "stop")
    d.parts.worker.generate = generate


def test_the_tiny_bundle_carries_its_owner(tiny_bundle):
    owner = load_owner(load_bundle(tiny_bundle))
    assert owner.lines and owner.fillers and owner.words_beyond and owner.voice is not None
    assert 0.0 <= owner.voice("honestly, the sky did that thing again") <= 1.0


def _quality(owner: Owner, text: str) -> float:
    """What payload/persona/choosing.py ranks candidates by where nothing else tells them apart."""
    return Candidate(0, text, voice=owner.voice(text), beyond=words_beyond(text, owner.fillers)).quality(owner.words_beyond)


def test_the_best_of_the_candidates_airs_and_every_other_is_logged(tmp_path, tiny_bundle):
    d = _daemon(tmp_path, load_bundle(tiny_bundle))
    d.cfg.persona.candidates = 3
    d.daemon.run_once("beacon")
    texts = ["ha the the the it was it the it was", "Honestly? the sky did that thing again, properly lovely up here.",
             "The pressure has fallen away to almost nothing, and I count the minutes."]
    _scripted(d, texts, prompts := [])
    with capture_logs() as logs:
        aired = d.daemon.run_once("think")
    assert aired == max(texts[1:], key=lambda t: _quality(d.parts.musings.owner, t))  # fillers alone never air
    musing = next(e for e in logs if e["event"] == "musing")
    assert musing["candidates"] == 3 and "voice" in musing and "beyond" in musing
    passed = [e for e in logs if e["event"] == "musing_passed_over"]
    assert sorted(e["text"] for e in passed) == sorted(t for t in texts if t != aired)
    assert next(e["why"] for e in passed if e["text"] == texts[0]) == "fillers"
    assert len(prompts) == 3 and len(set(prompts)) == 1  # one prompt, read once: the candidates differ by seed


def test_her_lines_are_in_the_prompt_and_a_musing_that_copies_one_never_airs(tmp_path, tiny_bundle):
    d = _daemon(tmp_path, load_bundle(tiny_bundle))
    d.cfg.persona.candidates = 2
    line = "the cat knocked my coffee over the whole keyboard again"
    d.parts.musings.owner = Owner(lines=(OwnerLine(line, ("sun",)),))
    d.daemon.run_once("beacon")  # on the pad in the sun: her line about the sun is the one
    _scripted(d, [line, "The grass below the pad is silver with the last of the dew."], prompts := [])
    with capture_logs() as logs:
        aired = d.daemon.run_once("think")
    assert aired == "The grass below the pad is silver with the last of the dew."
    assert f'You once wrote:\n- "{line}"' in prompts[0]
    assert next(e["why"] for e in logs if e["event"] == "musing_passed_over") == "copies"
    assert next(e for e in logs if e["event"] == "musing")["lines"] == 1


def _filled(language: str, facts: MusingFacts) -> set[str]:
    """Every clause `language` could open a musing with for `facts`, filled."""
    w, table = wording(language), clause_wordings(language)
    return {said for kind in clauses.available(facts) for n in range(8)
            if (said := clauses.write(kind, facts, table, w.number, n))}


def test_a_figure_owed_is_written_by_the_payload_as_a_true_clause(tmp_path, tiny_bundle):
    d = _daemon(tmp_path, load_bundle(tiny_bundle))
    d.cfg.persona.figure_goal = 0.6
    d.parts.musings.owner = Owner()
    d.daemon.run_once("beacon")  # on the pad: a temperature and the phase are what it can say
    go_on = "the grass is silver with dew and the kettle is on."
    _scripted(d, [" " + go_on], prompts := [])
    with capture_logs() as logs:
        aired = d.daemon.run_once("think")
    musing = next(e for e in logs if e["event"] == "musing")
    facts = MusingFacts.from_dict(musing["facts"])
    clause = aired[: -len(go_on)].strip()
    assert clause in {c.strip() for c in _filled("en", facts)} and prompts[0].endswith(clause)
    found = [c for c in claims(aired.lower(), facts) if c.kind in FIGURE_KINDS]
    assert found and all(c.true for c in found) and musing["clause"] in ("temperature", "phase")
    assert list(d.parts.musings._figures) == [True]


def test_a_german_persona_gets_its_clause_in_german(tmp_path, tiny_bundle):
    d = _daemon(tmp_path, load_bundle(tiny_bundle))
    d.cfg.persona.figure_goal = 0.6
    d.parts.musings.owner = Owner()
    d.parts.musings.language = "de"
    d.daemon.run_once("beacon")
    _scripted(d, ["das gras ist noch nass und mücke schläft im auto"], prompts := [])
    with capture_logs() as logs:
        aired = d.daemon.run_once("think")
    facts = MusingFacts.from_dict(next(e for e in logs if e["event"] == "musing")["facts"])
    assert any(aired.startswith(c) for c in _filled("de", facts))
    assert "Gerade bist du" in prompts[0]


def test_how_many_candidates_follows_the_measured_speed_and_the_energy(tmp_path, tiny_bundle):
    d = _daemon(tmp_path, load_bundle(tiny_bundle))
    d.cfg.persona.candidates = 0  # auto
    d.parts.cadence.set_intervals(60.0, 600.0)
    assert d.parts.musings._how_many(64) == 1  # nothing measured and no board: one
    d.parts.musings._speed.add(90, 10.0)  # 9 tokens a second, a Zero 2 W's
    assert d.parts.musings._how_many(64) == 4
    for _ in range(12):
        d.parts.musings._speed.add(5, 10.0)  # a slow, hot board
    assert d.parts.musings._how_many(64) == 1
    d.cfg.persona.board = "pi-zero-2w"
    d.parts.musings._speed = type(d.parts.musings._speed)()  # nothing measured: the board's prediction
    assert d.parts.musings._how_many(64) == 4
    d.cfg.persona.candidates = 2
    assert d.parts.musings._how_many(64) == 2


def test_the_list_mark_and_quotes_copied_from_her_lines_are_taken_off():
    from payload.persona.prompts import unquote

    assert unquote('- "the last thing you want is a snow angel"') == "the last thing you want is a snow angel"
    assert unquote("- the balloon has been going up") == "the balloon has been going up"
    assert unquote("going up and looking at the horizon. it's fine.\"") == "going up and looking at the horizon. it's fine."
    for own in ('the sky is "blue" today', '"quoted" and then more', "-40 °C out here", 'it is "fine"'):
        assert unquote(own) == own
