"""The drift of a quantization with error bars (host_training/evaluate/drift.py) and the choice it drives
(stratoecho.boards.choose): deterministic bootstrap, noise never buys a bigger file, a drift
beyond the tolerance is not taken, --quant-tolerance is checked before any work.

Synthetic per-token losses stand in for llama.cpp here; tests/test_quantize_targets.py and
tests/test_build.py measure real quantizations.
"""

from __future__ import annotations

import numpy as np
import pytest

from host_training.evaluate import drift
from stratoecho import boards

MB = boards.MB


def scores(name, nll, top=None):
    return drift.TokenScores(name, [np.asarray(a, dtype=np.float64) for a in nll],
                             [np.zeros(len(a), dtype=int) if top is None else np.asarray(t) for a, t in
                              zip(nll, top or [None] * len(nll))])


@pytest.fixture(scope="module")
def reference():
    """40 held-out conversations of 10-60 persona tokens, losses around 3 nats."""
    rng = np.random.default_rng(1)
    return scores("model.F32.gguf", [rng.gamma(4.0, 0.75, size=rng.integers(10, 60)) for _ in range(40)])


def shifted(reference, name, shift, noise, seed):
    rng = np.random.default_rng(seed)
    return scores(name, [a + shift + rng.normal(0.0, noise, a.size) for a in reference.nll])


# ----------------------------------------------------------------------------- the bootstrap
def test_the_bootstrap_is_deterministic_with_its_seed(reference):
    sums = [a.sum() - 3 * a.size for a in reference.nll]
    counts = [a.size for a in reference.nll]
    a = drift.bootstrap_interval(sums, counts, resamples=1000, seed=0)
    assert a == drift.bootstrap_interval(sums, counts, resamples=1000, seed=0)
    assert a != drift.bootstrap_interval(sums, counts, resamples=1000, seed=1)
    mean = sum(sums) / sum(counts)
    assert a[0] < mean < a[1]
    # a 99 % interval is wider than the 95 % one
    b = drift.bootstrap_interval(sums, counts, seed=0, level=0.99)
    assert b[0] < a[0] and b[1] > a[1]
    with pytest.raises(ValueError, match="one sum and one count per group"):
        drift.bootstrap_interval([], [])


def test_compare_pairs_tokens_and_brackets_a_known_shift(reference):
    d = drift.compare(reference, shifted(reference, "q", 0.05, 0.02, seed=3))
    assert d.low < 0.05 < d.high and d.nll_increase == pytest.approx(0.05, abs=0.005)
    assert d.tokens == reference.tokens and d.conversations == 40 and (d.resamples, d.seed) == (1000, 0)
    assert d.top1_agreement == 1.0 and d.val_loss == pytest.approx(reference.loss + d.nll_increase)
    assert d == drift.compare(reference, shifted(reference, "q", 0.05, 0.02, seed=3))  # same data, same figures
    f = d.figures()
    assert f["val_perplexity"] == pytest.approx(np.exp(d.val_loss)) and f["high"] == d.high
    with pytest.raises(ValueError, match="not scored on the same tokens"):
        drift.compare(reference, scores("short", reference.nll[:-1]))


def flipped(reference, name, share, seed):
    """`reference`'s losses with the top token changed at about `share` of the positions."""
    rng = np.random.default_rng(seed)
    return drift.TokenScores(name, list(reference.nll),
                             [np.where(rng.random(t.size) < share, t + 1, t) for t in reference.top])


def test_the_top1_agreement_has_its_own_interval(reference):
    d = drift.compare(reference, flipped(reference, "q", 0.2, seed=4))
    assert d.nll_increase == 0.0 and d.top1_agreement == pytest.approx(0.8, abs=0.03)
    assert d.top1_low < d.top1_agreement < d.top1_high and d.top1_high - d.top1_low < 0.1
    assert d.figures()["top1_low"] == d.top1_low and "top-1 agreement 8" in d.describe()
    same = drift.compare(reference, reference)
    assert (same.top1_agreement, same.top1_low, same.top1_high) == (1.0, 1.0, 1.0)


# ----------------------------------------------------------------------------- the choice
def test_noise_never_buys_a_bigger_file_and_too_much_drift_is_not_taken(reference):
    # Q5_K_M and Q4_K_M differ by noise only (Q4_K_M even a hair worse on average), Q2_K drifts by 0.1 nats
    q5 = drift.compare(reference, shifted(reference, "Q5_K_M", 0.0, 0.03, seed=6))
    q4 = drift.compare(reference, shifted(reference, "Q4_K_M", 0.0, 0.03, seed=5))
    q2 = drift.compare(reference, shifted(reference, "Q2_K", 0.1, 0.05, seed=7))
    assert q4.nll_increase > q5.nll_increase  # the old rule (best perplexity) would take Q5_K_M
    assert q4.low < q5.high and q5.low < q4.high  # but their intervals overlap: noise
    candidates = {"Q5_K_M": (380 * MB, q5.high), "Q4_K_M": (350 * MB, q4.high), "Q2_K": (250 * MB, q2.high)}
    c = boards.choose("pi5-4gb", candidates, tolerance=drift.DEFAULT_TOLERANCE)
    assert c.quant == "Q4_K_M" and c.within_tolerance
    assert "the smallest file whose drift is within the tolerance" in c.reason
    assert q2.low > drift.DEFAULT_TOLERANCE and c.fitting[-1] == "Q2_K"  # least drift first
    # a looser tolerance admits Q2_K, the smallest
    assert boards.choose("pi5-4gb", candidates, tolerance=0.2).quant == "Q2_K"


