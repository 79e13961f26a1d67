"""Musings: every `schedule.musing_s`, the last readings become a prompt, the persona worker a
musing, the outbound guard lets it through or not, and it goes to the store as a record (and,
with `persona.sentences`, as UKHAS text sentences for stock gateways)."""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta

import structlog

from stratoecho import wire
from stratoecho.boards import board as board_of
from stratoecho.boards import predicted_tokens_per_s
from stratoecho.bundle import Bundle
from stratoecho.claim_words import GUARDED
from stratoecho.exemplars import copies, moment, nearest
from stratoecho.gguf_header import GgufError, model_shape
from stratoecho.languages import clause_wordings
from stratoecho.musing_claims import claims
from stratoecho.musing_quality import TOLD_KINDS, MusingFacts, Request, opening
from stratoecho.substance import words_beyond
from stratoecho.wire.musing_sentence import MIN_PART

from ..cadence import Cadence
from ..config import PersonaSection, RadioSection
from ..parts.sensors import Readings, fresh
from ..persona import clauses, truth
from ..persona.choosing import Candidate, choose, why_not
from ..persona.clauses import join
from ..persona.guard import OutboundGuard
from ..persona.memory import Memory, speaker
from ..persona.owner import load_owner
from ..persona.prompts import (
    PromptContext,
    build_prompt,
    cut_prompt_echo,
    finish_unfinished,
    fit_musing,
    memory_query,
    prompt_budget_chars,
    question,
    sun_is_up,
    unquote,
)
from ..persona.reach import Outcome
from ..persona.reach import describe as describe_outcome
from ..persona.wording import unguarded, wording
from ..persona.worker import PersonaError, PersonaWorker
from ..policy.budget import candidates, musing_record_bytes, think_budget
from ..watchdog import RestartLimiter
from .beacon import Beacon
from .flight import Flight

log = structlog.get_logger(__name__)

MUSING_AIRTIME_SHARE = 0.25  # of the duty-cycle budget: the beacon and repairs need the rest
# An answer (or the lack of one) is news for the next musings, not for the next hour: kept in every
# prompt until the next question, "asked for the news: nobody answered" was what SmolLM2-135M
# mused about instead of its flight (docs/payload.md, "What the persona is told").
OUTCOME_PROMPTS = 2
# A musing that opens with the first three words of one of the last this many is made again: the goal
# is no opening in more than 15 % of a flight's musings (issue 40), and the Pi configuration makes ~12 in 2 h.
OPENINGS_KEPT = 12
# A musing is made again for a figure of the flight (a true height, temperature, phase or time aloft)
# while fewer than `[persona] figure_goal` of the last FIGURE_WINDOW had one: SmolLM2-135M states one
# in about one musing in five unasked, and invents figures when asked for them outright (docs/payload.md).
FIGURE_WINDOW = 10
# Asked its phase for a figure, a persona must answer with one more often than this (counting one
# answer before the first question) to be asked again this boot: a model that never does (a tiny
# test model, a persona that writes another language) would spend four generations on every musing.
FIGURE_ANSWERS = 0.25
# The owner's own lines in a prompt (stratoecho/exemplars.py): one to three, as the context allows,
# and none of the last LINES_KEPT offered again soon: the same line in every prompt is copied.
MAX_LINES = 3
LINES_KEPT = 12


class Speed:
    """Tokens a second of the last generations as they took (on the bench: as they were priced on
    the rehearsed board), prompt included: what the next musing's candidates will take."""

    WEIGHT = 0.3  # of the newest generation

    def __init__(self) -> None:
        self.tokens_per_s: float | None = None

    def add(self, tokens: int, seconds: float) -> None:
        if tokens <= 0 or not seconds or seconds <= 0 or not math.isfinite(seconds):
            return
        tps = tokens / seconds
        self.tokens_per_s = tps if self.tokens_per_s is None else (1 - self.WEIGHT) * self.tokens_per_s + self.WEIGHT * tps


