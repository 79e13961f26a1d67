"""The owner's filler-only turns as a few targets and the rest context (issue 49, item 2;
host_training/train/targets.py), through both ways a conversation becomes training tokens."""

from __future__ import annotations

import pytest

from host_training.train.targets import cap_filler_targets
from host_training.train.tokenizer import SpecialIds, render_ids


def _conv(*turns):
    return [{"role": r, "name": "", "content": t} for r, t in turns]


CONVS = [_conv(("user", "kommst du mit zum training"), ("assistant", "ja digga")),
         _conv(("user", "heute abend"), ("assistant", "ja digga"), ("user", "und morgen"), ("assistant", "Ja digga!")),
         _conv(("user", "wie war die tour"), ("assistant", "die kette ist gerissen und ich bin geschoben")),
         _conv(("user", "und mücke"), ("assistant", "ja digga")),
         _conv(("user", "pizza?"), ("assistant", "ja digga die katze hat den kaktus umgeschmissen"))]
# His other turns: 58 words he writes often (three times each), each turn with a word of its own.
_OFTEN = [a + b for a in "bcdfghklmnprstvwz" for b in "aeiou"][:58]
_RARE = ["q" + a + b for a in "bdgkmpst" for b in "aeiou"]
CONVS += [_conv(("user", "und"), ("assistant", " ".join(_OFTEN[(3 * i + k) % 58] for k in range(6)) + f" {_RARE[i]}"))
          for i in range(29)]


def test_filler_only_turns_past_the_cap_become_context():
    capped, counts = cap_filler_targets(CONVS, 2)
    flags = [m.get("target", True) for c in capped for m in c if m["role"] == "assistant"][:6]
    assert flags == [True, True, False, True, False, True]  # "ja digga" twice, then context; "Ja digga!" is the same
    assert counts == {"filler_only": 4, "kept": 2, "context_only": 2}
    assert all("target" not in m for c in CONVS for m in c)  # the caller's conversations are untouched
    assert [len(c) for c in capped] == [len(c) for c in CONVS]  # nothing is removed
    nothing, _ = cap_filler_targets(CONVS, 0)
    assert sum(m.get("target", True) is False for c in nothing for m in c) == 4
    with pytest.raises(ValueError, match="0 or more"):
        cap_filler_targets(CONVS, -1)


def test_a_context_only_turn_is_no_target_when_rendered():
    encode = lambda text: [ord(ch) for ch in text]  # noqa: E731 (a byte-level stand-in tokenizer)
    special = SpecialIds(eot=1, im_start=2, im_end=3)
    conv = _conv(("user", "hi"), ("assistant", "ja digga"))
    _, target = render_ids(conv, encode, special)
    _, muted = render_ids([conv[0], {**conv[1], "target": False}], encode, special)
    assert sum(target) == len("ja digga") + 1 and sum(muted) == 0
