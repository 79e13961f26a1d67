"""Pure payload logic: prompts from readings, musings fitted to the radio, configuration errors."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from payload.config import PayloadConfig, load_config
from payload.parts.sensors import Readings
from payload.persona.prompts import describe, fit_musing, musing_messages
from stratoecho.config import ConfigError

R = Readings(datetime(2026, 6, 1, 10, 0, tzinfo=timezone.utc), 52.7, -2.7, 21_400.0, 9, -55.2, 46.0, 3810, "ascent")


def test_prompt_carries_the_readings():
    msgs = musing_messages("You are Ada.", R)
    assert msgs[0] == {"role": "system", "content": "You are Ada."}
    assert "21.4 km" in msgs[1]["content"] and "-55 °C" in msgs[1]["content"] and "rising" in describe(R)


@pytest.mark.parametrize("limit", [20, 50, 100])
def test_fit_musing_never_exceeds_the_limit(limit):
    text = "The sky goes dark blue. " * 5 + "A" * 300
    out = fit_musing(text, limit)
    assert len(out) <= limit and out


def test_fit_musing_prefers_sentence_ends_and_flattens_whitespace():
    assert fit_musing("  cold   up here.\n\nvery cold. and the wind", 25) == "cold up here. very cold."
    assert fit_musing("short", 100) == "short"


def test_fit_musing_takes_out_privacy_placeholders():
    from stratoecho.privacy import PrivacyScrubber

    scrubbed, _ = PrivacyScrubber().scrub("ring me on +44 7700 900123 or mail a@example.org")
    assert fit_musing(scrubbed, 100) == "ring me on or mail"
    assert fit_musing("I'm <PHONE_1: that's it, <EMAIL_ done", 100) == "I'm : that's it, done"


def test_config_errors_name_file_and_key(tmp_path):
    p = tmp_path / "payload.toml"
    p.write_text('callsign = "OK1"\n[schedule]\ntelemetry_s = -5\n[radio]\nudp = "nowhere"\n')
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert str(p) in msg and "schedule.telemetry_s" in msg and "radio.udp" in msg
    p.write_text('callsign = "OK1"\n[radio\n')
    with pytest.raises(ConfigError, match="line 2"):
        load_config(p)
    p.write_text('callsgn = "typo"\n')
    with pytest.raises(ConfigError, match="callsgn"):
        load_config(p)


def test_shipped_configs_validate():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "config"
    files = sorted(root.glob("payload*.toml"))
    assert files, "config/ should ship example payload configurations"
    for f in files:
        assert isinstance(load_config(f), PayloadConfig)