def test_when_nothing_that_fits_is_within_tolerance_the_least_drift_is_taken_and_said():
    candidates = {"Q4_K_M": (300 * MB, 0.03), "Q3_K_M": (230 * MB, 0.09), "Q2_K": (190 * MB, 0.2)}
    c = boards.choose("pi-zero-2w", candidates, tolerance=0.02)  # 233 MB: Q4_K_M is out
    assert c.quant == "Q3_K_M" and not c.within_tolerance
    assert "NOT within the tolerance" in c.reason and "too big: Q4_K_M" in c.reason
    with pytest.raises(ValueError, match="tolerance must be a finite number >= 0"):
        boards.choose("pi5", candidates, tolerance=float("nan"))


def test_a_type_that_changes_the_models_choices_is_not_taken_for_its_drift(reference):
    # Q2_K keeps the mean loss (a high-loss persona hides it) but picks another top token 30 % of the time
    q2 = drift.compare(reference, flipped(reference, "Q2_K", 0.3, seed=8))
    q4 = drift.compare(reference, flipped(reference, "Q4_K_M", 0.03, seed=9))
    assert q2.high <= drift.DEFAULT_TOLERANCE and q2.top1_low < drift.DEFAULT_MIN_TOP1 <= q4.top1_low
    candidates = {"Q4_K_M": (350 * MB, q4.high, q4.top1_low), "Q2_K": (200 * MB, q2.high, q2.top1_low)}
    c = boards.choose("pi5-4gb", candidates, tolerance=drift.DEFAULT_TOLERANCE, min_top1=drift.DEFAULT_MIN_TOP1)
    assert c.quant == "Q4_K_M" and c.within_tolerance and "top-1 agreement reaches the floor" in c.reason
    # the drift alone (floor 0) takes the smaller file
    assert boards.choose("pi5-4gb", candidates, tolerance=drift.DEFAULT_TOLERANCE).quant == "Q2_K"
    # when only Q2_K fits, it is the best there is, and the reason says what it missed
    c = boards.choose("pi-zero-2w", candidates, tolerance=drift.DEFAULT_TOLERANCE, min_top1=drift.DEFAULT_MIN_TOP1)
    assert c.quant == "Q2_K" and not c.within_tolerance
    assert "within the drift but below the agreement floor: Q2_K" in c.reason
    # Nothing reaches the floor (a model on random weights): the one that changes its choices least
    # among those within the drift, not the least drift (the 135M build in docs/training.md).
    near_flat = {"Q8_0": (125 * MB, 0.0012, 0.866), "Q3_K_M": (84 * MB, -0.0055, 0.309), "Q2_K": (80 * MB, 0.002, 0.152),
                 "IQ2_M": (77 * MB, 0.0286, 0.136)}
    c = boards.choose("pi-zero-2w", near_flat, tolerance=0.02, min_top1=0.9)
    assert c.quant == "Q8_0" and not c.within_tolerance
    assert "of those the best top-1 agreement is Q8_0's 86.6%" in c.reason
    # and when nothing is within the drift either, the least drift
    c = boards.choose("pi-zero-2w", {"IQ2_M": (77 * MB, 0.0286, 0.136), "Q2_K": (80 * MB, 0.05, 0.5)},
                      tolerance=0.02, min_top1=0.9)
    assert c.quant == "IQ2_M" and "the least drift is IQ2_M's" in c.reason
    with pytest.raises(ValueError, match="top-1 agreement floor must be a number from 0 to 1"):
        boards.choose("pi5", candidates, tolerance=0.02, min_top1=90)
    with pytest.raises(ValueError, match="candidate Q2_K: the top-1 agreement must be from 0 to 1"):
        boards.choose("pi5", {"Q2_K": (200 * MB, 0.01, 1.5)}, tolerance=0.02)


# ----------------------------------------------------------------------------- the flag
@pytest.mark.parametrize(
    "extra, message",
    [
        (["--target", "pi-zero-2w", "--quant-tolerance", "0"], "--quant-tolerance: Input should be greater than 0"),
        (["--target", "pi-zero-2w", "--quant-tolerance", "-0.1"], "--quant-tolerance: Input should be greater than 0"),
        (["--target", "pi-zero-2w", "--quant-tolerance", "2"], "--quant-tolerance: Input should be less than or equal to 1"),
        (["--target", "pi-zero-2w", "--quant-tolerance", "nan"], "--quant-tolerance: Input should be a finite number"),
        (["--quant-tolerance", "0.05"], "--quant-tolerance: applies to --target only"),
        (["--target", "pi-zero-2w", "--quant-min-top1", "90"], "--quant-min-top1: Input should be less than or equal to 1"),
        (["--target", "pi-zero-2w", "--quant-min-top1", "-0.5"], "--quant-min-top1: Input should be greater than or equal to 0"),
        (["--quant-min-top1", "0.9"], "--quant-min-top1: applies to --target only: it is the least top-1 agreement"),
    ],
)
def test_the_tolerance_flag_is_checked_before_any_work(chat_data_dir, tmp_path, capsys, extra, message):
    from host_training.__main__ import main

    rc = main(["build", "--data", str(chat_data_dir), "--from-scratch", "--out", str(tmp_path / "b"), *extra])
    assert rc == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_the_tolerance_flag_must_be_a_number(chat_data_dir, tmp_path, capsys):
    from host_training.__main__ import main

    with pytest.raises(SystemExit) as e:
        main(["build", "--data", str(chat_data_dir), "--from-scratch", "--target", "pi4", "--quant-tolerance", "low",
              "--out", str(tmp_path / "b")])
    assert e.value.code == 2 and "--quant-tolerance: invalid float value: 'low'" in capsys.readouterr().err
