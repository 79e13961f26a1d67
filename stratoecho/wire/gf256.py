"""GF(2^8) by its primitive polynomial: the exponent and logarithm tables both Reed-Solomon codes
of the wire build on (wire/fec.py's erasure code, 0x11D; wire/ssdv_rs.py's CCSDS code, 0x187)."""

from __future__ import annotations


def exp_log(poly: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """`exp[i]` is alpha^i and `log[a]` its inverse (log[0] is undefined: every use leaves zero out);
    exp is written twice over (510 entries), so exp[log a + log b] needs no modulo."""
    exp, log = [0] * 510, [0] * 256
    x = 1
    for i in range(255):
        exp[i], log[x] = x, i
        x <<= 1
        if x & 0x100:
            x ^= poly
    exp[255:] = exp[:255]
    return tuple(exp), tuple(log)
