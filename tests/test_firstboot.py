"""First boot of a flashed card (payload/firstboot.py): the boot partition's cloud-init user-data read,
what is missing or malformed refused with the file and what was expected, nothing installed then."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from payload import firstboot
from stratoecho.bundle import BundleManifest, file_entry, write_bundle
from stratoecho.wire.uplink_keys import FLIGHT, decode_key, encode_key, load_key, new_key

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "config" / "payload.pi.toml"


def _bundle(dest: Path) -> None:
    dest.mkdir(parents=True)
    (dest / "model.Q4_1.gguf").write_bytes(b"GGUF" + bytes(60))
    write_bundle(dest, BundleManifest(
        persona=dict(name="Ada", system_prompt="", chat_template="x"),
        model=dict(file="model.Q4_1.gguf", quantization="Q4_1", architecture="llama", base="tiny",
                   context_length=256, n_params=1),
        files=[file_entry(dest, "model.Q4_1.gguf")]))


def _user_data(key_line: str, callsign="STRATO1", radio="      kind: sx127x\n      frequency_mhz: 434.25\n") -> str:
    return ("#cloud-config\nhostname: strato1\nstratoecho:\n"
            f"  callsign: {callsign}\n  flight_key: {key_line}\n  radio:\n{radio}")


@pytest.fixture
def boot(tmp_path) -> Path:
    boot = tmp_path / "boot"
    boot.mkdir()
    (boot / "meta-data").write_text("instance-id: strato1\n")
    (boot / "user-data").write_text(_user_data(encode_key(new_key(), FLIGHT)))
    _bundle(boot / "persona")
    return boot


def _run(boot: Path, tmp_path: Path, *extra: str) -> int:
    return firstboot.main(["--boot", str(boot), "--shipped", str(SHIPPED), "--etc", str(tmp_path / "etc"),
                           "--user", "", *extra])


def test_a_complete_boot_partition_is_installed(boot, tmp_path, monkeypatch):
    persona_dest = tmp_path / "opt" / "persona"
    monkeypatch.setattr(firstboot, "render_config", lambda shipped, s, _r=firstboot.render_config:
                        _r(shipped, s).replace('bundle = "/opt/stratoecho/persona"', f'bundle = "{persona_dest}"'))
    assert _run(boot, tmp_path) == 0
    etc = tmp_path / "etc"
    config = tomllib.loads((etc / "payload.toml").read_text())
    assert config["callsign"] == "STRATO1"
    assert config["radio"]["kind"] == "sx127x" and config["radio"]["frequency_mhz"] == 434.25
    assert "pictures" in config["radio"]  # a LoRa chip keeps its picture channel
    assert (etc / "uplink.key").stat().st_mode & 0o777 == 0o600
    line = [ln for ln in (boot / "user-data").read_text().splitlines() if "flight_key" in ln][0]
    assert (etc / "uplink.key").read_text() == line.split(": ", 1)[1].strip() + "\n"  # byte for byte keygen's
    assert load_key(etc / "uplink.key") == decode_key(line.split(": ", 1)[1].strip().encode())  # as the payload reads it
    assert (persona_dest / "persona.toml").is_file()
    assert (etc / firstboot.SETTINGS_DONE.name).is_file()
    assert not (boot / firstboot.REFUSED).exists()


def _refused(boot: Path, tmp_path: Path) -> str:
    assert _run(boot, tmp_path) == 1
    assert not (tmp_path / "etc" / firstboot.SETTINGS_DONE.name).exists()  # the payload's unit stays off
    assert not (tmp_path / "etc" / "uplink.key").exists()
    return (boot / firstboot.REFUSED).read_text()


def test_a_missing_key_is_refused_with_the_file_and_what_was_expected(boot, tmp_path):
    text = (boot / "user-data").read_text()
    (boot / "user-data").write_text("\n".join(ln for ln in text.splitlines() if "flight_key" not in ln) + "\n")
    why = _refused(boot, tmp_path)
    assert f"{boot / 'user-data'}: stratoecho.flight_key missing" in why
    assert "stratoecho-flight-key-v1:<hex>:<crc>" in why and "keygen" in why


def test_a_damaged_key_is_refused(boot, tmp_path):
    line = encode_key(new_key(), FLIGHT)
    damaged = line[:30] + ("0" if line[30] != "0" else "1") + line[31:]
    (boot / "user-data").write_text(_user_data(damaged))
    assert "checksum does not match" in _refused(boot, tmp_path)


def test_no_user_data_and_no_persona_are_both_said(boot, tmp_path):
    (boot / "user-data").unlink()
    why = _refused(boot, tmp_path)
    assert "user-data: missing" in why and "#cloud-config" in why


def test_a_persona_that_does_not_check_is_refused(boot, tmp_path):
    (boot / "persona" / "model.Q4_1.gguf").write_bytes(b"GGUF" + bytes(61))
    assert f"{boot / 'persona'}: the persona bundle" in _refused(boot, tmp_path)


@pytest.mark.parametrize("callsign, said", [("", "callsign missing"), ("not a call!", "letters and digits")])
def test_a_callsign_is_checked(boot, tmp_path, callsign, said):
    (boot / "user-data").write_text(_user_data(encode_key(new_key(), FLIGHT), callsign=callsign or "''"))
    assert said in _refused(boot, tmp_path)


def test_a_radio_the_payload_would_refuse_is_refused_at_first_boot(boot, tmp_path):
    (boot / "user-data").write_text(_user_data(encode_key(new_key(), FLIGHT), radio="      kind: sx127x\n      mtu: 9\n"))
    assert "stratoecho.radio: the payload would refuse it" in _refused(boot, tmp_path)


def test_not_yaml_and_not_cloud_config_are_refused(boot, tmp_path):
    (boot / "user-data").write_text("stratoecho: [unclosed\n")
    why = _refused(boot, tmp_path)
    assert "not '#cloud-config'" in why and "not YAML" in why


def test_check_writes_nothing(boot, tmp_path, capsys):
    assert _run(boot, tmp_path, "--check") == 0
    assert "complete (callsign STRATO1, radio sx127x)" in capsys.readouterr().out
    assert not (tmp_path / "etc").exists()


def test_a_serial_radio_drops_the_picture_channel():
    settings = firstboot.Settings("STRATO1", bytes(32), {"kind": "lora_uart", "serial_port": "/dev/serial0"}, Path("."))
    config = tomllib.loads(firstboot.render_config(SHIPPED.read_text(), settings))
    assert config["radio"] == {"kind": "lora_uart", "serial_port": "/dev/serial0"}
    assert config["callsign"] == "STRATO1" and "schedule" in config


def test_the_units_gate_the_payload_on_what_first_boot_writes():
    unit = (ROOT / "systemd" / "stratoecho-firstboot.service").read_text()
    dropin = (ROOT / "systemd" / "stratoecho-payload.service.d" / "10-firstboot.conf").read_text()
    done = str(firstboot.SETTINGS_DONE)
    assert f"ConditionPathExists=!{done}" in unit  # once
    assert "--boot /boot/firmware" in unit and "-m payload.firstboot" in unit
    assert f"ConditionPathExists={done}" in dropin and "After=stratoecho-firstboot.service" in dropin
