"""The truth guard: a musing's checkable claims held against what the payload knows when it is
made, before it may air (issue 40). What "true" means is one module's, the same the bench's
flight report measures with (stratoecho/musing_claims.py): a height, a distance, a temperature, a
pressure, a speed, how long it has been up, going up or down, day or night, the battery.

A musing with a false claim is not aired as it is. In order:

1. **cut**: its sentences (and clauses between semicolons) that make a false claim are left out,
   when what is left holds no false claim and is still a musing (`MIN_KEPT` characters, and at
   least a third of it);
2. **made again**: the persona is asked again (up to `MAKE_AGAIN` more times, within its generation
   budget: payload/producers/musings.py, which also asks again for a musing that opens as a recent
   one did, or that states no figure of the flight when one is owed), each judged the same way;
3. **held back**: nothing airs, and it is counted.

Pure: text and facts in, a verdict out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from stratoecho.musing_claims import FIGURE_KINDS, Claim, MusingFacts, claims
from stratoecho.wire.musing_sentence import MIN_PART

MAKE_AGAIN = 3  # more generations a musing may take: its claims false, its opening a recent one, no figure owed
MIN_KEPT = MIN_PART  # characters a cut musing must keep to be worth a line of its own
_PIECES = re.compile(r"(?<=[.!?;…])\s+")


@dataclass(frozen=True)
class Verdict:
    text: str | None  # what may air: the musing, cut, or None (nothing true worth sending)
    said: tuple[Claim, ...]  # the claims of the musing as it came
    cut: bool  # false sentences were left out
    figure: bool = False  # what may air states a figure of the flight rightly (FIGURE_KINDS)

    @property
    def false(self) -> tuple[Claim, ...]:
        return tuple(c for c in self.said if not c.true)

    def counts(self) -> dict:
        """Claims by kind, for the musing's log line: {kind: [true, false]}."""
        out: dict = {}
        for c in self.said:
            out.setdefault(c.kind, [0, 0])[0 if c.true else 1] += 1
        return out


def judge(text: str, facts: MusingFacts) -> Verdict:
    """What of `text` may air, its claims held against `facts`."""
    said = tuple(claims(text, facts))
    if all(c.true for c in said):
        return Verdict(text, said, False, _figure(said))
    pieces = _PIECES.split(text.strip())
    kept = [p for p in pieces if all(c.true for c in claims(p, facts))]
    cut = " ".join(kept).strip()
    if kept and len(cut) >= max(MIN_KEPT, len(text) // 3) and all(c.true for c in claims(cut, facts)):
        return Verdict(cut, said, True, _figure(claims(cut, facts)))
    return Verdict(None, said, False)


def _figure(said) -> bool:
    return any(c.true and c.kind in FIGURE_KINDS for c in said)
