"""A GGUF's header read without the gguf package (stratoecho/gguf_header.py): the same shape as
gguf's reader gives, refused files named, and the payload's budget sized by the model's own shape."""

from __future__ import annotations

import pytest

from stratoecho.bundle import load_bundle
from stratoecho.gguf_header import ArrayKey, GgufError, header_keys, model_shape


def test_the_shape_is_the_gguf_readers(tiny_bundle):
    import gguf

    from host_training.quantize.quantizer import model_shape as read_with_gguf

    path = load_bundle(tiny_bundle).model_path
    assert model_shape(path) == read_with_gguf(path, reader=gguf.GGUFReader(str(path)))
    assert model_shape(path, n_ctx=96).n_ctx == 96
    keys = header_keys(path)
    assert isinstance(keys["tokenizer.ggml.tokens"], ArrayKey) and keys["tokenizer.ggml.tokens"].count > 100
    assert keys["general.architecture"] == "llama"


def test_what_is_not_a_gguf_is_named(tmp_path, tiny_bundle):
    bad = tmp_path / "notes.gguf"
    bad.write_bytes(b"hello world, not a model")
    with pytest.raises(GgufError, match="notes.gguf: not a GGUF file"):
        header_keys(bad)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(load_bundle(tiny_bundle).model_path.read_bytes()[:300])
    with pytest.raises(GgufError, match="cut.gguf: .*(ends early|runs past)"):
        header_keys(cut)
    with pytest.raises(GgufError, match="missing.gguf: cannot read"):
        header_keys(tmp_path / "missing.gguf")


def test_the_payload_sizes_its_context_by_the_models_shape(tmp_path, tiny_bundle):
    from tests.test_payload import _daemon

    d = _daemon(tmp_path, load_bundle(tiny_bundle))
    d.cfg.persona.board = "pi-zero-2w"
    budget = d.parts.musings.budget()
    assert d.parts.musings._model_shape == model_shape(load_bundle(tiny_bundle).model_path)
    assert budget.fits and budget.n_ctx == load_bundle(tiny_bundle).manifest.model.context_length // 32 * 32
