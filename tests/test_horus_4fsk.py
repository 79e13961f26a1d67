"""Horus v3 keyed as 4FSK by the payload's own SX127x driver, heard by horusdemodlib's modem.

The driver (stratoecho/lora_chips/sx127x_fsk.py) steps RegFrf on the register-level simulator
(sim/chips/sx127x.py), which keeps the frequency steps it was written; the bench renders them as
an SSB receiver's audio at 48 kHz (tests/fsk_audio.py), and `horusdemodlib.demod.HorusLib`
(its cffi modem) decodes the frame, fields equal.
"""

from __future__ import annotations

import random
import threading

import pytest

from sim.bench.run.link import VirtualClock
from sim.chips.sx127x import Sx127xChip
from stratoecho import wire
from stratoecho.lora import ukhas_mode
from stratoecho.lora_chips.sx127x import Sx127xRadio
from stratoecho.lora_chips.sx127x_fsk import key_tones, tone_hz
from stratoecho.wire.horus_l2 import encode_l2, symbols
from stratoecho.wire.horus_v3 import encode_horus_v3
from tests.fsk_audio import render_steps

demod = pytest.importorskip("horusdemodlib.demod")
decoder = pytest.importorskip("horusdemodlib.decoder")

T = wire.Telemetry("STRATO1", 77, "12:34:56", 48.12345, 11.54321, 23456, 10, -33.1, 41.2, 3650, 2)
HORUS_MHZ = 434.714  # an example Horus channel for the test; the air plan names the flight's


class LateClock(VirtualClock):
    """Waits that run up to 2 ms late, as a Pi's sleeps do."""

    def __init__(self):
        super().__init__()
        self._rng = random.Random(5)

    def wait(self, flight_seconds: float, stop: threading.Event) -> bool:
        return super().wait(max(flight_seconds, 0.0) + self._rng.uniform(0, 0.002), stop)


def _keyed(frame: bytes):
    clock = LateClock()
    chip = Sx127xChip(now=clock.elapsed_s)
    radio = Sx127xRadio(chip.spi(), ukhas_mode(2).settings(434.225), clock=clock)
    tones = symbols(encode_l2(frame))
    seconds = key_tones(radio, tones, base_mhz=HORUS_MHZ)
    return radio, chip, tones, seconds


@pytest.mark.parametrize("via", [None, "sondehub"])
def test_the_driver_keys_v3_that_horusdemodlib_decodes(via):
    frame = encode_horus_v3(T, via=via)
    radio, chip, tones, seconds = _keyed(frame)
    (steps,) = chip.fsk_sent
    assert seconds == pytest.approx(len(tones) / 100, abs=0.003)  # no drift from late waits
    assert {round(hz) for hz, _ in steps} <= {round(tone_hz(HORUS_MHZ, k)) for k in range(4)}
    audio = render_steps(steps, dial_hz=tone_hz(HORUS_MHZ, 0) - 1500, noise=0.05, seed=3)
    heard = []
    modem = demod.HorusLib(mode=demod.Mode.BINARY, callback=heard.append)
    for k in range(0, len(audio), 4000):
        modem.add_samples(audio[k:k + 4000])
    assert [f.data for f in heard if f.crc_pass] == [frame]
    d = decoder.decode_packet(frame)
    assert (d["callsign"], d["sequence_number"], d["time"], d["latitude"], d["longitude"]) == (
        "STRATO1", 77, "12:34:56", 48.12345, 11.54321)
    assert (d["altitude"], d["satellites"], d["ext_temperature"], d["battery_voltage"], d.get("via")) == (
        23456, 10, -33.1, 3.65, via)
    radio.close()


def test_the_chip_is_back_on_its_lora_channel_after_a_burst():
    radio, chip, _, _ = _keyed(encode_horus_v3(T))
    assert chip.lora and chip.mode == 0x01  # LoRa, standby
    assert chip.settings().frequency_mhz == pytest.approx(434.225, abs=1e-4)
    assert chip.regs[0x04] == chip.regs[0x05] == 0  # no deviation: DIO2 moves nothing
    radio.send(b"$$after")
    assert chip.sent[-1][0].startswith(b"$$after")
    radio.close()
