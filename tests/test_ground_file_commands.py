"""`serve`, `watch` and `export` read the station's file that `listen --config` reads
(groundstation/config.py, `station_file`): its keys stand in for the flags not given, a flag
given wins even at its default's value, a repeated flag adds to the file's list, and a file that
will not do, or no database anywhere, is said with exit status 2. The dashboard's unit runs on
the shipped file alone."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

import groundstation.watch as watch_module
import groundstation.web.cli as serve_cli
from groundstation.__main__ import main
from groundstation.config import station_file
from stratoecho import wire

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ground.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def served(monkeypatch):
    """What `serve` would start the dashboard with; it then stops at once (exit status 1)."""
    seen = {}

    def fake_serve(db, host, port, stop, sessions, chase, layers, limits, *, allowed_hosts, flight_dbs):
        seen.update(db=str(db), host=host, port=port, home=chase.home, burst=chase.burst_alt_m, limits=limits,
                    allowed=list(allowed_hosts), flight_dbs=[str(p) for p in flight_dbs], tiles=layers.tiles,
                    session_s=sessions.session_s)
        raise OSError("stopped by the test")

    monkeypatch.setattr(serve_cli, "serve", fake_serve)
    monkeypatch.setenv("XDG_CONFIG_HOME", "/nonexistent")  # no operator file of this machine's
    return seen


def test_serve_takes_the_files_keys_and_the_flags_over_them(tmp_path, served, capsys):
    path = write(tmp_path, f'[database]\npath = "{tmp_path / "g.db"}"\n\n[station]\nposition = [52.7, -2.75]\n\n'
                           '[exports.udp_feed]\nburst_alt_m = 28000\n\n'
                           '[dashboard]\nhost = "0.0.0.0"\nport = 8099\nallow_hosts = ["chase-laptop.local"]\n'
                           f'flight_dbs = ["{tmp_path / "far.db"}"]\nsession_hours = 2\n'
                           'limits = { head_s = 5, network_connections = 384 }\n')
    assert main(["serve", "--config", str(path)]) == 1
    assert served["db"] == str(tmp_path / "g.db") and (served["host"], served["port"]) == ("0.0.0.0", 8099)
    assert served["allowed"] == ["chase-laptop.local"] and served["flight_dbs"] == [str(tmp_path / "far.db")]
    assert (served["limits"].head_s, served["limits"].network_connections) == (5, 384)
    assert served["home"][:2] == (52.7, -2.75) and served["burst"] == 28000 and served["session_s"] == 7200
    # A flag wins, even at its default's value; a repeated flag adds to the file's list, a limit
    # given replaces the file's of that name only.
    assert main(["serve", "--config", str(path), "--host", "127.0.0.1", "--port", "0", "--allow-host", "ground.lan",
                 "--limit", "head_s=9", "--db", str(tmp_path / "other.db"), "--station", "51", "0"]) == 1
    assert served["db"] == str(tmp_path / "other.db") and (served["host"], served["port"]) == ("127.0.0.1", 0)
    assert served["allowed"] == ["chase-laptop.local", "ground.lan"] and served["home"][:2] == (51.0, 0.0)
    assert (served["limits"].head_s, served["limits"].network_connections) == (9, 384)
    # Without the file: the flags' own defaults, as before.
    assert main(["serve", "--db", str(tmp_path / "g.db")]) == 1
    assert (served["host"], served["port"], served["allowed"], served["home"]) == ("127.0.0.1", 8080, [], None)
    assert "stopped by the test" in capsys.readouterr().err


def test_the_station_position_falls_back_to_sondehubs_as_listen_does(tmp_path, served):
    path = write(tmp_path, f'[database]\npath = "{tmp_path / "g.db"}"\n\n'
                           '[exports.sondehub]\nposition = [52.2, -0.12, 40.0]\n')
    assert main(["serve", "--config", str(path)]) == 1
    assert served["home"] == (52.2, -0.12, 40.0)


@pytest.mark.parametrize(("command", "text", "expected"), [
    (["serve"], "", r"error: no database: --db FILE, or \[database\] path in .*ground\.toml"),
    (["watch", "--once"], "[station]\nname = \"home\"\n", r"no database: --db FILE, or \[database\] path in"),
    (["export", "--format", "gpx", "--out", "x.gpx"], "[dashboard]\nport = 70000\n",
     r"ground\.toml: 1 problem\(s\) in the configuration:\n  \[dashboard\.port\] Input should be less than or "
     r"equal to 65535"),
    (["serve"], '[dashboard]\nlimits = { head = 5 }\nallow_hosts = ["*.local"]\n',
     r"\[dashboard\.allow_hosts\] Value error, --allow-host '\*\.local': a wildcard(.|\n)*"
     r"\[dashboard\.limits\] Value error, 'head' is no dashboard limit"),
    (["watch"], '[database]\npath = 7\n', r"\[database\.path\] Input is not a valid path"),
])
def test_a_file_that_will_not_do_is_said_with_status_2(tmp_path, capsys, command, text, expected):
    path = write(tmp_path, text)
    assert main([*command, "--config", str(path)]) == 2
    assert re.search(expected, capsys.readouterr().err)


def test_no_database_at_all_is_a_usage_error(capsys):
    assert main(["watch", "--once"]) == 2
    # (a line of its own: an earlier test's base-map warm-up thread may log beside it)
    assert "error: no database: --db FILE" in capsys.readouterr().err.splitlines()


def test_watch_and_export_read_what_listen_wrote_from_one_file(tmp_path, capsys, monkeypatch):
    air = tmp_path / "air.hex"
    air.write_text("".join(wire.encode_sentence(wire.Telemetry("STRATO", seq, "12:04:11", 52.1, -0.1, 900 + seq, 9,
                                                               -40.5, 180.2, 3700, 3)).hex() + "\n"
                           for seq in (1, 2)), encoding="utf-8")
    path = write(tmp_path, f'[source]\nkind = "replay"\nfile = "{air}"\n\n[database]\npath = "{tmp_path / "g.db"}"\n\n'
                           '[output]\nrecords = "none"\n\n[station]\nposition = [52.0, -0.1]\n')
    assert main(["listen", "--config", str(path)]) == 0
    capsys.readouterr()
    assert main(["watch", "--config", str(path), "--once", "--plain"]) == 0
    assert "#2 52.10000,-0.10000 902 m" in capsys.readouterr().out
    chases = []
    monkeypatch.setattr(watch_module, "watch", lambda *a, chase, **kw: chases.append(chase))
    assert main(["watch", "--config", str(path), "--once", "--burst-alt", "30000"]) == 0
    assert (chases[0].home, chases[0].burst_alt_m) == ((52.0, -0.1, 0.0), 30000)  # [station] position, the flag
    gpx = tmp_path / "flight.gpx"
    assert main(["export", "--config", str(path), "--format", "gpx", "--out", str(gpx)]) == 0
    assert gpx.read_text().count("<trkpt") == 2


def test_exports_uploader_and_server_come_from_the_live_uploaders_tables(tmp_path):
    seen = []
    parser = argparse.ArgumentParser()
    export = parser.add_subparsers(dest="command").add_parser("export")
    for flag in ("--db", "--format", "--uploader", "--out"):
        export.add_argument(flag)
    export.set_defaults(func=lambda args: seen.append(vars(args).copy()) or 0)
    station_file(export, "export")
    path = write(tmp_path, '[database]\npath = "g.db"\n\n[exports.sondehub]\nuploader = "M0ABC"\n'
                           'url = "http://127.0.0.1:8001/amateur/telemetry"\n\n'
                           '[exports.ssdv]\nupload = true\nuploader = "M0ABC-2"\n')
    for argv in (["--format", "sondehub"], ["--format", "ssdv"], ["--format", "gpx", "--out", "f.gpx"],
                 ["--format", "sondehub", "--uploader", "G4XYZ", "--out", "http://elsewhere/"]):
        args = parser.parse_args(["export", "--config", str(path), *argv])
        assert args.func(args) == 0
    assert [(s["db"].name, s["uploader"], s["out"]) for s in seen] == [
        ("g.db", "M0ABC", "http://127.0.0.1:8001/amateur/telemetry"), ("g.db", "M0ABC-2", None),
        ("g.db", "M0ABC", "f.gpx"), ("g.db", "G4XYZ", "http://elsewhere/")]


def test_the_dashboards_unit_runs_on_the_shipped_file_alone(served):
    from tests.test_systemd_units import load, value

    unit = load("stratoecho-dashboard.service")
    argv = value(unit, "Service", "ExecStart").split("-m groundstation ", 1)[1].split()
    credential = value(unit, "Service", "LoadCredential")
    assert credential == "ground.toml:/etc/stratoecho/ground.toml" and argv == ["serve", "--config", "%d/ground.toml"]
    assert main(["serve", "--config", str(ROOT / "config" / "ground.toml")]) == 1
    assert (served["db"], served["host"], served["port"]) == ("/var/lib/stratoecho/ground.db", "0.0.0.0", 8080)
    assert json.dumps(served["allowed"]) == "[]"
