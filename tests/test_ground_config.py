"""The ground station's configuration (groundstation/config.py): the shipped example loads; each
kind of bad file is refused naming the file, the key and what was expected; every flag overrides
its key (a flag given with its default's value too) and flags alone make the configuration they
always did; `listen --config FILE` runs a station; and the flights are built by one rule for
`listen` and `decode`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from groundstation.__main__ import build_parser, decode_flights, main
from groundstation.assembly import build_listener
from groundstation.config import GroundConfig, ground_config, load_ground_config
from groundstation.link.keys import build_flights, downlink_check, followed_checks
from groundstation.store import GroundReader
from stratoecho import wire
from stratoecho.config import ConfigError
from stratoecho.wire.uplink import payload_hash
from stratoecho.wire.uplink_keys import new_key, write_key_file
from tests.fakes import write_flight_key

ROOT = Path(__file__).resolve().parents[1]


def listen_config(*argv: str) -> GroundConfig:
    return ground_config(build_parser().parse_args(["listen", *argv]))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ground.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_example_is_a_home_station():
    config = load_ground_config(ROOT / "config" / "ground.toml")
    assert config.source.kind == "udp" and config.source.address == ("0.0.0.0", 7373)
    assert str(config.database.path) == "/var/lib/stratoecho/ground.db"
    assert config.keys.callsign == "STRATO1" and str(config.keys.flight_key) == "/etc/stratoecho/uplink.key"
    assert config.exports.sondehub.uploader is None  # a callsign of one's own turns the upload on, never ours


# Each kind of bad file: what the file says, and what the error must say about it.
BAD = [
    ('[source]\nkind = "udp"\naddress = ":7373\n', ["not valid TOML", "line 3"]),
    ('[keys]\nflihgt_key = "k"\n', ["[keys.flihgt_key] Extra inputs are not permitted"]),
    ('[database]\nsource_quota_mb = "lots"\n', ["[database.source_quota_mb] Input should be a valid number",
                                                "(got 'lots')"]),
    ('[uplink]\ntag_len = 40\n', ["[uplink.tag_len] Input should be less than or equal to 32"]),
    ('[source]\nkind = "radio"\n', ["[source] Value error, kind 'radio' is no frame source; expected one of "
                                    "'udp', 'serial'"]),
    ('[source]\nkind = "udp"\n', ["[source.address] Field required"]),
    ('[source]\nkind = "udp"\naddress = "nowhere"\n', ["[source.address] Value error, 'nowhere' is not HOST:PORT"]),
    ('[source]\nkind = "lora"\nchip = "sx127x"\n', ["[source] Value error, --lora needs --frequency-mhz"]),
    ('[source]\nkind = "lora"\nchip = "sx127x"\nfrequency_mhz = 434.225\ndio0pin = 25\npa_boost = "maybe"\n',
     ["[source.dio0pin] Extra inputs are not permitted", "[source.pa_boost] Input should be a valid boolean"]),
    ('[source]\nkind = "serial"\ndevice = "/dev/ttyUSB0"\nframing = "ax25"\n',
     ["[source.framing] Input should be 'hex', 'kiss' or 'raw'"]),
    ('[keys]\nflight_key = "a.key"\ndownlink_key = "b.downlink"\n',
     ["flight_key and downlink_key (--flight-key, --downlink-key): one or the other"]),
    ('[keys.follow]\n"FAR 1" = "far.downlink"\n', ["[keys.follow] Value error, follow: 'FAR 1': a callsign is"]),
    ('[station]\nname = "home/attic"\n', ["[station.name] Value error, station 'home/attic' cannot be an MQTT "
                                           "topic level"]),
    ('[network]\nbroker = "mqtt.example.org:8883"\nprefix = "stratoecho/#"\n',
     ["[network.prefix] Value error, topic prefix level '#' cannot be an MQTT topic level"]),
    ('[uplink]\nskip_past = 41\n', ["uplink.skip_past needs keys.flight_key and keys.callsign"]),
    ('[exports.udp_feed]\nlanding = true\n', ["exports.udp_feed.landing goes with exports.udp_feed.address"]),
]


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_a_bad_file_is_refused_naming_the_file_and_the_key(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        listen_config("--config", str(path), "--db", str(tmp_path / "g.db"))
    message = str(e.value)
    assert message.startswith(f"{path}: ")
    for part in expected:
        assert part in message, message


def test_listen_says_what_is_wrong_and_exits_2(tmp_path, capsys):
    assert main(["listen", "--config", str(tmp_path / "missing.toml")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'missing.toml'}: configuration file not found\n"
    path = write(tmp_path, '[database]\npath = "g.db"\n')
    assert main(["listen", "--config", str(path)]) == 2
    assert f"error: {path}: no source: [source] kind = one of the sources, or a flag" in capsys.readouterr().err
    assert main(["listen", "--udp", "127.0.0.1:0"]) == 2
    assert "error: the command line: no database: [database] path, or --db FILE" in capsys.readouterr().err
    assert main(["listen", "--udp", "127.0.0.1:0", "--db", "g.db", "--uplink-skip-past", "4"]) == 2
    assert capsys.readouterr().err == ("error: --uplink-skip-past needs --flight-key and --callsign (whose counter "
                                       "moves; in the file: uplink.skip_past needs keys.flight_key and "
                                       "keys.callsign)\n")


def test_flags_override_the_file_even_at_their_defaults(tmp_path):
    path = write(tmp_path, '[source]\nkind = "udp"\naddress = "127.0.0.1:7373"\n\n[database]\npath = "a.db"\n\n'
                           '[uplink]\ntag_len = 12\nmtu = 64\n\n[keys.follow]\nFAR1 = "far.downlink"\n\n'
                           '[exports.sondehub]\nuploader = "M0ABC"\nmodulation = "FSK"\n')
    from_file = listen_config("--config", str(path))
    assert from_file.uplink.tag_len == 12 and from_file.uplink.mtu == 64 and from_file.exports.sondehub.modulation == "FSK"
    config = listen_config("--config", str(path), "--db", "b.db", "--tag-len", "8", "--sondehub-modulation", "LoRa",
                           "--follow", "FAR2=far2.downlink", "--uplink-to", "10.0.0.5:7356", "--quiet")
    assert str(config.database.path) == "b.db" and config.uplink.tag_len == 8 and config.uplink.mtu == 64
    assert config.exports.sondehub.modulation == "LoRa" and config.exports.sondehub.uploader == "M0ABC"
    assert config.keys.follow == {"FAR1": Path("far.downlink"), "FAR2": Path("far2.downlink")}
    assert config.source.address == ("127.0.0.1", 7373) and config.source.uplink_to == ("10.0.0.5", 7356)
    assert config.output.records == "none"
    serial = listen_config("--config", str(path), "--serial", "/dev/ttyUSB0", "--kiss")
    assert serial.source.kind == "serial" and serial.source.device == "/dev/ttyUSB0" and serial.source.framing == "kiss"
    with pytest.raises(ConfigError, match="--kiss goes with --serial DEV"):
        listen_config("--config", str(path), "--kiss")


def test_flags_alone_make_the_configuration_they_always_did(tmp_path):
    config = listen_config("--udp", "127.0.0.1:7355", "--db", "flight.db")
    assert config == GroundConfig(source={"kind": "udp", "address": "127.0.0.1:7355"}, database={"path": "flight.db"})
    raw = listen_config("--serial", "/dev/ttyUSB0", "--raw", "--tx-gap", "0.4", "--db", "f.db")
    assert (raw.source.framing, raw.source.baud, raw.source.burst_gap_s, raw.source.tx_gap_s) == ("raw", None, 0.03, 0.4)
    assert listen_config("--horus-udp", "--db", "f.db").source.address == ("0.0.0.0", 55672)
    assert listen_config("--replay", "a.hex", "--db", "f.db", "--ssdv-upload").exports.ssdv.upload


def test_listen_config_runs_a_station_from_a_replay(tmp_path, capsys):
    air = tmp_path / "air.hex"
    air.write_text("".join(wire.encode_sentence(wire.Telemetry("STRATO", seq, "12:04:11", 52.1, -0.1, 900 + seq, 9,
                                                               -40.5, 180.2, 3700, 3)).hex() + "\n"
                           for seq in (1, 2)), encoding="utf-8")
    db, stats = tmp_path / "ground.db", tmp_path / "stats.json"
    path = write(tmp_path, f'[source]\nkind = "replay"\nfile = "{air}"\n\n[database]\npath = "{db}"\n\n'
                           f'[output]\nrecords = "json"\nstats = "{stats}"\n')
    assert main(["listen", "--config", str(path)]) == 0
    assert [json.loads(line)["alt"] for line in capsys.readouterr().out.splitlines()] == [901, 902]
    assert json.loads(stats.read_text())["stored"] == 2
    with GroundReader.open(db) as ground:
        assert [row.seq for row in ground.track.telemetry()] == [1, 2]
    # The same file, another database by flag: the flag wins, the file is unchanged.
    assert main(["listen", "--config", str(path), "--db", str(tmp_path / "other.db"), "--quiet"]) == 0
    assert capsys.readouterr().out == "" and (tmp_path / "other.db").exists()


def test_listen_and_decode_build_their_flights_by_one_rule(tmp_path):
    """Every relay envelope is checked with every key known here: the relayers named, our own
    payload's (its callsign with our key) and each followed flight's, whoever builds the flights."""
    key = tmp_path / "flight.key"
    write_flight_key(key)
    far, near = tmp_path / "far.downlink", tmp_path / "near.downlink"
    for name, downlink in (("far", far), ("near", near)):
        write_key_file(tmp_path / f"{name}.key", key=new_key())
        assert main(["keygen", "--downlink-from", str(tmp_path / f"{name}.key"), str(downlink)]) == 0
    path = write(tmp_path, f'[source]\nkind = "replay"\nfile = "{tmp_path / "none.hex"}"\n'
                           f'[database]\npath = "{tmp_path / "g.db"}"\n'
                           f'[keys]\nflight_key = "{key}"\ncallsign = "STRATO1"\n'
                           f'[keys.follow]\nFAR1 = "{far}"\n[keys.relayers]\nNEAR1 = "{near}"\n')
    (tmp_path / "none.hex").write_text("")
    config = listen_config("--config", str(path))
    listener = build_listener(config)
    try:
        heard_by_listen = set(listener.flights.relayers)
        assert set(listener.flights.followed) == {"FAR1"}
    finally:
        listener.close()
    assert heard_by_listen == {payload_hash("STRATO1"), payload_hash("FAR1"), payload_hash("NEAR1")}
    keys = config.keys
    assert set(build_flights(keys, downlink_check(keys), followed_checks(keys)).relayers) == heard_by_listen
    decode = decode_flights(build_parser().parse_args(
        ["decode", "x.hex", "--flight-key", str(key), "--follow", f"FAR1={far}", "--relayer-key", f"NEAR1={near}"]))
    assert set(decode.relayers) == {payload_hash("FAR1"), payload_hash("NEAR1")}  # decode names no callsign
    assert set(decode.followed) == {"FAR1"} and decode.primary.decoder.auth is not None


def test_a_hat_in_the_file_is_the_hat_its_flags_describe(tmp_path):
    from groundstation.sources.lora_hat import hat_options

    path = write(tmp_path, '[source]\nkind = "lora"\nchip = "sx126x"\nfrequency_mhz = 434.225\nlora_mode = 2\n'
                           'busy_pin = 6\ndio1_pin = "GPIO26"\ntcxo_voltage = 1.8\nspi_device = 1\n'
                           '[database]\npath = "g.db"\n')
    from_file = listen_config("--config", str(path))
    from_flags = listen_config("--lora", "sx126x", "--frequency-mhz", "434.225", "--lora-mode", "2", "--busy-pin", "6",
                               "--dio1-pin", "GPIO26", "--tcxo-voltage", "1.8", "--spi-device", "1", "--db", "g.db")
    assert hat_options(from_file.source.options()) == hat_options(from_flags.source.options())
    assert from_file.source.tuned_mhz() == 434.225 and from_file.source.where() == "lora sx126x"
    tuned = listen_config("--config", str(path), "--frequency-mhz", "434.4")  # a flag over one of the HAT's keys
    assert tuned.source.frequency_mhz == 434.4 and tuned.source.model_extra == {"busy_pin": 6, "dio1_pin": "GPIO26",
                                                                                  "tcxo_voltage": 1.8}


def test_a_part_that_cannot_be_had_closes_every_part_opened_before_it(tmp_path, monkeypatch):
    """`build_listener` opens the database, the source and the followed flights' databases before the
    exporters; settings the exporters refuse (exit 2) must not leave the source's socket bound or a
    database open (one ExitStack, groundstation/assembly.py)."""
    import groundstation.assembly as assembly
    from groundstation.store import Store

    closed = []
    real_source, real_close = assembly.open_source, Store.close

    def source(*args, **kwargs):
        opened = real_source(*args, **kwargs)
        close = opened.close
        opened.close = lambda: (closed.append("source"), close())[1]
        return opened

    monkeypatch.setattr(assembly, "open_source", source)
    monkeypatch.setattr(Store, "close", lambda self: (closed.append(Path(self.path).name), real_close(self))[1])
    key, far = tmp_path / "flight.key", tmp_path / "far.downlink"
    write_flight_key(key)
    write_key_file(tmp_path / "far.key", key=new_key())
    assert main(["keygen", "--downlink-from", str(tmp_path / "far.key"), str(far)]) == 0
    path = write(tmp_path, f'[source]\nkind = "udp"\naddress = "127.0.0.1:0"\n'
                           f'[database]\npath = "{tmp_path / "ground.db"}"\n'
                           f'[keys]\ncallsign = "STRATO1"\nflight_key = "{key}"\n[keys.follow]\nFAR1 = "{far}"\n'
                           '[exports.ssdv]\nurl = "http://127.0.0.1:9/api"\n')
    with pytest.raises(assembly.StartError, match="--ssdv-url goes with --ssdv-upload") as refused:
        build_listener(listen_config("--config", str(path)))
    assert refused.value.status == 2
    assert sorted(closed) == ["ground.FAR1.db", "ground.db", "source"]
