"""The few pieces of ASN.1 unaligned PER (ITU-T X.691, UPER) that Horus Binary v3 needs.

Pure logic, bits most significant first, as X.691 writes them:

- a constrained whole number in ``lo..hi`` takes ceil(log2(hi - lo + 1)) bits holding ``v - lo``
  (no bits when the range holds one value);
- an unconstrained INTEGER is a length determinant (octets) then that many octets of two's
  complement, as few as hold the value;
- a length determinant (unconstrained) is one octet below 128, two octets ``10`` + 14 bits
  below 16384 (longer ones, fragmented, are never needed here and are refused);
- a "normally small" number (an extension bitmap's length) is ``0`` + 6 bits below 64;
- a complete encoding is padded with zero bits to a whole octet.

`BitWriter` and `BitReader` are what `horus_v3.py` builds its frame with; a reader that runs
past its bytes raises `WireError` ("truncated"), never IndexError.
"""

from __future__ import annotations

from .common import WireError


def range_bits(lo: int, hi: int) -> int:
    """Bits a constrained whole number in lo..hi takes in UPER."""
    return (hi - lo).bit_length()


class BitWriter:
    def __init__(self) -> None:
        self._bits: list[int] = []

    def bits(self, value: int, width: int) -> None:
        if width and not 0 <= value < 1 << width:
            raise ValueError(f"{value} does not fit {width} bits")
        self._bits.extend((value >> (width - 1 - i)) & 1 for i in range(width))

    def flag(self, on: bool) -> None:
        self._bits.append(1 if on else 0)

    def constrained(self, value: int, lo: int, hi: int) -> None:
        if not lo <= value <= hi:
            raise ValueError(f"{value} is outside {lo}..{hi}")
        self.bits(value - lo, range_bits(lo, hi))

    def length(self, n: int) -> None:
        """An unconstrained length determinant."""
        if n < 128:
            self.bits(n, 8)
        elif n < 16384:
            self.bits(0b10, 2)
            self.bits(n, 14)
        else:
            raise ValueError(f"length {n} would need fragmenting")

    def unconstrained(self, value: int) -> None:
        octets = (value.bit_length() + 8) // 8  # room for the sign bit
        self.length(octets)
        self.bits(value & ((1 << (8 * octets)) - 1), 8 * octets)

    def small(self, n: int) -> None:
        """A normally small non-negative whole number (below 64 only)."""
        if not 0 <= n < 64:
            raise ValueError(f"{n} is not normally small")
        self.flag(False)
        self.bits(n, 6)

    def extend(self, other: BitWriter) -> None:
        self._bits.extend(other._bits)

    def __len__(self) -> int:
        return len(self._bits)

    def to_bytes(self) -> bytes:
        """The bits so far, padded with zero bits to a whole octet (at least one octet)."""
        bits = self._bits + [0] * (-len(self._bits) % 8)
        if not bits:
            bits = [0] * 8
        return bytes(
            sum(bit << (7 - i) for i, bit in enumerate(bits[k:k + 8])) for k in range(0, len(bits), 8)
        )


class BitReader:
    def __init__(self, data: bytes) -> None:
        self._data = bytes(data)
        self.pos = 0  # in bits

    def bits(self, width: int) -> int:
        if self.pos + width > 8 * len(self._data):
            raise WireError("truncated", f"UPER field of {width} bits runs past {len(self._data)} bytes")
        value = 0
        for i in range(self.pos, self.pos + width):
            value = (value << 1) | (self._data[i >> 3] >> (7 - (i & 7))) & 1
        self.pos += width
        return value

    def flag(self) -> bool:
        return self.bits(1) == 1

    def constrained(self, lo: int, hi: int, name: str) -> int:
        value = lo + self.bits(range_bits(lo, hi))
        if value > hi:
            raise WireError("horus field invalid", f"{name} {value} is outside {lo}..{hi}")
        return value

    def length(self) -> int:
        if not self.flag():
            return self.bits(7)
        if not self.flag():
            return self.bits(14)
        raise WireError("horus field invalid", "fragmented UPER length")

    def unconstrained(self) -> int:
        octets = self.length()
        if octets == 0:
            raise WireError("horus field invalid", "INTEGER of no octets")
        raw = self.bits(8 * octets)
        return raw - (1 << (8 * octets)) if raw >> (8 * octets - 1) else raw

    def small(self) -> int:
        if self.flag():
            raise WireError("horus field invalid", "extension count beyond 64")
        return self.bits(6)

    def skip_octets(self, n: int) -> None:
        for _ in range(n):
            self.bits(8)
