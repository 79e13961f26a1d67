"""The payload finds the hardware that stands in for the Pi by name (payload/rigs.py): a rig
registered as a `stratoecho.hardware` entry point, and nothing else, brings its options to
`payload run`, its table to the configuration, and its parts to the daemon."""

from __future__ import annotations

import argparse
from importlib.metadata import EntryPoint

import pytest

from payload import rigs
from payload.__main__ import build_parser, configure
from payload.config import PayloadConfig, load_config
from payload.parts.hardware import open_hardware


class WindTunnel:
    """A fake rig: one option of its own, a table with one key, and 'parts' it records."""

    name = "tunnel"

    def add_arguments(self, run: argparse.ArgumentParser, source) -> None:
        source.add_argument("--tunnel", dest="hardware", action="store_const", const=self.name)
        run.add_argument("--wind", type=float)

    def configure(self, cfg, table: dict, args: argparse.Namespace) -> dict:
        unknown = set(table) - {"wind"}
        if unknown:
            raise ValueError(f"[tunnel] does not know {sorted(unknown)}")
        wind = getattr(args, "wind", None)
        return {"wind": wind if wind is not None else table.get("wind", 0.0)}

    def open(self, cfg, settings, data_dir):
        return ("tunnel parts", settings, data_dir.name)


TUNNEL = WindTunnel()


@pytest.fixture
def tunnel_installed(monkeypatch):
    real = rigs.entry_points

    def with_tunnel(group: str):
        found = list(real(group=group))
        if group == rigs.ENTRY_POINTS:
            found.append(EntryPoint(name="tunnel", value="tests.test_rigs:TUNNEL", group=group))
        return found

    monkeypatch.setattr(rigs, "entry_points", with_tunnel)


def test_a_rig_registered_alone_brings_its_options_table_and_parts(tunnel_installed, tmp_path):
    assert "tunnel" in rigs.rig_names() and rigs.PI not in rigs.rig_names()
    config = tmp_path / "payload.toml"
    config.write_text('sensors = "tunnel"\n\n[tunnel]\nwind = 3.0\n')
    args = build_parser().parse_args(["run", "--config", str(config), "--wind", "7.5"])
    cfg, settings = configure(args)
    assert cfg.sensors == "tunnel" and settings == {"wind": 7.5}
    assert open_hardware(cfg, tmp_path / "data", settings) == ("tunnel parts", {"wind": 7.5}, "data")
    # Its flag selects it as --sim selects the bench's, from the built-in defaults.
    args = build_parser().parse_args(["run", "--tunnel"])
    cfg, settings = configure(args)
    assert cfg.sensors == "tunnel" and settings == {"wind": 0.0}


def test_hardware_no_rig_provides_is_refused_naming_those_there_are(tunnel_installed, tmp_path):
    config = tmp_path / "payload.toml"
    config.write_text('sensors = "wind-tunnel"\n')
    with pytest.raises(Exception, match=r"sensors 'wind-tunnel' is neither .* hardware, sim, tunnel"):
        load_config(config)


def test_the_pi_needs_no_rig():
    cfg = PayloadConfig()
    assert cfg.sensors == rigs.PI  # a configuration that says nothing flies the Pi's own parts
