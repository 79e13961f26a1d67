"""Erasure coding across the fragments of one record: any k of its n fragments rebuild it.

The code is a systematic Reed–Solomon erasure code over GF(2^8), built on the primitive
polynomial x^8 + x^4 + x^3 + x^2 + 1 (0x11D) with generator 2. Its generator matrix is::

    G = [ I_k ]    k data rows: data shard j IS slice j of the record (nothing lost, nothing to do)
        [  C  ]    n-k parity rows: C[i][j] = 1 / (x_i + y_j),  x_i = k + i,  y_j = j

C is a Cauchy matrix: the x's and y's are distinct field elements, so x_i + y_j (XOR) is never 0,
and every square submatrix of a Cauchy matrix is invertible. Any k rows of G therefore form an
invertible matrix, so any k shards rebuild the record, for every 1 <= k <= n <= 255.

Shard layout: the record is zero-padded to k*s bytes, s = max(1, ceil(len/k)); data shard j is
bytes [j*s, (j+1)*s); parity shard k+i holds, at every byte position c, sum_j C[i][j] * shard_j[c]
(so each byte column of the n shards is one codeword). All shards are s bytes; the caller keeps
the record's length to strip the padding. Shard i does not depend on n (n only bounds the
indices): encode(data, k, n) is encode(data, k, 255)[:n], so a record can be topped up with
fresh parity later (NACK repair) and decoded with any n that covers the indices heard.

Decoding with e data shards missing takes e parity shards; removing the known data shards'
share of them leaves an e x e Cauchy system, whose inverse is cached per set of shard indices.
Arithmetic runs on whole shards at once: multiplying a shard by a constant is one
`bytes.translate` through that constant's row of a 256 x 256 product table (64 KiB), and adding
shards is one XOR of them read as integers. No numpy: the payload daemon encodes every record
with this, and importing numpy costs it ~8 MB of its own memory (docs/bench.md, the daemon).

Overhead planning (`parity_for`, `LossEstimator`) models the channel as the two-state Markov
chain of sim/channel/loss.py; the notes on the model stand just before `parity_for`.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Iterator, Mapping, Sequence

from .gf256 import exp_log

PRIMITIVE_POLY = 0x11D
MAX_SHARDS = 255  # a byte-wide index, and the field's 255 non-zero elements keep x's and y's distinct


class FecError(ValueError):
    """Arguments the erasure code or the overhead planner cannot honour; the message says which."""


# --------------------------------------------------------------------------- GF(2^8)


def _tables() -> tuple[tuple[bytes, ...], bytes]:
    exp, log = exp_log(PRIMITIVE_POLY)
    # mul[a] is a translation table: shard.translate(mul[a]) is a times every byte of the shard.
    mul = tuple(bytes(exp[log[a] + log[b]] if a and b else 0 for b in range(256)) for a in range(256))
    inv = bytes(exp[255 - log[a]] if a else 0 for a in range(256))
    return mul, inv


_MUL, _INV = _tables()


def _element(a: int) -> int:
    if not 0 <= a <= 255:
        raise FecError(f"{a!r} is not an element of GF(256) (0..255)")
    return a


def gf_mul(a: int, b: int) -> int:
    """Product in GF(2^8) mod 0x11D. (Addition and subtraction are both XOR.)"""
    return _MUL[_element(a)][_element(b)]


def gf_inv(a: int) -> int:
    if _element(a) == 0:
        raise ZeroDivisionError("0 has no inverse in GF(256)")
    return _INV[a]


_Matrix = tuple[bytes, ...]  # rows of field elements


def _gf_matmul(a: _Matrix, b: Sequence[bytes], length: int) -> list[bytes]:
    """(r x c) times (c x length) over GF(256), rows as bytes: each output row is the XOR of
    b's rows, each multiplied by its coefficient through one translation table."""
    out = []
    for row in a:
        acc = 0
        for coef, shard in zip(row, b):
            if coef:
                acc ^= int.from_bytes(shard.translate(_MUL[coef]), "little")
        out.append(acc.to_bytes(length, "little"))
    return out


