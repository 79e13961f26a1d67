"""The flight's tag on its ``$$`` sentences: what makes a position or a musing line the balloon's.

A UKHAS sentence is plain text anyone can send under any callsign, and until it carried a tag
the ground could not tell the balloon's from a forger's: every defence was a rule about which
unsigned claim to believe. Every ``$$`` line the payload keys now carries a tag of ten base-32
characters (``A``-``Z``, ``2``-``7``: 50 bits) of HMAC-SHA256 under the downlink key
(`downlink.py`: derived from the flight key), over the line's content without the tag::

    tag = base32(HMAC-SHA256(downlink_key, "stratoecho sentence tag v1" NUL content)[:7])[:10]

where ``content`` is the line from ``$$`` up to (not including) the ``*``, the tag taken out
(`sentence.py` and `musing_sentence.py` say where each kind carries it). The base-32 alphabet
has no ``0`` or ``1``, so a tag can never start ``012345`` (what a LoRa gateway takes for a
field list), and none of ``, * $ " \\`` that the gateway splits on or pastes into its JSON.

Why 50 bits (docs/protocol.md, "Signed sentences", gives the figures): a forger's sentence
passes with probability 2^-50 per try, and no try tells the next anything. The ground takes a
sentence per datagram (a checksum, an HMAC and a database row each); a flood of 100,000 a second,
more than one listener reads, for a whole day makes 8.6e9 tries: odds of 8e-6 that any one
passes, and that one is a single position among the flight's thousands. Forty
bits would be 0.8 % under the same flood; 64 bits cost three more characters on air in every
sentence (about 0.4 s each in LoRa mode 0) for odds already below the chance of a corrupted
frame passing its CRC16.

The tag binds the whole content, the field list and a musing's text included, but not the
moment it is heard: a sentence recorded and played back is the same sentence (the same number,
the same position), and the ground keeps one of each.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from .downlink import DownlinkAuth

TAG_CHARS = 10  # base-32 characters: 50 bits
TAG_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
_DOMAIN = b"stratoecho sentence tag v1\0"


def sentence_tag(content: str, auth: DownlinkAuth) -> str:
    """The tag of a line's `content` (``$$`` to before ``*``, its tag taken out) under `auth`."""
    digest = hmac.new(auth.key, _DOMAIN + content.encode("ascii"), hashlib.sha256).digest()
    return base64.b32encode(digest[:7]).decode("ascii")[:TAG_CHARS]


def is_tag(text: str) -> bool:
    """`text` has a tag's shape (ten base-32 characters); whether it checks needs the key."""
    return len(text) == TAG_CHARS and all(c in TAG_ALPHABET for c in text)


def tag_matches(content: str, tag: str, auth: DownlinkAuth) -> bool:
    """`tag` is `content`'s under `auth`, compared in constant time."""
    return is_tag(tag) and hmac.compare_digest(sentence_tag(content, auth), tag)
