"""Step 5, scrub: every string `prepare` writes goes through one `Cleaner`, so private values
become placeholders (<PHONE_1>) and typed special tokens are escaped before anything reaches
the disk, and report.json can count what was replaced."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from host_training.ingest import Message
from host_training.prepare import accumulate
from stratoecho.privacy import PrivacyScrubber, escape_special_tokens


class Cleaner:
    """The scrubber of one run and its counts: private values in texts, in names and ids, and
    the special tokens escaped. With what an earlier run left in DIR (`previous`), its
    placeholders keep their numbers."""

    def __init__(self, blocklist: list[str], previous: accumulate.Previous | None) -> None:
        self.scrubber = PrivacyScrubber(blocklist)
        if previous is not None:
            accumulate.reserve(self.scrubber.placeholder, previous.placeholders)
        self.pii_text: Counter[str] = Counter()
        self.pii_names: Counter[str] = Counter()
        self.escaped = 0
        self._names: dict[str, str] = {}

    def clean(self, value: str, counts: Counter[str]) -> str:
        value, found = self.scrubber.scrub(value)
        counts.update(found)
        value, n = escape_special_tokens(value)
        self.escaped += n
        return value

    def text(self, value: str) -> str:
        return self.clean(value, self.pii_text)

    def name(self, value: str) -> str:
        # Names and ids repeat on every message: scrub each distinct one once (and count it once).
        if value not in self._names:
            self._names[value] = self.clean(value, self.pii_names)
        return self._names[value]

    def message(self, m: Message) -> Message:
        """`m` with every string scrubbed, in the order the placeholders are numbered."""
        return replace(
            m, text=self.text(m.text), title=self.text(m.title), chat_id=self.name(m.chat_id),
            chat_name=self.name(m.chat_name), msg_id=self.clean(m.msg_id, self.pii_names),  # ids: too many to cache
            author_id=self.name(m.author_id), author=self.name(m.author))
