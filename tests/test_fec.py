"""The erasure code (any k of n shards rebuild a record), its field, and the overhead planner."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sim.bench.measure import fec as fec_bench
from sim.channel.loss import GilbertElliott, LossSpec
from stratoecho.wire import fec
from stratoecho.wire.fec import FecError

byte = st.integers(0, 255)
nonzero = st.integers(1, 255)


def _clmul_mod(a: int, b: int) -> int:
    """Reference product: shift-and-add with reduction by 0x11D, independent of the tables."""
    out = 0
    while b:
        if b & 1:
            out ^= a
        b >>= 1
        a <<= 1
        if a & 0x100:
            a ^= 0x11D
    return out


# --------------------------------------------------------------------------- GF(256)


@settings(max_examples=300, deadline=None)
@given(a=byte, b=byte, c=byte)
def test_field_axioms(a, b, c):
    mul = fec.gf_mul
    assert mul(a, b) == _clmul_mod(a, b)
    assert mul(a, b) == mul(b, a)
    assert mul(a, mul(b, c)) == mul(mul(a, b), c)
    assert mul(a, b ^ c) == mul(a, b) ^ mul(a, c)
    assert mul(a, 1) == a and mul(a, 0) == 0


@settings(max_examples=200, deadline=None)
@given(a=byte, b=nonzero)
def test_inverse_and_division(a, b):
    assert fec.gf_mul(b, fec.gf_inv(b)) == 1
    assert fec.gf_mul(fec.gf_mul(a, b), fec.gf_inv(b)) == a
    assert fec.gf_mul(fec.gf_mul(a, fec.gf_inv(b)), b) == a


def test_two_generates_the_multiplicative_group():
    powers = list(itertools.accumulate(range(255), lambda p, _: fec.gf_mul(p, 2), initial=1))  # 2^0 .. 2^255
    assert sorted(powers[:255]) == list(range(1, 256))
    assert powers[255] == 1


def test_field_refuses_zero_division_and_non_elements():
    with pytest.raises(ZeroDivisionError):
        fec.gf_inv(0)
    with pytest.raises(FecError, match="GF"):
        fec.gf_mul(256, 1)
    with pytest.raises(FecError, match="GF"):
        fec.gf_mul(-1, 1)


# --------------------------------------------------------------------------- the code


@st.composite
def code_and_subset(draw, max_n: int = 40):
    n = draw(st.integers(1, max_n))
    k = draw(st.integers(1, n))
    order = draw(st.permutations(range(n)))
    keep = draw(st.integers(k, n))
    return k, n, order[:keep]


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=3000), case=code_and_subset())
def test_any_k_shards_rebuild_the_data(data, case):
    k, n, subset = case
    shards = fec.encode(data, k, n)
    assert len(shards) == n
    assert {len(s) for s in shards} == {fec.shard_size(len(data), k)}
    assert b"".join(shards[:k]).startswith(data)  # systematic: the data shards are the data
    assert fec.decode({i: shards[i] for i in subset}, k, n, len(data)) == data


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=600), case=code_and_subset())
def test_fewer_than_k_shards_is_an_error(data, case):
    k, n, subset = case
    with pytest.raises(FecError, match=f"any k={k}"):
        fec.decode({i: fec.encode(data, k, n)[i] for i in subset[:k - 1]}, k, n, len(data))


@pytest.mark.parametrize("seed", range(4))
def test_large_code_k200_n255(seed):
    rng = random.Random(seed)
    data = rng.randbytes(rng.randint(0, 3000))
    shards = fec.encode(data, 200, 255)
    keep = rng.sample(range(255), rng.randint(200, 255)) if seed else list(range(55, 255))  # seed 0: all parity used
    assert fec.decode({i: shards[i] for i in keep}, 200, 255, len(data)) == data


def test_every_k_subset_of_small_codes():
    """Exhaustive: for n <= 8, every set of k shards is enough (every square submatrix invertible)."""
    data = bytes(range(37)) * 3
    for n in range(1, 9):
        for k in range(1, n + 1):
            shards = fec.encode(data, k, n)
            for subset in itertools.combinations(range(n), k):
                assert fec.decode({i: shards[i] for i in subset}, k, n, len(data)) == data, (k, n, subset)


def test_generator_is_cauchy_under_identity():
    k, n = 5, 9
    basis = [fec.encode(bytes(1 if j == col else 0 for j in range(k)), k, n) for col in range(k)]
    for i in range(n - k):
        for j in range(k):
            assert basis[j][k + i] == bytes([fec.gf_inv((k + i) ^ j)])


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=500), k=st.integers(1, 30), extra=st.integers(0, 30))
def test_shards_do_not_depend_on_n(data, k, extra):
    """A record can be topped up with fresh parity later: (k, n) is a prefix of (k, 255)."""
    full = fec.encode(data, k, 255)
    assert fec.encode(data, k, k + extra) == full[:k + extra]
    heard = {i: full[i] for i in range(k + extra, k + extra + k) if i < 255}
    if len(heard) == k:
        assert fec.decode(heard, k, 255, len(data)) == data


def test_empty_and_tiny_records():
    assert fec.encode(b"", 3, 5) == [b"\0"] * 5
    assert fec.decode({4: b"\0", 3: b"\0", 0: b"\0"}, 3, 5, 0) == b""
    shards = fec.encode(b"x", 1, 4)
    assert shards[0] == b"x"
    assert fec.decode({3: shards[3]}, 1, 4, 1) == b"x"


def test_bytes_like_shards_are_accepted():
    shards = fec.encode(b"hello, horizon", 3, 5)
    heard = {0: bytearray(shards[0]), 3: memoryview(shards[3]), 4: shards[4]}
    assert fec.decode(heard, 3, 5, 14) == b"hello, horizon"


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda s: {**s, 1: s[1][:-1]}, "same size"),
        (lambda s: {i: v + b"\0" for i, v in s.items()}, "wrong length"),
        (lambda s: {i: v[:-1] for i, v in s.items()}, "wrong length"),
        (lambda s: {**s, 7: s[0]}, "out of range"),
        (lambda s: {**s, -1: s[0]}, "out of range"),
        (lambda s: {**s, "2": s[2]}, "not an integer"),
        (lambda s: {**s, 2: "text"}, "must be bytes"),
        (lambda s: list(s.values()), "mapping"),
    ],
)
def test_corrupted_shards_are_refused(mutate, message):
    data = b"Cold at 30 km: the battery sags and the horizon curves."
    shards = dict(enumerate(fec.encode(data, 4, 7)))
    with pytest.raises(FecError, match=message):
        fec.decode(mutate(shards), 4, 7, len(data))


@pytest.mark.parametrize("k, n", [(0, 4), (5, 4), (1, 256), (-1, 3), (2.0, 4), (None, 4)])
def test_k_and_n_out_of_range(k, n):
    with pytest.raises(FecError, match="k"):
        fec.encode(b"data", k, n)
    with pytest.raises(FecError, match="k"):
        fec.decode({0: b"d"}, k, n, 1)


def test_bad_data_and_length():
    with pytest.raises(FecError, match="bytes"):
        fec.encode("text", 2, 3)
    with pytest.raises(FecError, match="negative"):
        fec.decode({0: b"a"}, 1, 2, -1)
    assert issubclass(FecError, ValueError)


# --------------------------------------------------------------------------- overhead planning


def _binomial_delivery(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, r) * (1 - p) ** r * p ** (n - r) for r in range(k, n + 1))


def _markov_delivery_brute(k: int, n: int, p: float, burst: float) -> float:
    """Every loss pattern of n frames, weighted by the two-state chain (sim/channel/loss.py's)."""
    stay = 1 - 1 / burst
    enter = p / (burst * (1 - p))
    total = 0.0
    for pattern in itertools.product((False, True), repeat=n):  # True: lost
        prob = p if pattern[0] else 1 - p
        for prev, cur in zip(pattern, pattern[1:]):
            q = stay if prev else enter
            prob *= q if cur else 1 - q
        if pattern.count(False) >= k:
            total += prob
    return total


def _m(k, loss, target, burst=1.0):
    try:
        return fec.parity_for(k, loss, target, burst)
    except FecError:
        return math.inf


@settings(max_examples=150, deadline=None)
@given(k=st.integers(1, 40), loss=st.floats(0.0, 0.9), target=st.floats(0.5, 0.9999))
def test_parity_for_independent_loss_is_the_binomial_tail(k, loss, target):
    m = _m(k, loss, target)
    if m == math.inf:
        assert _binomial_delivery(k, 255, loss) < target + 1e-9
        return
    assert _binomial_delivery(k, k + m, loss) >= target - 1e-9
    if m > 0:
        assert _binomial_delivery(k, k + m - 1, loss) < target + 1e-9


@settings(max_examples=80, deadline=None)
@given(k=st.integers(1, 40), n_extra=st.integers(0, 60), loss=st.floats(0.0, 0.95))
def test_delivery_probability_matches_math_comb(k, n_extra, loss):
    n = min(255, k + n_extra)
    assert fec.delivery_probability(k, n, loss) == pytest.approx(_binomial_delivery(k, n, loss), abs=1e-12)


@pytest.mark.parametrize(
    "k, n, p, burst", [(1, 6, 0.3, 4), (3, 8, 0.3, 4), (4, 10, 0.5, 4), (5, 9, 0.1, 8), (2, 7, 0.2, 2)]
)
def test_gilbert_elliott_dynamic_programme_matches_brute_force(k, n, p, burst):
    assert fec.delivery_probability(k, n, p, burst) == pytest.approx(_markov_delivery_brute(k, n, p, burst), abs=1e-12)


def test_gilbert_elliott_model_matches_the_simulated_channel():
    k, n, p, burst = 4, 10, 0.3, 4.0
    channel = GilbertElliott(LossSpec(p, burst), seed=5)
    for _ in range(100):  # forget the channel's fixed start in the good state
        channel.drop()
    windows = 20_000
    ok = sum(sum(not channel.drop() for _ in range(n)) >= k for _ in range(windows))
    expected = fec.delivery_probability(k, n, p, burst)
    sd = math.sqrt(expected * (1 - expected) / windows) * 3  # windows are correlated: generous
    assert abs(ok / windows - expected) < 4 * sd


@settings(max_examples=100, deadline=None)
@given(
    k=st.integers(1, 40), a=st.floats(0.0, 0.7), b=st.floats(0.0, 0.7),
    target=st.floats(0.5, 0.999), burst=st.floats(1.0, 8.0),
)
def test_parity_for_is_monotone_in_loss(k, a, b, target, burst):
    lo, hi = sorted((a, b))
    assert _m(k, lo, target, burst) <= _m(k, hi, target, burst)


@settings(max_examples=100, deadline=None)
@given(
    k=st.integers(1, 40), loss=st.floats(0.0, 0.7), a=st.floats(0.0, 1.0), b=st.floats(0.0, 1.0),
    burst=st.floats(1.0, 8.0),
)
def test_parity_for_is_monotone_in_target(k, loss, a, b, burst):
    lo, hi = sorted((a, b))
    assert _m(k, loss, lo, burst) <= _m(k, loss, hi, burst)


@settings(max_examples=100, deadline=None)
@given(k=st.integers(1, 40), loss=st.floats(0.1, 0.5), target=st.floats(0.99, 0.999), burst=st.floats(2.0, 8.0))
def test_bursty_loss_needs_more_parity_than_independent(k, loss, target, burst):
    assume(burst > 1 / (1 - loss))
    independent, bursty = fec.parity_for(k, loss, target), fec.parity_for(k, loss, target, burst)
    assert bursty >= independent
    if burst >= 4:
        assert bursty > independent


def test_bursts_shorter_than_independent_count_as_independent():
    # Losses that avoid each other are never assumed: burst=1 is plain independent loss.
    for p in (0.1, 0.3, 0.6):
        assert fec.parity_for(6, p, 0.999, burst=1.0) == fec.parity_for(6, p, 0.999, burst=1 / (1 - p))
        assert fec.delivery_probability(6, 15, p, 1.0) == pytest.approx(_binomial_delivery(6, 15, p), abs=1e-12)


def test_interleaving_leaves_a_shorter_burst():
    p, burst = 0.3, 4.0
    assert fec.interleaved_burst(p, burst, 1) == pytest.approx(burst)
    assert fec.interleaved_burst(p, burst, 200) == pytest.approx(1 / (1 - p))
    stay, enter = 1 - 1 / burst, p / (burst * (1 - p))
    chain = np.array([[1 - enter, enter], [1 - stay, stay]])  # rows: from received, from lost
    for spacing in (2, 3, 8):
        stay_d = np.linalg.matrix_power(chain, spacing)[1, 1]
        assert fec.interleaved_burst(p, burst, spacing) == pytest.approx(1 / (1 - stay_d))


def test_parity_for_edges_and_bad_arguments():
    assert fec.parity_for(9, 0.0, 0.999999) == 0
    assert fec.parity_for(9, 0.3, 0.0) == 0
    with pytest.raises(FecError, match="no n <= 255"):
        fec.parity_for(200, 0.5, 0.99)
    for bad in (dict(loss=1.0), dict(loss=-0.1), dict(loss=math.nan), dict(target=1.5), dict(burst=0.5),
                dict(burst=math.inf), dict(k=0), dict(max_n=256), dict(k=30, max_n=20)):
        args = {"k": 4, "loss": 0.3, "target": 0.99, "burst": 1.0, "max_n": 255, **bad}
        with pytest.raises(FecError):
            fec.parity_for(**args)


# --------------------------------------------------------------------------- the loss estimator


@pytest.mark.parametrize("p, burst", [(0.1, 4.0), (0.3, 4.0), (0.5, 8.0), (0.3, 1 / 0.7)])
def test_loss_estimator_converges_on_a_gilbert_elliott_channel(p, burst):
    channel = GilbertElliott(LossSpec(p, burst), seed=11)
    est = fec.LossEstimator(prior_loss=0.05, prior_burst=1.0, halflife_frames=2000)
    for _ in range(30_000):
        est.observe(not channel.drop())
    assert est.loss == pytest.approx(p, abs=0.05)
    assert est.burst == pytest.approx(burst, rel=0.2)
    assert est.frames == 30_000
    assert est.parity(5, 0.99) == fec.parity_for(5, est.loss, 0.99, est.burst)


def test_loss_estimator_starts_at_its_prior_and_follows_reported_counts():
    est = fec.LossEstimator(prior_loss=0.2, prior_burst=3.0, halflife_frames=100)
    assert (est.loss, est.burst) == (pytest.approx(0.2), pytest.approx(3.0))
    for _ in range(30):
        est.observe_counts(sent=50, received=35)
    assert est.loss == pytest.approx(0.3, abs=1e-3)
    assert est.burst == pytest.approx(3.0)  # counts carry no order
    est.observe_counts(0, 0)
    with pytest.raises(FecError):
        est.observe_counts(5, 6)
    with pytest.raises(FecError):
        fec.LossEstimator(prior_loss=1.0)


def test_loss_estimator_survives_a_dead_link():
    est = fec.LossEstimator(halflife_frames=10)
    for _ in range(5000):
        est.observe(False)
    assert est.loss > 0.999 and math.isfinite(est.burst)
    with pytest.raises(FecError, match="no n"):
        est.parity(4)


# --------------------------------------------------------------------------- the bench helper


def test_bench_rows_run_and_decode_what_they_count():
    rows = fec_bench.delivery_rows(seed=3, musings=24) + fec_bench.repair_rows(seed=3, musings=24)
    assert len(rows) == 12
    assert all(len(r) == 4 and all(isinstance(x, str) for x in r) for r in rows)
    assert any(r[0] == "fec: 30 % burst loss, musings delivered" for r in rows)
    assert any(r[0] == "fec: 30 % burst loss, bytes on air per delivered byte" and r[2] == "x bound" for r in rows)
