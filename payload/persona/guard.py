"""The outbound guard: nothing private leaves on an open amateur band.

Every musing passes here before it is stored for the radio. A hit is dropped
(never redacted and sent: a redaction still says that something was there) and
counted by reason.
"""

from __future__ import annotations

import re
from collections import Counter

from stratoecho.privacy import contains_private


class OutboundGuard:
    """`blocklist`: regular expressions; `hashed`: the bundle's hashed blocklist (the owner's
    phrases, compared as salted hashes of each run of words, stratoecho/blocklist.py)."""

    def __init__(self, blocklist: list[str] | None = None, hashed=None):
        self.blocklist = [re.compile(p, re.IGNORECASE) for p in (blocklist or [])]
        self.hashed = hashed
        self.dropped: Counter[str] = Counter()

    def reasons(self, text: str) -> list[str]:
        found = list(contains_private(text))
        found += ["blocklist" for p in self.blocklist if p.search(text)]
        if self.hashed is not None and self.hashed.hits(text):
            found.append("blocklist")
        return found

    def allow(self, text: str) -> bool:
        reasons = self.reasons(text)
        for r in set(reasons):
            self.dropped[r] += 1
        return not reasons
