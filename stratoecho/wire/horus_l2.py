"""Horus Binary layer 2: what a Horus v1/v2/v3 frame becomes before the 4FSK modem keys it.

The rules are horusdemodlib's (its horus_l2.c, which the modem decodes with); written here as
pure logic, checked byte for byte against that library's own encoder in tests::

    preamble (8 x 0x1B)  | "$$" |  frame (N bytes)  |  Golay (23,12) parity bits, packed  |
                          unique  \\_______ interleaved, then scrambled (not the "$$") _______/
                          word

- Golay (23,12): the frame's bits, most significant first, in groups of 12; each group's 11
  parity bits are the remainder of ``group << 11`` divided by the generator 0xC75, written
  most significant first after all the data bytes; the last, short group is taken as the
  library takes it (its k bits as a number, ``<< 12``: not left-aligned), and the last parity
  byte is padded with zero bits. So 32 bytes code to 65, 48 to 97 (`coded_size`).
- Interleaver: bit ``n`` (counting least significant bit first within each byte) goes to bit
  ``(b * n) mod nbits``; ``b`` is 337 for the 43 coded bytes of v1, 389 for the 63 of v2, and
  otherwise (v3's sizes) the first prime above ``floor(nbits / 1.62)``.
- Scrambler: the 16-bit additive DVB scrambler, seed 0x4A80 at every frame, bit i
  (least significant first) xor ``s0 ^ s1``.
- Preamble: 0x1B bytes (symbols 0, 1, 2, 3) let the demodulator find its four tones before
  the unique word, as Horus transmitters send them.
- Symbols: two bits a symbol, most significant pair first; tone 0 is the lowest.
"""

from __future__ import annotations

import math

UNIQUE_WORD = b"$$"
PREAMBLE = bytes([0x1B] * 8)
_GOLAY_POLY = 0xC75
_FIXED_B = {43: 337, 63: 389}  # interleaver steps of the v1 (22-byte) and v2 (32-byte) codings


def coded_size(frame_bytes: int) -> int:
    """Bytes on the air for a frame of `frame_bytes`, unique word included (preamble not)."""
    bits = 8 * frame_bytes
    return (8 * len(UNIQUE_WORD) + bits + 11 * -(-bits // 12) + 7) // 8


def air_s(frame_bytes: int, baud: float = 100.0) -> float:
    """Seconds on air of a frame of `frame_bytes` as 4FSK at `baud`, preamble included."""
    return (len(PREAMBLE) + coded_size(frame_bytes)) * 4 / baud


def golay_parity(data12: int) -> int:
    """The 11 parity bits of a (23,12) Golay codeword whose data is `data12`."""
    c = data12 << 11
    for bit in range(22, 10, -1):
        if c >> bit & 1:
            c ^= _GOLAY_POLY << (bit - 11)
    return c & 0x7FF


def encode_l2(frame: bytes) -> bytes:
    """`frame` (a Horus Binary packet, CRC included) as the library's layer 2 packs it."""
    bits = [(byte >> (7 - i)) & 1 for byte in frame for i in range(8)]
    parity: list[int] = []
    for k in range(0, len(bits), 12):
        group = bits[k:k + 12]
        value = 0
        for bit in group:
            value = value << 1 | bit
        # a short last group is divided as the library divides it: its bits, not left-aligned, << 12
        word = value if len(group) == 12 else value << 1
        parity.extend((golay_parity(word) >> (10 - i)) & 1 for i in range(11))
    parity += [0] * (-len(parity) % 8)
    packed = bytes(sum(b << (7 - i) for i, b in enumerate(parity[k:k + 8])) for k in range(0, len(parity), 8))
    body = _scramble(_interleave(bytes(frame) + packed))
    assert len(body) + len(UNIQUE_WORD) == coded_size(len(frame))
    return UNIQUE_WORD + body


def symbols(l2: bytes, preamble: bytes = PREAMBLE) -> list[int]:
    """The 4FSK tones (0-3) that send `preamble` then `l2`, two bits a symbol, high pair first."""
    return [(byte >> shift) & 3 for byte in preamble + l2 for shift in (6, 4, 2, 0)]


def _interleave(data: bytes) -> bytes:
    nbits = 8 * len(data)
    b = _FIXED_B.get(len(data)) or _next_prime(int(nbits / 1.62))
    out = bytearray(len(data))
    for n in range(nbits):
        j = (b * n) % nbits
        out[j // 8] |= ((data[n // 8] >> (n % 8)) & 1) << (j % 8)
    return bytes(out)


def _next_prime(x: int) -> int:
    x += 1
    while any(x % d == 0 for d in range(2, math.isqrt(x) + 1)):
        x += 1
    return x


def _scramble(data: bytes) -> bytes:
    state = 0x4A80
    out = bytearray(data)
    for i in range(8 * len(out)):
        s = ((state >> 1) ^ state) & 1
        out[i // 8] ^= s << (i % 8)
        state = (state >> 1) | (s << 14)
    return bytes(out)
