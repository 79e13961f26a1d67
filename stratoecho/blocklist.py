"""The owner's blocklist as the payload carries it: salted hashes, not the words themselves.

The owner lists what must never go on the air (a street, a child's name, a workplace)
for `prepare --blocklist` and `build --blocklist`: a word or phrase a line, or a
/regular expression/. The bundle flies on a balloon that may land in a stranger's
field, so a phrase travels as the salted sha256 of its normalised words, and the
outbound guard hashes every run of words of a musing the same way to compare.
A regular expression cannot be hashed and travels as written (the docs say so).

    # stratoecho outbound blocklist
    salt 9f2c...
    phrase <sha256 hex> <words>
    regex <pattern>
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field

HEADER = "# stratoecho outbound blocklist: salted sha256 of word sequences, and regular expressions"
_WORD = re.compile(r"\w+", re.UNICODE)
MAX_WORDS = 8  # a phrase longer than this is better written as a regular expression


class BlocklistFormatError(ValueError):
    """A blocklist file that does not read; the message names the line."""


def words(text: str) -> list[str]:
    """Casefolded words: "Elm  Street," and "elm street" are the same phrase."""
    return [w.casefold() for w in _WORD.findall(text)]


def phrase_digest(salt: bytes, ws: list[str]) -> str:
    return hashlib.sha256(salt + " ".join(ws).encode("utf-8")).hexdigest()


@dataclass
class HashedBlocklist:
    salt: bytes = field(default_factory=lambda: secrets.token_bytes(16))
    phrases: dict[str, int] = field(default_factory=dict)  # digest -> number of words
    regexes: list[str] = field(default_factory=list)

    @classmethod
    def from_entries(cls, entries: list[str], salt: bytes | None = None) -> HashedBlocklist:
        """From prepare's blocklist entries (a phrase, or /regex/ a line)."""
        out = cls(salt=salt or secrets.token_bytes(16))
        for entry in entries:
            if len(entry) > 2 and entry.startswith("/") and entry.endswith("/"):
                out.regexes.append(entry[1:-1])
                continue
            ws = words(entry)
            if not ws:
                continue
            if len(ws) > MAX_WORDS:
                raise BlocklistFormatError(f"blocklist phrase {entry[:40]!r}… has more than {MAX_WORDS} words: "
                                           "write it as a /regular expression/")
            out.phrases[phrase_digest(out.salt, ws)] = len(ws)
        return out

    def dumps(self) -> str:
        lines = [HEADER, f"salt {self.salt.hex()}"]
        lines += [f"phrase {d} {n}" for d, n in sorted(self.phrases.items())]
        lines += [f"regex {r}" for r in self.regexes]
        return "\n".join(lines) + "\n"

    @classmethod
    def loads(cls, text: str, where: str = "blocklist") -> HashedBlocklist:
        out, salt = cls(salt=b""), None
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip() or line.startswith("#"):
                continue
            kind, _, rest = line.partition(" ")
            try:
                if kind == "salt":
                    salt = bytes.fromhex(rest.strip())
                elif kind == "phrase":
                    digest, n = rest.split()
                    if len(digest) != 64 or not 1 <= int(n) <= MAX_WORDS:
                        raise ValueError("expected a sha256 and a word count")
                    out.phrases[digest] = int(n)
                elif kind == "regex":
                    re.compile(rest)
                    out.regexes.append(rest)
                else:
                    raise ValueError(f"unknown entry {kind!r}")
            except (ValueError, re.error) as e:
                raise BlocklistFormatError(f"{where}:{number}: {e}") from e
        if salt is None and out.phrases:
            raise BlocklistFormatError(f"{where}: phrases without a salt line")
        out.salt = salt or b""
        return out

    def hits(self, text: str) -> int:
        """How many listed phrases or expressions occur in `text`."""
        found = sum(1 for r in self.regexes if re.search(r, text, re.IGNORECASE))
        if self.phrases:
            ws = words(text)
            sizes = set(self.phrases.values())
            for n in sizes:
                for i in range(len(ws) - n + 1):
                    if phrase_digest(self.salt, ws[i:i + n]) in self.phrases:
                        found += 1
        return found
