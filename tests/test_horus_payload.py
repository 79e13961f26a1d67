"""The payload sends its position as Horus Binary ([radio.horus]): v3 by default, v2 by choice.

The real transmitter keys a queued position sentence on the SX127x driver over the
register-level simulator, then the same position as Horus 4FSK on its own channel; the chip's
frequency steps, rendered as a receiver's audio, are decoded by horusdemodlib's modem and
decoder, fields equal. Configuration refuses what cannot fly.
"""

from __future__ import annotations

import threading

import pytest
from pydantic import ValidationError

from payload.config import RadioSection
from payload.link.frames import LinkParts
from payload.link.transmitter import Transmitter
from payload.parts.radios import ReopeningRadio
from payload.store import Store
from sim.bench.run.link import VirtualClock
from sim.chips.sx127x import Sx127xChip
from stratoecho import wire
from stratoecho.lora_chips.sx127x import Sx127xRadio
from stratoecho.lora_chips.sx127x_fsk import tone_hz
from stratoecho.wire import Kind
from stratoecho.wire.horus_l2 import air_s
from tests.fakes import EVERY_10_S
from tests.fsk_audio import render_steps

demod = pytest.importorskip("horusdemodlib.demod")
decoder = pytest.importorskip("horusdemodlib.decoder")

HORUS_MHZ = 434.714
T = wire.Telemetry("STRATO1", 12, "09:08:07", 52.1234, -1.98765, 27654, 8, -45.2, 30.1, 3710, 6)


def _radio_cfg(**horus) -> RadioSection:
    return RadioSection(kind="sx127x", frequency_mhz=434.225, lora_mode=2, mtu=64, fec_prior_loss=0.0,
                        horus={"frequency_mhz": HORUS_MHZ, **horus})


def _fly_one_sentence(tmp_path, cfg: RadioSection, t: wire.Telemetry = T):
    clock = VirtualClock()
    chip = Sx127xChip(now=clock.elapsed_s)
    radio = ReopeningRadio(lambda: None, clock,
                           opened=Sx127xRadio(chip.spi(), cfg.lora_settings(), clock=clock))
    store = Store(tmp_path / "q.db")
    boot = store.counters.start_boot()
    store.queue.enqueue(Kind.TELEMETRY, boot, lambda seq: wire.encode_sentence(t))
    tx = Transmitter(LinkParts(store, radio, clock, threading.Event()), cfg, EVERY_10_S)
    assert tx.send_one()
    return tx, chip


def _heard(steps) -> list[bytes]:
    audio = render_steps(steps, dial_hz=tone_hz(HORUS_MHZ, 0) - 1200, noise=0.05, seed=2)
    heard = []
    modem = demod.HorusLib(mode=demod.Mode.BINARY, callback=heard.append)
    for k in range(0, len(audio), 4000):
        modem.add_samples(audio[k:k + 4000])
    return [f.data for f in heard if f.crc_pass]


def test_the_sentence_then_its_horus_v3_packet(tmp_path):
    tx, chip = _fly_one_sentence(tmp_path, _radio_cfg())
    (sentence, _), = chip.sent
    assert sentence.startswith(b"$$STRATO1,12,09:08:07")
    (steps,) = chip.fsk_sent
    (frame,) = _heard(steps)
    d = decoder.decode_packet(frame)
    assert d["modulation"] == "Horus Binary v3"
    assert (d["callsign"], d["sequence_number"], d["time"], d["latitude"], d["longitude"], d["altitude"]) == (
        "STRATO1", 12, "09:08:07", 52.1234, -1.98765, 27654)
    assert (d["satellites"], d["ext_temperature"], d["ext_pressure"], d["battery_voltage"], d["count_0"]) == (
        8, -45.2, 30.1, 3.71, 6)
    assert tx.stats.horus_frames == 1
    assert tx.stats.airtime_s == pytest.approx(tx.airtime.seconds(sentence) + air_s(32), abs=0.05)
    assert chip.lora and chip.settings().frequency_mhz == pytest.approx(434.225, abs=1e-4)  # home again


def test_v2_is_still_there_by_choice(tmp_path):
    _, chip = _fly_one_sentence(tmp_path, _radio_cfg(format="v2", payload_id=256))
    (frame,) = _heard(chip.fsk_sent[0])
    d = decoder.decode_packet(frame)
    assert d["modulation"] == "Horus Binary v2" and d["payload_id"] == "4FSKTEST-V2"  # id 256 by its name
    assert (d["sequence_number"], d["time"], d["altitude"]) == (12, "09:08:07", 27654)


def test_every_nth_sentence_only(tmp_path):
    _, chip = _fly_one_sentence(tmp_path, _radio_cfg(every=5))  # sentence 12 of 5s: no Horus
    assert len(chip.sent) == 1 and chip.fsk_sent == []


@pytest.mark.parametrize("horus, kind, message", [
    ({"frequency_mhz": 434.2255}, "sx127x", "overlaps the radio's own channel"),
    ({"frequency_mhz": HORUS_MHZ, "format": "v2"}, "sx127x", "needs the payload_id"),
    ({"frequency_mhz": HORUS_MHZ}, "udp", "cannot key 4FSK"),
])
def test_what_cannot_fly_is_refused(horus, kind, message):
    extra = {"frequency_mhz": 434.225, "lora_mode": 2} if kind == "sx127x" else {}
    with pytest.raises(ValidationError, match=message):
        RadioSection(kind=kind, horus=horus, **extra)


def test_v3_is_the_default():
    assert _radio_cfg().horus.format == "v3"


def test_the_air_plan_counts_the_horus_packet_with_the_sentence():
    from pathlib import Path

    from payload.config import load_config
    from payload.policy.airplan import air_plan

    cfg = load_config(Path(__file__).resolve().parent.parent / "config" / "payload.pi.toml")

    def with_horus(period_s: float):
        radio = type(cfg.radio).model_validate({**cfg.radio.model_dump(), "horus": {"frequency_mhz": HORUS_MHZ}})
        return cfg.model_copy(update={"radio": radio,
                                      "schedule": cfg.schedule.model_copy(update={"telemetry_s": period_s})})

    plain, horus = air_plan(cfg), air_plan(with_horus(60.0))
    # STRATO1's longest v3 packet (a boot counter of 4 octets) is 48 bytes: 94 coded + 8 preamble, 4 bits a byte
    assert horus.sentence_s - plain.sentence_s == pytest.approx(air_s(48)) == pytest.approx(4.08)
    position = {r.kind: r for r in horus.rows}["position"]
    assert position.air_s_per_hour == pytest.approx(60 * horus.sentence_s)
    # The Pi's mode 0 at one sentence a minute has no room left for it; at 75 s the plan closes.
    assert [p.setting for p in horus.problems] == ["persona.sentences"]
    assert air_plan(with_horus(75.0)).problems == []
