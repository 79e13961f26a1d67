"""Other people's names as stable pseudonyms ("Person 1", "Person 2", ...). Pure.

The owner's friends did not agree to be in a model that broadcasts: with `prepare
--pseudonyms` every other participant's display name becomes a pseudonym, the same one
wherever it appears — as an author, as a chat's name, and as a whole word in any text
(so "thanks, Noor" becomes "thanks, Person 2"). Numbers follow first appearance in the
messages' order, so the same exports give the same pseudonyms.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace

from host_training.ingest import Message

MIN_NAME_CHARS = 3  # shorter "names" ("Jo", "A") would replace ordinary words in texts


def _pattern(names: dict[str, str]) -> re.Pattern[str] | None:
    """Whole-word, case-insensitive, longest name first (so "Noor Haddad" wins over "Noor");
    the first word of a full name also counts ("Noor" for "Noor Haddad")."""
    words: dict[str, str] = {}
    for name, alias in names.items():
        words.setdefault(name.casefold(), alias)
        first = name.split()[0] if name.split() else ""
        if first != name and len(first) >= MIN_NAME_CHARS:
            words.setdefault(first.casefold(), alias)
    words = {w: a for w, a in words.items() if len(w) >= MIN_NAME_CHARS}
    if not words:
        return None
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


class Pseudonyms:
    """The same replacement one message at a time, for `prepare`'s stream: `names` are the other
    participants' display names in order of first appearance; numbers start at `first`, and the
    `known` ones keep the pseudonym a folder's earlier run gave them (accumulate.py)."""

    def __init__(self, names: Sequence[str], first: int = 1, known: Mapping[str, str] | None = None) -> None:
        self.names: dict[str, str] = {}
        known = known or {}  # name -> the pseudonym an earlier run gave it
        for name in names:
            if name and name not in self.names:
                self.names[name] = known.get(name) or f"Person {first}"
                first += name not in known
        self._pattern = _pattern(self.names)
        self._lookup: dict[str, str] = {}
        for name, alias in self.names.items():
            self._lookup.setdefault(name.casefold(), alias)
            first = name.split()[0] if name.split() else ""
            self._lookup.setdefault(first.casefold(), alias)

    def text(self, text: str) -> str:
        return self._pattern.sub(lambda m: self._lookup[m.group().casefold()], text) if self._pattern else text

    def apply(self, m: Message) -> Message:
        author = self.names.get(m.author, m.author)
        return replace(m, author=author, author_id=author if m.author_id == m.author else m.author_id,
                       chat_name=self.text(self.names.get(m.chat_name, m.chat_name)),
                       text=self.text(m.text), title=self.text(m.title))
