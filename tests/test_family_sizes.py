"""host_training/base/family_sizes.py: the real models' shapes, counted as their model cards count them.

(The tensor lists and llama.cpp's dry-run sizes are checked against the converter's and the
quantizer's real output on every family's tiny stand-in in tests/test_pi_families.py.)
"""

from __future__ import annotations

import pytest

from host_training.base import family_sizes as S
from host_training.base.tiny_families import FAMILIES


@pytest.mark.parametrize("model", S.REAL_MODELS, ids=lambda m: m.name)
def test_parameters_are_the_published_count(model):
    assert model.family in FAMILIES
    assert S.parameters(S.shape_of(model.config)) == pytest.approx(model.published_params, rel=0.01)


def test_shapes_the_converter_depends_on():
    lfm2 = S.shape_of(next(m for m in S.REAL_MODELS if m.family == "lfm2").config)
    assert lfm2.n_ff == 4608 and lfm2.attention_layers == 6  # LFM2's FFN rule: 6656 -> 2/3 -> multiple of 256
    phi4 = S.shape_of(next(m for m in S.REAL_MODELS if m.family == "phi4-mini").config)
    assert (phi4.rope_dims, phi4.rope_factors) == (96, 48)  # partial rotary 0.75 of head_dim 128
    llama = S.shape_of(next(m for m in S.REAL_MODELS if m.family == "llama3.2").config)
    assert llama.rope_freqs == 32 and ("rope_freqs.weight", (32,)) in S.gguf_tensors(llama)


def test_speed_is_on_a_board_that_holds_the_model():
    smol = S.shape_of(S.REAL_MODELS[0].config)
    zero = S.speed_on("pi-zero-2w", smol, 106_000_000)
    assert zero.fits and zero.board == "pi-zero-2w" and 64 <= zero.n_ctx <= S.MAX_CONTEXT
    assert 5 < zero.tokens_per_s < 1.1e9 / 106e6  # bandwidth over the file is the ceiling
    phi = S.shape_of(next(m for m in S.REAL_MODELS if m.family == "phi4-mini").config)
    assert not S.speed_on("pi3", phi, 2_500_000_000).fits
    assert S.speed_on("pi5", phi, 2_500_000_000).board == "pi5-4gb"
