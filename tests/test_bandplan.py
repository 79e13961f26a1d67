"""The band plan decides the duty cycle; a configuration is legal under its rule and its beacon fits
(stratoecho/bandplan.py, payload/config.py [radio], payload/policy/duty.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from payload.config import PayloadConfig, RadioSection, load_config
from payload.policy.duty import MIN_BULK_SHARE, beacon_plan
from stratoecho import bandplan
from stratoecho.config import ConfigError, parse_toml
from tests.conftest import ROOT


def test_the_shipped_pi_configuration_is_legal_and_its_beacon_fits():
    cfg = load_config(ROOT / "config" / "payload.pi.toml")
    r = cfg.radio
    rule = bandplan.rule(r.band_plan)
    bandplan.check(rule, r.frequency_mhz, r.bandwidth_hz, r.erp_mw)  # legal: raises otherwise
    assert r.duty_cycle == bandplan.effective_duty_cycle(rule, None)
    plan = beacon_plan(r, cfg.callsign, cfg.telemetry_format, cfg.schedule.telemetry_s)
    assert plan.fits and plan.per_hour_s <= (1 - MIN_BULK_SHARE) * plan.budget_s
    assert 434.04 <= r.frequency_mhz - r.bandwidth_hz / 2e6 and r.frequency_mhz + r.bandwidth_hz / 2e6 <= 434.79


def test_the_bench_configuration_keeps_its_ten_percent():
    cfg = load_config(ROOT / "config" / "payload.sim.toml")
    assert cfg.radio.band_plan == "custom" and cfg.radio.duty_cycle == 0.1


def test_the_duty_cycle_is_the_rules_and_an_explicit_one_may_only_be_stricter():
    assert RadioSection(band_plan="erc70-03-433", frequency_mhz=434.0).duty_cycle == 0.1
    narrow = dict(band_plan="erc70-03-434-narrow", frequency_mhz=434.25, bandwidth_hz=20_800)
    assert RadioSection(**narrow).duty_cycle == 1.0  # no limit in the narrow sub-band
    assert RadioSection(**narrow, duty_cycle=0.5).duty_cycle == 0.5
    with pytest.raises(ValueError, match="duty_cycle 0.2 is above erc70-03-433's 0.1"):
        RadioSection(band_plan="erc70-03-433", frequency_mhz=434.0, duty_cycle=0.2)
    assert RadioSection().duty_cycle == 0.1  # custom, unset: what configurations always meant
    assert RadioSection(band_plan="licensed", duty_cycle=1.0).duty_cycle == 1.0
    with pytest.raises(ValueError, match="duty_cycle must be given"):
        RadioSection(band_plan="licensed")


@pytest.mark.parametrize("radio, message", [
    (dict(band_plan="erc70-03-434-narrow", frequency_mhz=434.25, bandwidth_hz=125_000),
     "bandwidth_hz 125000 is wider than erc70-03-434-narrow's 25000 Hz channel"),
    (dict(band_plan="erc70-03-434-narrow", frequency_mhz=434.03, bandwidth_hz=20_800),
     r"frequency_mhz 434.0300 with bandwidth_hz 20800 occupies 434.0196-434.0404 MHz, outside erc70-03-434-narrow's 434.040-434.790"),
    (dict(band_plan="erc70-03-433", frequency_mhz=434.0, erp_mw=25),
     "erp_mw 25 is above erc70-03-433's 10 mW e.r.p."),
    (dict(band_plan="erc70-03-433"), "band_plan 'erc70-03-433' needs frequency_mhz"),
    (dict(band_plan="erc70-03-433-wideband", frequency_mhz=434.0, bandwidth_hz=125_000, erp_mw=1),
     "for channels wider than 250000 Hz"),
    (dict(band_plan="ism"), "unknown band plan 'ism'; known: erc70-03-433"),
])
def test_an_illegal_radio_is_refused_with_the_key_and_the_numbers(radio, message):
    text = "[radio]\n" + "\n".join(f"{k} = {v!r}".replace("'", '"') for k, v in radio.items())
    with pytest.raises(ConfigError) as e:
        parse_toml(text, PayloadConfig, "flight.toml")
    assert "flight.toml" in str(e.value) and "[radio]" in str(e.value)
    assert __import__("re").search(message, str(e.value)), str(e.value)


def test_a_wideband_lora_channel_is_legal_at_one_milliwatt():
    r = RadioSection(band_plan="erc70-03-433-wideband", frequency_mhz=433.92, bandwidth_hz=500_000, erp_mw=1.0)
    assert r.duty_cycle == 1.0


OLD_PI = """
[schedule]
telemetry_s = 30.0
[radio]
spreading_factor = 11
bandwidth_hz = 20800
coding_rate = 8
duty_cycle = 0.1
"""


def test_a_beacon_the_duty_cycle_cannot_carry_is_refused_with_the_numbers_and_what_would_fit():
    with pytest.raises(ConfigError) as e:
        parse_toml(OLD_PI, PayloadConfig, "old-pi.toml")
    text = str(e.value)
    for part in ("109-byte sentence", "21.69 s on air", "2602 s of air per hour", "budget of 360 s",
                 "schedule.telemetry_s >= 277 s", "mode 2 repeater", 'band_plan "erc70-03-434-narrow"'):
        assert part in text, (part, text)
    assert "mode 0" not in text  # the mode that does not fit is not offered


def test_the_shortest_interval_offered_really_fits():
    cfg = parse_toml(OLD_PI.replace("30.0", "277.0"), PayloadConfig)
    assert beacon_plan(cfg.radio, cfg.callsign, cfg.telemetry_format, 277.0).fits
    with pytest.raises(ConfigError):
        parse_toml(OLD_PI.replace("30.0", "276.0"), PayloadConfig)


def test_payload_run_refuses_such_a_configuration_at_start_with_exit_code_2(tmp_path):
    path = tmp_path / "old-pi.toml"
    path.write_text(OLD_PI)
    p = subprocess.run([sys.executable, "-m", "payload", "run", "--config", str(path), "--no-persona",
                        "--data", str(tmp_path / "data")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert "the position beacon alone needs 2602 s of air per hour" in p.stderr
    assert not (tmp_path / "data").exists()  # refused before anything started