def _gf_invert(m: _Matrix) -> _Matrix:
    """Gauss–Jordan over GF(256), a whole row of the augmented matrix per step."""
    size = len(m)
    width = 2 * size
    aug = [int.from_bytes(bytes(row) + bytes(i == j for j in range(size)), "little") for i, row in enumerate(m)]
    for col in range(size):
        pivot = next((r for r in range(col, size) if aug[r] >> (8 * col) & 0xFF), None)
        if pivot is None:  # cannot happen for a Cauchy submatrix; guards against a broken table
            raise FecError(f"singular {size}x{size} matrix over GF(256)")
        aug[col], aug[pivot] = aug[pivot], aug[col]
        row = aug[col].to_bytes(width, "little")
        row = row.translate(_MUL[_INV[row[col]]])
        aug[col] = int.from_bytes(row, "little")
        for r in range(size):
            factor = aug[r] >> (8 * col) & 0xFF
            if r != col and factor:
                aug[r] ^= int.from_bytes(row.translate(_MUL[factor]), "little")
    return tuple(a.to_bytes(width, "little")[size:] for a in aug)


# --------------------------------------------------------------------------- the code


def _check_code(k: object, n: object) -> tuple[int, int]:
    try:
        k, n = operator.index(k), operator.index(n)
    except TypeError as e:
        raise FecError(f"k and n must be integers, got k={k!r}, n={n!r}") from e
    if not 1 <= k <= n <= MAX_SHARDS:
        raise FecError(f"need 1 <= k <= n <= {MAX_SHARDS}, got k={k}, n={n}")
    return k, n


def _as_bytes(value: object, what: str) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise FecError(f"{what} must be bytes, got {type(value).__name__}")
    return bytes(value)


