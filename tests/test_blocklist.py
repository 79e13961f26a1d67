"""The owner's blocklist on the payload: hashed in the bundle, still catching every listed phrase."""

from __future__ import annotations

import pytest

from payload.persona.guard import OutboundGuard
from stratoecho.blocklist import BlocklistFormatError, HashedBlocklist


def test_phrases_are_hashed_yet_caught_in_any_case_and_spacing():
    hashed = HashedBlocklist.from_entries(["Elm Street", "Marta", "/\\b\\d{5}\\b/"])
    text = hashed.dumps()
    assert "elm" not in text.lower() and "marta" not in text.lower()  # nothing readable on the card
    back = HashedBlocklist.loads(text)
    guard = OutboundGuard(hashed=back)
    assert not guard.allow("the wind smells of ELM   street, again")
    assert not guard.allow("I thought of marta.")
    assert not guard.allow("postcode 12345 below me")
    assert guard.allow("elms line the street below")  # the words, not the phrase
    assert guard.dropped["blocklist"] == 3


def test_salts_differ_so_two_bundles_do_not_share_hashes():
    a, b = (HashedBlocklist.from_entries(["Elm Street"]) for _ in range(2))
    assert set(a.phrases).isdisjoint(b.phrases)


def test_a_damaged_blocklist_names_its_line():
    with pytest.raises(BlocklistFormatError, match="blocklist.txt:3"):
        HashedBlocklist.loads("# x\nsalt 00ff\nphrase nothex 2\n", "blocklist.txt")
    with pytest.raises(BlocklistFormatError, match="more than"):
        HashedBlocklist.from_entries(["one two three four five six seven eight nine"])


def test_a_bundle_built_with_a_blocklist_carries_it_and_the_daemon_guards_with_it(tiny_bundle, tmp_path):
    import shutil

    from host_training.pipeline.bundling import add_blocklist
    from stratoecho.bundle import load_bundle, write_bundle

    out = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, out)
    manifest = load_bundle(out).manifest
    (tmp_path / "block.txt").write_text("# private\nMarta Lindqvist\n")
    add_blocklist(tmp_path / "block.txt", out, manifest)
    write_bundle(out, manifest)
    bundle = load_bundle(out)  # verified: the blocklist's sha256 is in [[files]]
    guard = OutboundGuard(hashed=bundle.blocklist())
    assert not guard.allow("hello marta lindqvist") and guard.allow("hello marta")
    (out / "blocklist.txt").write_text("tampered\n")
    from stratoecho.bundle import BundleError

    with pytest.raises(BundleError, match="blocklist.txt"):
        load_bundle(out)
