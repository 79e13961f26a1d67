"""The Reed–Solomon code that protects SSDV packets: RS(255,223), the CCSDS parameters.

SSDV's normal packet type ends in 32 parity bytes that correct up to 16 wrong bytes
anywhere in the packet (the sync byte aside). The code is the one CCSDS 131.0 names and
Phil Karn's codec made common, in its conventional (not dual) basis:

- symbols are GF(2^8) built on x^8 + x^7 + x^2 + x + 1 (0x187), alpha = x;
- the generator polynomial has the 32 roots beta^(112+i), i = 0..31, beta = alpha^11
  (beta is primitive too, since 11 and 255 share no factor);
- a codeword is the message followed by the remainder of message(x) * x^32 mod g(x),
  the first byte being the highest power. A packet shorter than 256 bytes is a
  shortened codeword: the missing leading bytes count as zeros.

Nothing here is SSDV-specific apart from those numbers; `ssdv` calls `parity` and `correct`.
This is independent of `fec` (an erasure code across whole fragments, another field).
"""

from __future__ import annotations

import functools

from .gf256 import exp_log

FIELD_POLY = 0x187
PARITY_BYTES = 32
CODEWORD_BYTES = 255
DATA_BYTES = CODEWORD_BYTES - PARITY_BYTES  # 223
FIRST_ROOT = 112  # g(x)'s roots start at beta^112 (CCSDS), symmetric about beta^127.5
ROOT_STEP = 11  # beta = alpha^11


_EXP, _LOG = exp_log(FIELD_POLY)


def _mul(a: int, b: int) -> int:
    return 0 if a == 0 or b == 0 else _EXP[_LOG[a] + _LOG[b]]


def _beta_pow(e: int) -> int:
    return _EXP[(e * ROOT_STEP) % 255]


def _generator() -> list[int]:
    """g(x) coefficients, highest power first (g[0] == 1)."""
    g = [1]
    for i in range(PARITY_BYTES):
        root = _beta_pow(FIRST_ROOT + i)
        # g(x) * (x + root): each coefficient gains root times the next-higher one
        g = [a ^ _mul(root, b) for a, b in zip([*g, 0], [0, *g])]
    return g


_G = _generator()
_REG_MASK = (1 << (8 * PARITY_BYTES)) - 1
# The division register holds the 32-byte remainder as one integer, its top byte the
# highest power; feeding byte d XORs in (d ^ top byte) * g(x) (lower 32 coefficients).
_FEEDBACK = [int.from_bytes(bytes(_mul(f, c) for c in _G[1:]), "big") for f in range(256)]


def parity(message: bytes) -> bytes:
    """The 32 parity bytes for ``message`` (at most 223 bytes; shorter means shortened)."""
    if len(message) > DATA_BYTES:
        raise ValueError(f"RS(255,223) takes at most {DATA_BYTES} message bytes, got {len(message)}")
    reg = 0
    for byte in message:
        reg = ((reg << 8) & _REG_MASK) ^ _FEEDBACK[byte ^ (reg >> (8 * PARITY_BYTES - 8))]
    return reg.to_bytes(PARITY_BYTES, "big")


@functools.cache
def _syndrome_tables():
    """numpy and its tables, on the first packet to correct: only a receiver corrects, and the
    payload daemon, which only adds parity, is ~8 MB lighter without numpy (docs/bench.md)."""
    import numpy as np

    # Syndrome i weighs the byte of degree d by beta^((112+i)*d): a table of exponents of alpha.
    exponents = (
        (np.arange(FIRST_ROOT, FIRST_ROOT + PARITY_BYTES)[:, None] * ROOT_STEP * np.arange(CODEWORD_BYTES)[None, :])
        % 255
    )
    return np, exponents, np.array(_EXP, dtype=np.uint8), np.array(_LOG, dtype=np.int64)


def _syndromes(codeword: bytes) -> list[int]:
    np, exponents, exp, log = _syndrome_tables()
    values = np.frombuffer(codeword, dtype=np.uint8)[::-1]  # index = degree
    nonzero = values != 0
    terms = exp[(log[values[nonzero]][None, :] + exponents[:, : len(values)][:, nonzero]) % 255]
    return [int(s) for s in np.bitwise_xor.reduce(terms, axis=1)] if terms.size else [0] * PARITY_BYTES


def _poly_eval(poly: list[int], x: int) -> int:
    """poly lowest power first."""
    y = 0
    for c in reversed(poly):
        y = _mul(y, x) ^ c
    return y


def correct(codeword: bytes) -> tuple[bytes, int] | None:
    """Correct up to 16 wrong bytes of a (possibly shortened) codeword: message + 32 parity.

    Returns the corrected bytes and how many were changed, or None when the errors are
    beyond the code (the caller then still has the CRC to catch a miscorrection).
    """
    n = len(codeword)
    if not PARITY_BYTES < n <= CODEWORD_BYTES:
        raise ValueError(f"an RS(255,223) codeword is {PARITY_BYTES + 1}..{CODEWORD_BYTES} bytes, got {n}")
    s = _syndromes(codeword)
    if not any(s):
        return codeword, 0
    # Berlekamp–Massey: the shortest error locator Lambda(x) (lowest power first)
    lam, prev = [1], [1]
    length, shift, prev_disc = 0, 1, 1
    for r in range(PARITY_BYTES):
        disc = s[r]
        for i in range(1, length + 1):
            if i < len(lam):
                disc ^= _mul(lam[i], s[r - i])
        if disc == 0:
            shift += 1
            continue
        scale = _mul(disc, _EXP[255 - _LOG[prev_disc]])
        update = [0] * shift + [_mul(scale, c) for c in prev]
        new = [a ^ b for a, b in zip(lam + [0] * (len(update) - len(lam)), update + [0] * (len(lam) - len(update)))]
        if 2 * length <= r:
            prev, length, prev_disc, shift = lam, r + 1 - length, disc, 1
        else:
            shift += 1
        lam = new
    while len(lam) > 1 and lam[-1] == 0:
        lam.pop()
    if len(lam) - 1 != length or length > PARITY_BYTES // 2:
        return None
    # Chien search over the degrees present: an error at degree d makes beta^-d a root
    degrees = [d for d in range(n) if _poly_eval(lam, _beta_pow(-d % 255)) == 0]
    if len(degrees) != length:
        return None
    # Forney, for roots starting at beta^112: e = X^(1-112) * Omega(X^-1) / Lambda'(X^-1)
    omega = [0] * PARITY_BYTES
    for i, si in enumerate(s):
        for j, lj in enumerate(lam[: PARITY_BYTES - i]):
            omega[i + j] ^= _mul(si, lj)
    derivative = [lam[i] if i % 2 else 0 for i in range(1, len(lam))]  # char 2: odd terms survive
    fixed = bytearray(codeword)
    for d in degrees:
        x_inv = _beta_pow(-d % 255)
        den = _poly_eval(derivative, x_inv)
        if den == 0:
            return None
        num = _mul(_poly_eval(omega, x_inv), _beta_pow((d * (1 - FIRST_ROOT)) % 255))
        fixed[n - 1 - d] ^= _mul(num, _EXP[255 - _LOG[den]])
    return bytes(fixed), length