@dataclass
class MusingStats:
    musings_generated: int = 0
    musings_queued: int = 0
    musing_sentences_queued: int = 0  # [persona] sentences: the text sentences of the musings queued
    musings_dropped_by_guard: int = 0
    musings_empty: int = 0
    musings_too_short: int = 0  # under wire's MIN_PART characters: asked again once, at the next sentence
    musings_untrue: int = 0  # made a false claim (persona/truth.py): cut, made again or held back
    musings_held_untrue: int = 0  # of those, none of whose versions could air
    musings_held_repeated: int = 0  # every version that could air opened as a recent musing did: none aired
    made_again: dict = field(default_factory=dict)  # why a musing that could air was made again: opening, no figure
    persona_failures: int = 0
    tokens: int = 0
    generation_s: float = 0.0
    guard_reasons: dict = field(default_factory=dict)


@dataclass(frozen=True)
class MusingPlan:
    """The configuration a musing is made by: [persona], [radio] (its frame, duty cycle and airtime),
    the battery's capacity (the energy left scales the budget) and the $$ line's size the air plan
    allows (None: the radio's frame)."""

    persona: PersonaSection
    radio: RadioSection
    battery_wh: float
    line_bytes: int | None = None


class Musings:
    def __init__(self, flight: Flight, cadence: Cadence, bundle: Bundle, worker: PersonaWorker, beacon: Beacon,
                 memory: Memory, stopping: threading.Event, plan: MusingPlan):
        """Musings from `worker` about what `beacon` last read (its sensors, and the answers its `reach` heard)."""
        self.persona, self.radio, self.battery_wh, self.callsign = plan.persona, plan.radio, plan.battery_wh, flight.callsign
        self.cadence, self.bundle, self.worker, self.boot = cadence, bundle, worker, flight.boot
        self.clock, self.sensors, self.beacon, self.governor = flight.clock, beacon.sensors, beacon, flight.governor
        self.memory, self.reach, self.outbound = memory, beacon.reach, flight.outbound
        self.guard = OutboundGuard(hashed=bundle.blocklist())
        self.stopping = stopping  # set when the daemon stops: a generation cut short is no failure
        self.seed, self.price_generation = flight.fitted.seed, flight.fitted.price_generation
        # A musing's $$ lines end within the turn after a position sentence (the air plan's size).
        self.line_bytes = min(plan.line_bytes or plan.radio.mtu, plan.radio.mtu)
        self.counts = MusingStats()
        self.ask_again = False  # the last musing was too short to be worth its air: the daemon asks once more
        self._short_before = False
        self.restarts = RestartLimiter(3, 3600.0)  # then fly on without musings for the hour
        self._persona_down = False
        self._asked = 0  # musings asked for this boot (the sampling seed)
        self._told: dict[Outcome, int] = {}  # an outcome (frozen: equal by value) -> the prompts that carried it
        self._openings: deque | None = None  # the last musings' openings (_recent_openings)
        self._figures: deque = deque(maxlen=FIGURE_WINDOW)  # whether each of the last musings stated a true figure
        self._figure_asked, self._figure_answered = 0, 0  # versions asked its phase for a figure; those with one
        self.owner = load_owner(bundle)  # her lines, commonest words and voice classifier ([owner]; none before it)
        lines = self.owner.lines
        self._starts_lower = (sum(x.text[:1].islower() for x in lines) / len(lines)) if lines else None
        self._lines_offered: deque = deque(maxlen=LINES_KEPT)
        self._speed = Speed()
        self._model_shape = False  # not read yet (_shape)
        self.language = bundle.manifest.persona.language or ""  # the prompt's words and the guard's (docs/payload.md)
        if hint := unguarded(self.language):  # printed on the terminal at start too (payload/__main__.py)
            log.warning("persona_language_unguarded", language=self.language, reads="numbers and units",
                        guarded=list(GUARDED), hint=hint)

    def stats(self) -> dict[str, object]:
        return asdict(self.counts)

    def take_ask_again(self) -> bool:
        """Whether the last musing was too short to be worth its air and should be asked once more
        (from the next readings); asking clears it."""
        again, self.ask_again = self.ask_again, False
        return again

    def once(self) -> str | None:
        """One musing from the current readings; None when nothing worth sending came out."""
        if not self.governor.runs("think"):
            return None  # the language model is the first load shed
        r = self.beacon.last_readings() or self.sensors.read()
        max_tokens, max_chars = self.persona.max_tokens, self.persona.max_chars
        budget = self.budget()
        if budget is not None:
            if not budget.enabled:
                return None
            max_tokens, max_chars = budget.max_tokens, budget.max_chars
            self.worker.set_budget(budget.timeout_s, budget.n_threads, budget.n_ctx)
        chosen = self._make(r, max_tokens, max_chars)
        if chosen is None:
            return None
        verdict, text, gen, made, facts = chosen
        if verdict.cut:
            self._untrue(verdict, text, "cut", made)
            text = verdict.text
        self._recent_openings().append(opening(text))
        self._figures.append(verdict.figure)
        made["claims"] = truth.judge(text, facts).counts()
        seq = self.outbound.record(wire.Kind.MUSING, text, created=r.time.timestamp())
        self.counts.musings_queued += 1
        # fit_musing only shortens: given the whole length it cleans without cutting.
        cut = text != fit_musing(gen.text, len(gen.text))
        log.info("musing", seq=seq, seconds=round(gen.seconds, 2), text=text, cut=cut, **made)
        if self.persona.sentences:
            self.sentences(seq, r, text)
        self.memory.remember_musing(self.boot, seq, r.time, text)
        self.reach.consider({"lat": r.lat, "lon": r.lon} if r.fix_valid else {}, text)
        return text

    def _make(self, r: Readings, max_tokens: int, max_chars: int):
        """The musing to air for readings `r`: its verdict, text as made, generation, log fields and
        facts; None when nothing could air. The persona writes `_how_many` candidates (the owner's
        own lines nearest to the moment in each prompt; where a figure of the flight is owed, each
        starting with a true clause the payload writes: payload/persona/clauses.py), each judged
        by the truth guard, its opening, its figure, its substance and its voice, and the best
        that may air goes (payload/persona/choosing.py); more are made (up to truth.MAKE_AGAIN
        again) only while none may air or none is ideal. When every one that may air opens as a
        recent musing did, the turn is silent."""
        ctx, facts, heard_from = self._context(r)
        owes_figure = self._owes_figure()
        n = self._how_many(max_tokens)
        made: list[tuple[Candidate, tuple]] = []
        logged: set[int] = set()  # versions logged as made again
        versions = 0
        tries = max(n, 1 + truth.MAKE_AGAIN)
        for i in range(tries):
            clause = self._clause(facts, i) if owes_figure else None
            # Without a clause the persona is asked its phase, while it still answers with one.
            owes = owes_figure and (clause is not None or self._answers_figures())
            if i >= n:
                if any(c.ideal(owes) for c, _ in made):
                    break
                self._made_again(made, logged, owes)  # none ideal: each that could air is logged, once
            asked_figure = owes and clause is None and i > 0
            ask = question(self.counts.musings_queued + i, ctx.phase, figure=asked_figure, language=ctx.language)
            self._figure_asked += asked_figure
            prompt = self._render(r, replace(ctx, question=ask))
            gen = self._generate(prompt + (clause[1] if clause else ""), max_tokens, again=i > 0)
            versions = i + 1 if gen is not None else i
            if gen is None:
                if self.stopping.is_set() or not made:
                    return None
                break  # the worker failed: choose among those made
            raw = join(clause[1], gen.text) if clause and gen.text.strip() else gen.text
            text = fit_musing(unquote(cut_prompt_echo(finish_unfinished(raw, gen.finish_reason), heard_from,
                                                      ctx.language)), max_chars)
            # Each musing made is one event with what its prompt said, for the bench's measure of
            # musings (docs/payload.md, "What each musing was told"); the guard's drops carry no text.
            fields = {"boot": self.boot, "t_s": round(self.clock.elapsed_s(), 1), "tokens": gen.tokens,
                      "finish": gen.finish_reason, "facts": facts.to_dict()}  # boot: the think thread has no bound context
            if heard_from:
                fields["heard_from"] = heard_from  # other balloons its prompt quoted (docs/network.md, "They talk")
            if clause:
                fields["clause"] = clause[0]  # the payload wrote its first words: a figure of that kind
            if ctx.lines:
                fields["lines"] = len(ctx.lines)  # the owner's own lines its prompt showed
            if not self._passes(text, gen, fields, again=i > 0):
                if i == 0 and n == 1:
                    return None  # one a moment: an empty, private or short musing is asked again next time
                continue
            verdict = truth.judge(text, facts)  # what it claims, against what the payload knows now
            self._figure_answered += asked_figure and verdict.text is not None and verdict.figure
            if verdict.text is None:
                last = i == tries - 1 and not made
                self._untrue(verdict, text, "held back" if last else "made again", fields)
                continue
            made.append((self._judged(i, verdict, ctx.lines, facts), (verdict, text, gen, fields, facts)))
        owes = owes_figure and (self._clause(facts, 0) is not None or self._answers_figures())
        chosen = choose([c for c, _ in made], owes, self.owner.words_beyond)
        for c, (verdict, text, _, fields, _) in made:
            if c is not chosen and c.index not in logged:  # logged, so every one made is measured
                log.info("musing_passed_over", why=why_not(c, owes) or ("copies" if c.copies else "quality"),
                         opening=opening(verdict.text), text=text, **self._scores(c), **fields)
        if chosen is None:
            self.counts.musings_held_untrue += 1
            return None
        best = dict(made)[chosen]
        verdict, text, _, fields, _ = best
        if not chosen.fresh:
            # Every version opened as one of the last OPENINGS_KEPT did: a turn of silence rather
            # than a template (no opening in more than 15 % of a flight's musings, issue 40).
            self.counts.musings_held_repeated += 1
            unlogged = {} if chosen.index in logged else {"text": text}  # logged with its text when made again
            log.info("musing_held_back", why="opening", opening=opening(verdict.text), **unlogged, **fields)
            return None
        fields.update(self._scores(chosen), candidates=versions)  # versions made, the one that airs included
        return best

    def _made_again(self, made: list, logged: set[int], owes: bool) -> None:
        """Another version is made because none so far is ideal: each that could air and is not yet
        logged is a `musing_made_again` event (why it is not ideal), counted in `made_again`."""
        for c, (verdict, text, _, fields, _) in made:
            if c.index in logged:
                continue
            logged.add(c.index)
            why = why_not(c, owes) or ("copies" if c.copies else "quality")
            self.counts.made_again[why] = self.counts.made_again.get(why, 0) + 1
            log.info("musing_made_again", why=why, opening=opening(verdict.text), text=text, **self._scores(c), **fields)

    def _how_many(self, max_tokens: int) -> int:
        """Candidates for this musing: `[persona] candidates`, or with 0 (auto) as many as the
        board's speed allows in a share of the musing period (payload/policy/budget.py
        `candidates`): the speed the last generations took where one was measured (on the bench,
        the rehearsed board's), else the configured board's prediction, else one."""
        fixed = self.persona.candidates
        if fixed:
            return fixed
        tps = self._speed.tokens_per_s
        board = self.persona.board
        if tps is None and board is not None:
            tps = predicted_tokens_per_s(board_of(board), self.bundle.model_path.stat().st_size)
        if tps is None:
            return 1
        g = self.governor
        energy = max(0.0, 1.0 - g.used_wh / self.battery_wh)
        return candidates(tps, self.cadence.musing_s, max_tokens, energy=energy, mode=g.mode).n

    def _clause(self, facts: MusingFacts, i: int) -> tuple[str, str] | None:
        """The kind and words of a true clause for the `i`th candidate to start with: the kinds
        this moment can fill, in turn from one musing and one candidate to the next; None where the
        language has no wording for any."""
        if not self.persona.clauses:
            return None
        table = clause_wordings(self.language)
        kinds = clauses.available(facts)
        if not table or not kinds:
            return None
        w = wording(self.language)
        for k in range(len(kinds)):
            kind = kinds[(self.counts.musings_queued + i + k) % len(kinds)]
            said = clauses.write(kind, facts, table, w.number, self.counts.musings_queued + i)
            if said:
                return kind, clauses.in_owner_case(said, self._starts_lower)
        return None

    def _judged(self, i: int, verdict: truth.Verdict, shown, facts: MusingFacts) -> Candidate:
        said = verdict.text or ""
        o = self.owner
        return Candidate(index=i, text=verdict.text, fresh=opening(said) not in self._recent_openings(),
                         figure=verdict.figure, copies=any(copies(said, line) for line in shown),
                         grounded=any(c.true and c.kind in TOLD_KINDS for c in claims(said, facts)),
                         beyond=words_beyond(said, o.fillers) if o.fillers else None,
                         voice=o.voice(said) if o.voice is not None else None)

    @staticmethod
    def _scores(c: Candidate) -> dict:
        return {k: v for k, v in (("voice", None if c.voice is None else round(c.voice, 3)), ("beyond", c.beyond))
                if v is not None}

    def _owes_figure(self) -> bool:
        """Whether this musing should state a true figure of the flight: without one, fewer than
        `[persona] figure_goal` of the last FIGURE_WINDOW musings (this boot's) would have."""
        return sum(self._figures) < self.persona.figure_goal * (len(self._figures) + 1)

    def _answers_figures(self) -> bool:
        """Whether asking its phase is still worth a generation: more than FIGURE_ANSWERS of the
        versions asked so far this boot (and one before the first) stated a figure: after three
        asked and none answered, no more are asked."""
        return self._figure_answered + 1 > FIGURE_ANSWERS * (self._figure_asked + 1)

    def _recent_openings(self) -> deque:
        """The openings of the last OPENINGS_KEPT musings, this boot's and (after a reboot) those memory holds."""
        if self._openings is None:
            older = self.memory.recent(OPENINGS_KEPT, kinds=("musing",))
            self._openings = deque((opening(m.text) for m in reversed(older)), maxlen=OPENINGS_KEPT)
        return self._openings

    def _render(self, r: Readings, ctx: PromptContext) -> str:
        p = build_prompt(self.bundle.manifest.persona.system_prompt, fresh(r), ctx,
                         prompt_budget_chars(self.worker.n_ctx, self.persona.max_tokens))
        if p.over_budget:
            log.warning("prompt_over_budget", chars=p.chars)
        return self.bundle.render_prompt(p.messages)

    def _context(self, r: Readings) -> tuple[PromptContext, MusingFacts, list[str]]:
        """What the prompt for readings `r` says beside its question, what it told the persona, and
        the other balloons whose musings it may quote ("FAR1 said ...")."""
        phase, mode = self.governor.phase.value, self.governor.mode.value
        # Read once, so the facts logged name the outcomes the prompt says (the radio's thread may add one).
        recent = self.reach.recent_outcomes(3)
        self._told = {o: self._told.get(o, 0) for o in recent}  # forget those no longer recent
        outcomes = [o for o in recent if self._told[o] < OUTCOME_PROMPTS]
        lang = self.language
        memories = self.memory.for_prompt(memory_query(r, phase, mode, lang), musings=self.persona.recall_musings)
        g = self.governor  # what it knows beside the readings: the time aloft is said, the rest the truth guard holds
        aloft = g.aloft_s(r.time.timestamp())
        ctx = PromptContext(phase=phase, mode=mode, memories=memories, outcomes=[describe_outcome(o, lang) for o in outcomes],
                            aloft_s=aloft, question=question(self.counts.musings_queued, phase, language=lang), language=lang)
        known = dict(rate_m_s=g.phases.rate_m_s, battery_share=g.energy_share(),
                     distance_km=g.from_launch_km(r.lat, r.lon) if r.fix_valid else None)
        ctx = replace(ctx, lines=self._lines_for(prompt_facts(fresh(r), ctx, outcomes, 0, **known)))
        p = build_prompt(self.bundle.manifest.persona.system_prompt, fresh(r), ctx,
                         prompt_budget_chars(self.worker.n_ctx, self.persona.max_tokens))
        # The budget drops the oldest outcomes first: those kept are the newest.
        kept = outcomes[len(outcomes) - p.outcomes:]
        for o in kept:
            self._told[o] += 1
        self._lines_offered.extend(p.lines)
        # asked again, the same
        ctx = replace(ctx, memories=p.kept, outcomes=[describe_outcome(o, lang) for o in kept], lines=tuple(p.lines))
        facts = prompt_facts(fresh(r), ctx, kept, p.memories, aloft_told=p.said_aloft, **known)
        rendered = self.bundle.render_prompt(p.messages)
        offered = sorted({who for m in ctx.memories if (who := speaker(getattr(m, "source", "")))})
        said = wording(lang).text.said
        return ctx, facts, [who for who in offered if said.format(who=who) in rendered]

    def _lines_for(self, facts: MusingFacts) -> tuple[str, ...]:
        """Up to MAX_LINES of the owner's own lines nearest to the moment `facts` describe, none
        offered in the last LINES_KEPT prompts where others are left (stratoecho/exemplars.py)."""
        if not self.owner.lines:
            return ()
        seed = (self.seed or 0) * 7_919 + self.boot * 131 + self.counts.musings_queued
        chosen = nearest(self.owner.lines, moment(facts), MAX_LINES, seed=seed if self.seed is not None else None,
                         avoid=self._lines_offered)
        return tuple(x.text for x in chosen)

    def _generate(self, prompt: str, max_tokens: int, again: bool = False):
        """The worker's generation; None when there is none (a failure, a stop, a worker resting).
        `again`: another candidate from the same prompt, which llama.cpp has read already."""
        if self._persona_down:  # generate() restarts a dead worker: only as often as the limiter allows
            if not self.restarts.allow():
                return None
            self._persona_down = False
        self._asked += 1
        log.debug("musing_asked", n=self._asked, max_tokens=max_tokens)
        try:
            gen = self.worker.generate(prompt, max_tokens, seed=self._sampling_seed())
            seconds = self._spend(prompt, gen, again)
            if seconds is None:
                return None  # over the deadline on the board (the bench) or stopping
        except PersonaError as e:
            if self.stopping.is_set():
                return None  # cut short by a stop: not the persona's failure
            self.counts.persona_failures += 1
            self._persona_down = True
            log.warning("persona_failed", error=str(e))
            return None
        self.counts.musings_generated += 1
        self._speed.add(gen.tokens, seconds)
        self.counts.tokens += gen.tokens
        self.counts.generation_s += gen.seconds
        return gen

    def _untrue(self, verdict: truth.Verdict, text: str, action: str, made: dict) -> None:
        """A musing that made a false claim: counted and logged with the claims, for the flight report."""
        self.counts.musings_untrue += 1
        log.info("musing_untrue", action=action, text=text, claims=verdict.counts(),
                 false=[f"{c.kind}: {c.said}" for c in verdict.false], **made)

    def _passes(self, text: str, gen, made: dict, again: bool = False) -> bool:
        """A musing worth sending: not empty once cleaned, and let through by the outbound guard."""
        if not text:
            self.counts.musings_empty += 1
            # raw_chars > 0: it wrote only privacy placeholders, which fit_musing took out
            log.info("musing_empty", raw_chars=len(gen.text.strip()), **made)
            return False
        if not self.guard.allow(text):
            self.counts.musings_dropped_by_guard += 1
            self.counts.guard_reasons = dict(self.guard.dropped)
            log.warning("musing_dropped_by_guard", reasons=self.guard.reasons(text), **made)
            return False
        if len(text) < MIN_PART:
            # A few words hold a slow mode's air about as long as the sentence's own prefix: not
            # worth a line. Asked again once, at the next position sentence. (Past the guard: its
            # text may be logged, and the bench's measure of musings counts it.)
            self.counts.musings_too_short += 1
            if not again:  # a version made again that came out short: an earlier one airs instead
                self.ask_again, self._short_before = not self._short_before, not self._short_before
            log.info("musing_too_short", text=text, min_chars=MIN_PART, **made)
            return False
        self._short_before = False
        return True

    def sentences(self, seq: int, r: Readings, text: str) -> None:
        """The musing again as UKHAS text sentences for stock gateways, cut into parts here. The
        radio stamps each as it is keyed with the last position sentence on air (payload/link/stamping.py,
        `wire.restamp`); what is written here goes as it is only before any position this boot."""
        counter, last_time = self.beacon.last_sentence()
        when = self.clock.now().replace(microsecond=0)
        if when.strftime("%H:%M:%S") == last_time:
            when += timedelta(seconds=1)
        try:
            lines = wire.encode_musing_sentences(self.callsign, counter, when, r.lat, r.lon, r.alt_m,
                                                 self.boot, seq, text, max_bytes=self.line_bytes, made=r.time)
        except wire.WireError as e:  # a musing of nothing a gateway can carry: the record still goes
            log.warning("musing_sentences_skipped", seq=seq, error=str(e))
            return
        self.outbound.musing_sentences(lines, created=r.time.timestamp())
        self.counts.musing_sentences_queued += len(lines)

    def _sampling_seed(self) -> int | None:
        """With a flight seed (the bench's), a sampling seed from it, the boot and the musing's
        number: the same flight says the same things. In flight: None, llama.cpp's own."""
        if self.seed is None:
            return None
        return (self.seed * 1_000_003 + self.boot * 10_007 + self._asked) & 0x7FFFFFFF

    def _spend(self, prompt: str, gen, again: bool = False) -> float | None:
        """Where compute time is modelled (the bench's clock cannot time it), the generation takes
        the flight time it would take on the rehearsed board, not what this machine took; past the
        worker's deadline it is killed there, as on the Pi. Another candidate of the same prompt
        (`again`) pays only for what follows it: llama.cpp keeps the prompt it read. The seconds
        the generation took (or was priced at); None when the musing may not go on."""
        if self.price_generation is None:
            return gen.seconds  # real time: the generation already took its time
        read = 0 if again else len(prompt.encode("utf-8"))
        cost = self.price_generation(self.bundle.model_path.stat().st_size, read, gen.tokens)
        deadline = self.worker.timeout_s
        if self.clock.spend(min(cost, deadline), cores=self.worker.n_threads, stop=self.stopping):
            return None
        if cost > deadline:
            self.worker.kill()
            raise PersonaError(f"no musing within {deadline:g} s on the rehearsed board "
                               f"(the bench prices this one at {cost:.0f} s); worker killed")
        return cost

    def budget(self):
        """With `persona.board` set, what this musing may cost (payload/policy/budget.py) from the board,
        the energy left and the mode; None: the fixed [persona] values."""
        board = self.persona.board
        if board is None:
            return None
        r, g = self.radio, self.governor
        energy = max(0.0, 1.0 - g.used_wh / self.battery_wh)
        # Musings may take a quarter of the hour's airtime budget, spread over the musings in it.
        airtime_s = r.duty_cycle * self.cadence.musing_s * MUSING_AIRTIME_SHARE
        if self.persona.sentences:
            airtime_s /= 2  # the record and its text sentences carry the same words
        record = musing_record_bytes(airtime_s, r.mtu, r.airtime_s)
        return think_budget(board, self.bundle.model_path.stat().st_size, energy, g.mode,
                            max_tokens=self.persona.max_tokens,
                            context_length=self.bundle.manifest.model.context_length, record_bytes=record,
                            shape=self._shape())

    def _shape(self):
        """The model's shape from its GGUF header, read once (its KV cache and a compute buffer as wide
        as its vocabulary: a trimmed Gemma's 35,816 tokens, not a fallback's guess); None, and the
        budget's fallback figures, where the header does not read."""
        if self._model_shape is False:
            try:
                self._model_shape = model_shape(self.bundle.model_path)
            except GgufError as e:
                log.warning("persona_shape_unread", error=str(e))
                self._model_shape = None
        return self._model_shape


