"""`export --format` reads one table (groundstation/exports/formats.py): a format added by
registration alone, with no edit to the exports package, is offered, run and reported by the
real command line; and what --format offers is exactly the table."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from groundstation.__main__ import build_parser, main
from groundstation.exports import FORMATS, ExportFormat, ExportRequest, Report, register_format
from groundstation.exports.base import has_fix
from groundstation.link.heard import Heard
from groundstation.store import Store
from stratoecho import wire


class CountingFile:
    """A fake exporter: counts the sentences and fixes it is fed, writes the counts on close."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sentences = 0
        self.fixes = 0

    def add(self, heard: Heard) -> None:
        self.sentences += 1
        self.fixes += has_fix(heard.record)

    def flush(self) -> None:
        self.path.write_text(f"{self.sentences} {self.fixes}\n")

    def close(self) -> None:
        self.flush()


def _needs_out(args: ExportRequest) -> str | None:
    return None if args.out else "--format count needs --out FILE"


def _report(args: ExportRequest, exporter: CountingFile, rows: int) -> Report:
    missing = exporter.sentences - exporter.fixes
    return Report((f"counted {exporter.fixes} fixes in {rows} sentences of {args.db}",),
                  status=1 if missing else 0,
                  warnings=(f"warning: {missing} without a fix",) if missing else ())


COUNT = ExportFormat("count", lambda args: CountingFile(Path(args.out)), _report, check=_needs_out)


@pytest.fixture
def count_format():
    register_format(COUNT)
    try:
        yield COUNT
    finally:
        del FORMATS[COUNT.name]


def small_db(path: Path, fixes: int, without_fix: int) -> Path:
    """A ground database holding `fixes` sentences with a GPS fix, then `without_fix` without."""
    with Store(path) as store:
        for seq in range(fixes + without_fix):
            fix = seq < fixes
            t = wire.Telemetry("STRATO1", seq, f"12:00:{seq:02d}", 52.0 if fix else 0.0, -1.0 if fix else 0.0,
                               1000 + seq, 9 if fix else 0, -20.5, 540.0, 3712, 1)
            assert store.add_telemetry(t, f"2024-06-20T12:00:{seq:02d}.500+00:00")
    return path


def format_choices() -> list[str]:
    """What `python -m groundstation export --format` offers, read from the real parser."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    export = sub.choices["export"]
    return list(next(a for a in export._actions if a.dest == "format").choices)


def test_a_registered_format_runs_through_the_command_line(count_format, tmp_path, capsys):
    db = small_db(tmp_path / "g.db", fixes=3, without_fix=0)
    out = tmp_path / "counts.txt"
    assert main(["export", "--db", str(db), "--format", "count", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"counted 3 fixes in 3 sentences of {db}\n" and captured.err == ""
    assert out.read_text() == "3 3\n"


def test_a_registered_format_says_its_exit_status_and_warnings(count_format, tmp_path, capsys):
    db = small_db(tmp_path / "g.db", fixes=2, without_fix=1)
    assert main(["export", "--db", str(db), "--format", "count", "--out", str(tmp_path / "c.txt")]) == 1
    captured = capsys.readouterr()
    assert captured.out == f"counted 2 fixes in 3 sentences of {db}\n"
    assert captured.err == "warning: 1 without a fix\n"
    assert main(["export", "--db", str(db), "--format", "count"]) == 2  # its own usage check
    assert capsys.readouterr().err == "error: --format count needs --out FILE\n"


def test_format_offers_exactly_the_table(count_format):
    assert format_choices() == list(FORMATS)
    assert "count" in format_choices()


def test_the_shipped_formats():
    assert format_choices() == list(FORMATS) == ["gpx", "kml", "csv", "sondehub", "ssdv"]


def test_a_name_is_registered_once_and_must_be_a_choice():
    with pytest.raises(ValueError, match="registered already"):
        register_format(ExportFormat("gpx", FORMATS["gpx"].make, FORMATS["gpx"].report))
    with pytest.raises(ValueError, match="lower-case word"):
        register_format(ExportFormat("Two Words", COUNT.make, COUNT.report))
    assert list(FORMATS) == ["gpx", "kml", "csv", "sondehub", "ssdv"]