def shard_size(length: int, k: int) -> int:
    """Bytes per shard for a record of `length` bytes cut into k shards."""
    return max(1, -(-length // k))


@functools.lru_cache(maxsize=64)
def _cauchy(k: int, n: int) -> _Matrix:
    return tuple(bytes(_INV[x ^ y] for y in range(k)) for x in range(k, n))


def encode(data: bytes, k: int, n: int) -> list[bytes]:
    """Cut `data` into k equal data shards (zero-padded) and add n-k parity shards; n shards in all."""
    k, n = _check_code(k, n)
    buf = _as_bytes(data, "data")
    size = shard_size(len(buf), k)
    padded = buf + bytes(k * size - len(buf))
    shards = [padded[j * size:(j + 1) * size] for j in range(k)]
    if n > k:
        shards += _gf_matmul(_cauchy(k, n), shards, size)
    return shards


@functools.lru_cache(maxsize=1024)
def _decode_matrix(k: int, n: int, chosen: tuple[int, ...]) -> tuple[tuple[int, ...], _Matrix]:
    """For k chosen shard indices (sorted): the missing data indices and the e x k matrix that
    rebuilds them from the chosen shards, in the order given.

    parity_p = C_known . d_known + C_sub . d_missing, so
    d_missing = C_sub^-1 . C_known . d_known + C_sub^-1 . parity_p (minus is plus in GF(2^8)).
    """
    known = [i for i in chosen if i < k]
    parity = [i - k for i in chosen if i >= k]
    missing = sorted(set(range(k)).difference(known))
    cauchy = _cauchy(k, n)
    c = [cauchy[p] for p in parity]
    inv = _gf_invert(tuple(bytes(row[j] for j in missing) for row in c))
    inv_known = _gf_matmul(inv, [bytes(row[j] for j in known) for row in c], len(known))
    return tuple(missing), tuple(a + b for a, b in zip(inv_known, inv))


def decode(shards: dict[int, bytes], k: int, n: int, length: int) -> bytes:
    """Rebuild the `length`-byte record from any k (or more) of its n shards, keyed by index.

    Data shards are preferred over parity (less work); shards beyond the first k are checked
    for index and size, then ignored.
    """
    k, n = _check_code(k, n)
    try:
        length = operator.index(length)
    except TypeError as e:
        raise FecError(f"length must be an integer, got {length!r}") from e
    if length < 0:
        raise FecError(f"length must not be negative, got {length}")
    if not isinstance(shards, Mapping):
        raise FecError(f"shards must be a mapping of index to bytes, got {type(shards).__name__}")
    got: dict[int, bytes] = {}
    for key, shard in shards.items():
        try:
            idx = operator.index(key)
        except TypeError as e:
            raise FecError(f"shard index {key!r} is not an integer") from e
        if not 0 <= idx < n:
            raise FecError(f"shard index {idx} out of range 0..{n - 1} for n={n}")
        got[idx] = _as_bytes(shard, f"shard {idx}")
    sizes = {len(s) for s in got.values()}
    if len(sizes) > 1:
        detail = ", ".join(f"shard {i}: {len(s)}" for i, s in sorted(got.items()))
        raise FecError(f"shards of one record must be the same size; got {detail} bytes")
    size = shard_size(length, k)
    if sizes and sizes != {size}:
        raise FecError(
            f"shards are {sizes.pop()} bytes, but a {length}-byte record in k={k} shards has "
            f"{size}-byte shards (wrong length or k, or truncated shards)"
        )
    if len(got) < k:
        raise FecError(f"{len(got)} distinct shards of this record arrived; any k={k} of n={n} are needed")

    data_idx = [i for i in sorted(got) if i < k]
    if len(data_idx) == k:  # the systematic case: no field arithmetic at all
        return b"".join(got[i] for i in range(k))[:length]
    chosen = tuple(data_idx + [i for i in sorted(got) if i >= k][:k - len(data_idx)])
    missing, matrix = _decode_matrix(k, n, chosen)
    rebuilt = dict(zip(missing, _gf_matmul(matrix, [got[i] for i in chosen], size)))
    return b"".join(got[j] if j in got else rebuilt[j] for j in range(k))[:length]


# --------------------------------------------------------------------------- overhead planning
#
# Channel model: each frame is lost or received, and the state (lost / received) is a Markov
# chain, exactly sim/channel/loss.py's Gilbert–Elliott channel (bad state loses every frame, good state
# none). With mean loss p and mean burst b (mean run of consecutive losses):
#   P(lost | previous lost)     = 1 - 1/b
#   P(lost | previous received) = p / (b (1 - p))      (so the stationary loss share is p)
# b = 1/(1-p) is independent loss (both equal p: the binomial tail). Shorter mean bursts would mean
# losses that avoid each other, which no radio channel promises, so b is raised to at least
# 1/(1-p): burst=1 (the default) means independent loss. The first frame of a record starts from
# the stationary state. The probability that at least k of n frames arrive is computed exactly
# by dynamic programming over (frames sent, frames received capped at k, channel state): O(n k).
#
# Bursts cost parity where it matters (targets of 0.9 and up at a few % loss or more), but they
# are not always worse: when the record is short against the time between bursts, losses
# clumped into fewer records leave more records whole, so m can come out smaller than under
# independent loss.


def _chain(loss: float, burst: float) -> tuple[float, float]:
    burst = max(burst, 1.0 / (1.0 - loss))
    return 1.0 - 1.0 / burst, loss / (burst * (1.0 - loss))


def _sum(values: list[float], start: int, n: int) -> float:
    """numpy's pairwise float64 sum of values[start:start + n], in its order of additions:
    the planner gave the same parity when it summed with numpy, to the last bit."""
    if n < 8:
        total = 0.0
        for i in range(start, start + n):
            total += values[i]
        return total
    if n <= 128:
        r = values[start:start + 8]
        i, whole = 8, n - n % 8
        while i < whole:
            r = [r[j] + values[start + i + j] for j in range(8)]
            i += 8
        total = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
        for j in range(start + i, start + n):
            total += values[j]
        return total
    half = n // 2
    half -= half % 8
    return _sum(values, start, half) + _sum(values, start + half, n - half)


def _failures(k: int, loss: float, burst: float) -> Iterator[float]:
    """P(fewer than k of the first t frames arrive), for t = 1, 2, ... (endless)."""
    stay, enter = _chain(loss, burst)
    go, leave = 1.0 - stay, 1.0 - enter
    # mass by received count r = 0..k (k absorbs "k or more"), split by the last frame's state
    lost = [0.0] * (k + 1)
    recv = [0.0] * (k + 1)
    lost[0] = loss
    recv[1] = 1.0 - loss
    while True:
        yield _sum(lost, 0, k) + _sum(recv, 0, k)
        to_lost = [a * stay + b * enter for a, b in zip(lost, recv)]
        arrive = [a * go + b * leave for a, b in zip(lost, recv)]
        recv = [0.0, *arrive[:-1]]
        recv[k] += arrive[k]
        lost = to_lost


def _check_channel(loss: float, burst: float) -> None:
    if not 0.0 <= loss < 1.0:
        raise FecError(f"loss must be a share in [0, 1), got {loss!r}")
    if not 1.0 <= burst < math.inf:
        raise FecError(f"burst must be a finite mean burst length of at least 1 frame, got {burst!r}")


def delivery_probability(k: int, n: int, loss: float, burst: float = 1.0) -> float:
    """P(at least k of n frames arrive) on the channel model above."""
    k, n = _check_code(k, n)
    _check_channel(loss, burst)
    for t, fail in enumerate(_failures(k, loss, burst), start=1):
        if t == n:
            return 1.0 - fail
    raise AssertionError("unreachable")


def parity_for(k: int, loss: float, target: float = 0.99, burst: float = 1.0, max_n: int = 255) -> int:
    """Fewest parity shards m such that at least k of k+m fragments arrive with probability >= target.

    Each fragment is lost with probability `loss`, in bursts of `burst` frames on average (the
    model above; 1 = independent loss). Raises FecError when even n = max_n cannot reach the target.
    """
    try:
        k, max_n = operator.index(k), operator.index(max_n)
    except TypeError as e:
        raise FecError(f"k and max_n must be integers, got k={k!r}, max_n={max_n!r}") from e
    if not 1 <= k <= max_n <= MAX_SHARDS:
        raise FecError(f"need 1 <= k <= max_n <= {MAX_SHARDS}, got k={k}, max_n={max_n}")
    _check_channel(loss, burst)
    if not 0.0 <= target <= 1.0:
        raise FecError(f"target must be a probability in [0, 1], got {target!r}")
    return _parity_for(k, float(loss), float(target), float(burst), max_n)


@functools.lru_cache(maxsize=4096)
def _parity_for(k: int, loss: float, target: float, burst: float, max_n: int) -> int:
    if loss == 0.0:
        return 0
    allowed = 1.0 - target  # compare failure masses: small, hence precise
    fail = 1.0
    for n, fail in enumerate(_failures(k, loss, burst), start=1):
        if n >= k and fail <= allowed:
            return n - k
        if n == max_n:
            break
    raise FecError(
        f"no n <= {max_n} delivers k={k} fragments with probability {target} at {loss:.1%} loss "
        f"in bursts of {burst:g}: n={max_n} reaches {1.0 - fail:.6f}"
    )


def record_parity(k: int, loss: float, burst: float, spacing: float, target: float, cap: int) -> int:
    """Parity fragments for a record of `k` data shards sent `spacing` frames apart on a channel
    of `loss` in bursts of `burst`, for `target`, at most `cap`: the most allowed when the target is
    out of reach. The payload's radio sizes each record with it, and its air plan prices them alike."""
    cap = max(0, min(cap, MAX_SHARDS - k))
    try:
        return min(parity_for(k, loss, target, burst=interleaved_burst(loss, burst, spacing), max_n=k + cap), cap)
    except FecError:
        return cap


def interleaved_burst(loss: float, burst: float, spacing: float) -> float:
    """Mean burst seen by frames `spacing` frames apart on a channel of mean burst `burst`.

    Interleaving spaces one record's fragments out; sampling the two-state chain every
    `spacing` frames gives another two-state chain whose memory is (1 - 1/b - q)^spacing
    (q = P(lost | received)). Feed the result to `parity_for` to plan for an interleaved link.
    """
    _check_channel(loss, burst)
    if not spacing >= 1:
        raise FecError(f"spacing must be at least 1 frame, got {spacing!r}")
    if loss == 0.0:
        return 1.0
    stay, enter = _chain(loss, burst)
    memory = (stay - enter) ** spacing
    return 1.0 / ((1.0 - loss) * (1.0 - memory))


class LossEstimator:
    """Exponentially weighted estimate of frame loss and mean burst length.

    `loss` is the share of frames lost; `burst` = 1 / (1 - P(lost | previous lost)), the mean
    run of consecutive losses, which `parity_for` takes as is. Both are ratios of exponentially
    decayed counts (frames, lost frames; frames after a loss, losses after a loss) that forget
    with a half-life of `halflife_frames` frames, and start from the prior as if one memory's
    worth of frames had shown it. Per-frame outcomes (`observe`) inform both; counts the ground
    reports back (`observe_counts`) carry no order, so they move only `loss`.
    """

    def __init__(self, prior_loss: float = 0.2, prior_burst: float = 4.0, halflife_frames: float = 200.0):
        _check_channel(prior_loss, prior_burst)
        if not 0.0 < halflife_frames < math.inf:
            raise FecError(f"halflife_frames must be positive, got {halflife_frames!r}")
        self._keep = 0.5 ** (1.0 / halflife_frames)
        memory = 1.0 / (1.0 - self._keep)  # what the decayed frame count settles at
        self._prior_stay = 1.0 - 1.0 / prior_burst
        self._frames = memory
        self._lost = prior_loss * memory
        self._after_loss = prior_loss * memory  # frames that followed a loss ...
        self._lost_after_loss = self._prior_stay * self._after_loss  # ... and were lost too
        self._previous_lost: bool | None = None
        self.frames = 0

    @property
    def loss(self) -> float:
        return self._lost / self._frames

    @property
    def burst(self) -> float:
        # With no loss seen for a long while the burst evidence has decayed away: keep the prior.
        stay = self._lost_after_loss / self._after_loss if self._after_loss > 1e-9 else self._prior_stay
        return 1.0 / max(1.0 - stay, 1e-6)  # a dead link would otherwise divide by zero

    def _decay(self, factor: float) -> None:
        self._frames *= factor
        self._lost *= factor
        self._after_loss *= factor
        self._lost_after_loss *= factor

    def observe(self, received: bool) -> None:
        lost = not received
        self._decay(self._keep)
        self._frames += 1.0
        self._lost += lost
        if self._previous_lost:  # this frame says whether a burst went on
            self._after_loss += 1.0
            self._lost_after_loss += lost
        self._previous_lost = lost
        self.frames += 1

    def observe_counts(self, sent: int, received: int) -> None:
        try:
            sent, received = operator.index(sent), operator.index(received)
        except TypeError as e:
            raise FecError(f"sent and received must be integers, got {sent!r}, {received!r}") from e
        if not 0 <= received <= sent:
            raise FecError(f"need 0 <= received <= sent, got sent={sent}, received={received}")
        if sent == 0:
            return
        factor = self._keep ** sent
        weight = (1.0 - factor) / (1.0 - self._keep)  # what `sent` single observations would add
        self._decay(factor)
        self._frames += weight
        self._lost += weight * (sent - received) / sent
        self._previous_lost = None  # what comes next does not follow a known frame
        self.frames += sent

    def parity(self, k: int, target: float = 0.99, max_n: int = 255) -> int:
        """`parity_for` at the current estimates (FecError when the target is out of reach)."""
        return parity_for(k, min(self.loss, 1.0 - 1e-9), target, self.burst, max_n)

    def __repr__(self) -> str:
        return f"LossEstimator(loss={self.loss:.3f}, burst={self.burst:.2f}, frames={self.frames})"