def prompt_facts(r: Readings, ctx: PromptContext, outcomes: list[Outcome], memories: int, *,
                 rate_m_s: float | None = None, distance_km: float | None = None,
                 battery_share: float | None = None, aloft_told: bool = True) -> MusingFacts:
    """What a musing's prompt told the persona, as payload/prompts.describe says it in words: the
    readings `r` as prompted (`fresh`: a value not read is not said), the phase, mode, time aloft
    and language of its context `ctx`, the outcomes of its questions and the number of memories
    the prompt kept; and what the payload knows that its truth guard holds the musing to (the time
    since launch, the speeds, the distance from the launch site, the energy left). Rounded as the
    prompt rounds, no text: small enough for every musing's log line on a Pi."""

    def known(x) -> bool:
        return x is not None and math.isfinite(x)

    def rounded(x, digits: int):
        return round(x, digits) if known(x) else None

    return MusingFacts(
        aloft_s=rounded(ctx.aloft_s, 0), rate_m_s=rounded(rate_m_s, 1), distance_km=rounded(distance_km, 1),
        battery_share=rounded(battery_share, 2), speed_kmh=rounded(r.speed_mps * 3.6, 1),
        # No satellites, no box: never said.
        phase=ctx.phase, mode=ctx.mode, fix=r.fix_valid, sun_up=sun_is_up(r), memories=memories,
        alt_m=round(r.alt_m) if known(r.alt_m) else None,
        temp_c=round(r.temp_c, 1) if known(r.temp_c) else None,
        pressure_hpa=round(r.pressure_hpa, 1) if known(r.pressure_hpa) else None,
        batt_v=round(r.batt_mv / 1000, 3) if r.batt_mv and known(r.batt_mv) else None,
        requests=tuple(Request(o.api, o.kind.value) for o in outcomes),
        language=ctx.language or None,  # the claims' words; a language without a file is read on its numbers (CLDR)
        aloft_told=aloft_told,
    )
