"""`listen` opens its source from one table (groundstation/sources/registry.py): a source added
by registration alone, with no edit to the ground station, is configured in a station's file (or
picked by its own flag), opened and run by the real command line; and what the table holds is
what `[source] kind` accepts and what `listen` offers as flags."""

from __future__ import annotations

import json
from collections import Counter
from typing import Literal

import pytest
from pydantic import Field

from groundstation.__main__ import build_parser, main
from groundstation.sources import SOURCES, Received, SourceKind, SourceSettings, register_source
from groundstation.store import GroundReader
from stratoecho import wire


class HexListSource:
    """A fake source: the frames its settings list, each once, then the end (as a replay ends)."""

    def __init__(self, frames: list[str]) -> None:
        self.frames = [bytes.fromhex(f) for f in frames]
        self.errors: Counter = Counter()
        self.closed = False

    def __iter__(self):
        for i, data in enumerate(self.frames):
            yield Received(data, f"hexlist {i}")

    def close(self) -> None:
        self.closed = True


class HexListSettings(SourceSettings):
    kind: Literal["hexlist"] = "hexlist"
    frames: list[str] = Field(min_length=1)
    ends = True

    def where(self) -> str:
        return f"{len(self.frames)} listed frames"


def _flags(where, listen) -> None:
    where.add_argument("--hexlist", metavar="HEX,HEX", help="frames as hex, comma-separated")


def _from_flags(args, configured) -> dict | None:
    return None if args.hexlist is None else {"kind": "hexlist", "frames": args.hexlist.split(",")}


HEXLIST = SourceKind("hexlist", HexListSettings, lambda s, ctx: HexListSource(s.frames), _flags, _from_flags)


@pytest.fixture
def hexlist():
    register_source(HEXLIST)
    try:
        yield HEXLIST
    finally:
        del SOURCES[HEXLIST.name]


def sentences(n: int) -> list[str]:
    return [wire.encode_sentence(wire.Telemetry("STRATO", seq, "12:04:11", 52.1, -0.1, 1000 + seq, 9, -40.5,
                                                180.2, 3700, 3)).hex() for seq in range(1, n + 1)]


def test_a_registered_source_runs_a_station_from_its_file(hexlist, tmp_path, capsys):
    db = tmp_path / "ground.db"
    cfg = tmp_path / "ground.toml"
    cfg.write_text(f'[source]\nkind = "hexlist"\nframes = {json.dumps(sentences(3))}\n\n'
                   f'[database]\npath = "{db}"\n\n[output]\nrecords = "json"\n', encoding="utf-8")
    assert main(["listen", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert [json.loads(line)["seq"] for line in out.splitlines()] == [1, 2, 3]
    with GroundReader.open(db) as ground:
        assert [row.seq for row in ground.track.telemetry()] == [1, 2, 3]


def test_a_registered_source_offers_its_flag_and_is_picked_by_it(hexlist, tmp_path, capsys):
    assert "--hexlist" in build_parser()._subparsers._group_actions[0].choices["listen"].format_help()
    assert main(["listen", "--hexlist", ",".join(sentences(2)), "--db", str(tmp_path / "g.db"), "--json"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_the_table_is_what_a_file_may_name(hexlist, tmp_path, capsys):
    cfg = tmp_path / "ground.toml"
    cfg.write_text(f'[source]\nkind = "radio"\n[database]\npath = "{tmp_path / "g.db"}"\n', encoding="utf-8")
    assert main(["listen", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"error: {cfg}: 1 problem(s)" in err and "[source] Value error, kind 'radio' is no frame source" in err
    assert all(repr(name) in err for name in SOURCES) and "'hexlist'" in err
    cfg.write_text(f'[source]\nkind = "hexlist"\nframe = ["00"]\n[database]\npath = "{tmp_path / "g.db"}"\n',
                   encoding="utf-8")
    assert main(["listen", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "[source.frames] Field required" in err and "[source.frame] Extra inputs are not permitted" in err


def test_a_source_is_registered_once_under_a_plain_name(hexlist):
    with pytest.raises(ValueError, match="registered already"):
        register_source(HEXLIST)
    with pytest.raises(ValueError, match="lower-case"):
        register_source(SourceKind("Hex List", HexListSettings, HEXLIST.open))
    with pytest.raises(ValueError, match="its settings' kind defaults to 'hexlist', not 'hexfile'"):
        register_source(SourceKind("hexfile", HexListSettings, HEXLIST.open))
    assert not {"Hex List", "hexfile"} & set(SOURCES)


def test_the_shipped_sources_are_the_flags_listen_offers():
    listen = build_parser()._subparsers._group_actions[0].choices["listen"]
    flags = {o for a in listen._actions for o in a.option_strings}
    assert list(SOURCES) == ["udp", "serial", "replay", "gateway", "gateway_udp", "horus_udp", "lora"]
    assert {"--udp", "--serial", "--replay", "--gateway", "--gateway-udp", "--horus-udp", "--lora"} <= flags
