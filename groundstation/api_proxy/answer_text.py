"""The answer's text as the payload hears it: control characters out, clipped at a word
boundary to what one API_ANSWER uplink frame carries."""

from __future__ import annotations

import re
import unicodedata

from stratoecho.wire import DEFAULT_MTU
from stratoecho.wire.uplink import DEFAULT_TAG_LEN, HEADER_BYTES, ApiAnswer

_ESCAPE_SEQUENCE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x9b[0-?]*[ -/]*[@-~]")


def clean(text: str) -> str:
    """Control and format characters (escape sequences whole) become spaces; whitespace
    runs become one space."""
    text = _ESCAPE_SEQUENCE.sub(" ", text)
    text = "".join(" " if unicodedata.category(ch)[0] == "C" else ch for ch in text)
    return " ".join(text.split())


def answer_room(tag_len: int = DEFAULT_TAG_LEN, mtu: int = DEFAULT_MTU) -> int:
    """UTF-8 bytes of answer text one API_ANSWER frame carries: the MTU less the uplink
    header, the tag and the answer's own request_seq and status (234 at MTU 255, tag 8)."""
    return mtu - HEADER_BYTES - tag_len - len(ApiAnswer(0, 0).pack())


def clip(text: str, room_bytes: int) -> str:
    """`text` if its UTF-8 fits `room_bytes`, else cut at a word boundary with "…" added."""
    data = text.encode("utf-8")
    if len(data) <= room_bytes:
        return text
    ellipsis = "…"
    budget = room_bytes - len(ellipsis.encode("utf-8"))
    if budget <= 0:
        return ""
    head = data[:budget].decode("utf-8", "ignore")  # never half a character
    cut = head.rfind(" ")
    if cut > 0 and data[len(head.encode("utf-8")):len(head.encode("utf-8")) + 1] != b" ":
        head = head[:cut]  # the cut fell inside a word: drop that word
    return head.rstrip(" ,;:-") + ellipsis
