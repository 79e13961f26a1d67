"""The daemon logs every musing it makes with the facts its prompt carried (payload/daemon.py,
docs/payload.md "What each musing was told"), and the bench's report reads them back."""

from __future__ import annotations

import json

from structlog.testing import capture_logs

from payload.parts.sensors import fresh
from payload.persona.worker import Generation
from sim.bench.report.musing_report import musings_section
from stratoecho.bundle import load_bundle
from stratoecho.musing_quality import MusingFacts
from stratoecho.wire.uplink import ApiStatus
from tests.test_payload import _daemon

EVENTS = ("musing", "musing_empty", "musing_dropped_by_guard")


def test_each_musing_is_logged_with_what_its_prompt_said(tmp_path, tiny_bundle):
    d = _daemon(tmp_path, load_bundle(tiny_bundle))
    prompts = []
    said = iter([
        Generation("Waiting here under the thin blue sky.", 5, 0.01, "stop"),
        Generation("the air is thin and the sky above is", 48, 0.01, "length"),
        Generation("<PHONE_1> <EMAIL_2>", 6, 0.01, "stop"),  # only placeholders: nothing left to send
        Generation("mail ada.lindqvist@example.org", 7, 0.01, "stop"),
        Generation("a long thought. " * 40, 48, 0.01, "length"),
    ])

    def generate(prompt, max_tokens, seed=None):
        prompts.append(prompt)
        return next(said)

    d.parts.worker.generate = generate
    d.daemon.run_once("beacon")
    asked = d.parts.reach.ask("weather", "52.7,-2.7")
    d.parts.reach.on_answer(asked, int(ApiStatus.OFFLINE), "")
    with capture_logs() as logs:
        d.parts.worker.n_ctx = 200
        d.daemon.run_once("think")  # a small context leaves no room for the outcome: the budget drops it
        d.parts.worker.n_ctx = 1024
        for _ in range(4):
            d.daemon.run_once("think")
    events = [e for e in logs if e["event"] in EVENTS]
    assert [e["event"] for e in events] == ["musing", "musing", "musing_empty", "musing_dropped_by_guard", "musing"]

    r = fresh(d.parts.beacon.last_readings())
    for e, prompt in zip(events, prompts):
        f = e["facts"]
        assert MusingFacts.from_dict(f).to_dict() == f
        assert f["phase"] == d.parts.flight.governor.phase.value and f["mode"] == d.parts.flight.governor.mode.value
        # The prompt words the reading itself; the facts keep it rounded (rounding twice can differ).
        assert f["alt_m"] == round(r.alt_m) and f"{r.alt_m / 1000:.1f} km up" in prompt
        assert f["temp_c"] == round(r.temp_c, 1) and f"{int(round(r.temp_c))} °C outside" in prompt
        assert f["pressure_hpa"] == round(r.pressure_hpa, 1) and f"{r.pressure_hpa:.0f} hPa" in prompt
        assert f["batt_v"] == round(r.batt_mv / 1000, 3) and f"battery {f['batt_v']:.2f} V" in prompt
        assert f["sun_up"] == ("in sunlight" in prompt) and "sats" not in f and "satellite" not in prompt
        assert "box_temp_c" not in f and "inside the box" not in prompt
        assert e["boot"] == d.parts.flight.boot and e["t_s"] >= 0 and e["tokens"] > 0
    # What the prompt carried of its question, and only then.
    assert "requests" not in events[0]["facts"] and "no internet" not in prompts[0]
    # Then in the next two prompts (musings.OUTCOME_PROMPTS), and no more: it is news, not the flight.
    assert all(e["facts"]["requests"] == [{"api": "weather", "outcome": "offline"}] for e in events[1:3])
    assert "no internet" in prompts[1] and "no internet" in prompts[2]
    assert all("requests" not in e["facts"] for e in events[3:]) and "no internet" not in prompts[3] + prompts[4]

    first, cut_short, empty, dropped, long = events
    assert (first["text"], first["finish"], first["cut"]) == ("Waiting here under the thin blue sky.", "stop", False)
    # stopped at the token limit after "is": ended at its last whole word (prompts.finish_unfinished)
    assert (cut_short["text"], cut_short["finish"], cut_short["cut"]) == ("the air is thin and the sky above…",
                                                                          "length", True)
    assert empty["raw_chars"] > 0 and "text" not in empty
    assert "text" not in dropped and "example.org" not in json.dumps(dropped) and dropped["reasons"]
    assert long["cut"] is True and len(long["text"]) <= d.cfg.persona.max_chars

    # The bench reads the same events back from the log, in order.
    (tmp_path / "payload.log").write_text("".join(json.dumps(e) + "\n" for e in logs))
    section = musings_section(tmp_path)
    q = section["quality"]
    assert q["measured"] == 4 and q["withheld_by_guard"] == 1
    assert q["degenerate"]["by_kind"]["cut_mid_word"]["count"] == 0  # "... the sky above is" was ended instead
    assert q["degenerate"]["by_kind"]["no_words"]["count"] == 1  # the placeholders
    assert q["cut_by_budget"]["count"] == 2
    assert [e["text"] for e in section["first"]] == ["Waiting here under the thin blue sky.",
                                                     "the air is thin and the sky above…", "", None, long["text"]]


def test_its_own_musings_reach_the_prompt_only_when_the_configuration_asks(tmp_path, tiny_bundle):
    """A 135M persona given its own last musings copied them (the Pi configuration's bench flights,
    docs/payload.md): by default a prompt offers none; `recall_musings = N` offers up to N."""
    said = ["The fields are a patchwork from here.", "The sky is darker now, and wider."]
    for recall, expect in ((0, False), (2, True)):
        (tmp_path / str(recall)).mkdir()
        d = _daemon(tmp_path / str(recall), load_bundle(tiny_bundle))
        d.cfg.persona.recall_musings = recall
        d.parts.worker.n_ctx = 1024  # room for every memory: only the setting decides
        prompts, answers = [], iter(Generation(t, 8, 0.01, "stop") for t in said)
        d.parts.worker.generate = (lambda prompt, max_tokens, seed=None, prompts=prompts, answers=answers:
                             prompts.append(prompt) or next(answers))
        d.daemon.run_once("beacon")
        with capture_logs() as logs:
            d.daemon.run_once("think")
            d.daemon.run_once("think")
        assert [e.get("text") for e in logs if e["event"] == "musing"] == said
        assert ("you thought" in prompts[1] and said[0] in prompts[1]) is expect
        assert "you thought" not in prompts[0]
        assert logs[-1]["facts"].get("memories", 0) == (1 if expect else 0)
