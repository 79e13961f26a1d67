"""Horus layer 2 (stratoecho/wire/horus_l2.py) against horusdemodlib's own C encoder and modem.

Byte for byte against `horus_l2_encode_tx_packet` (the cffi build horusdemodlib ships) at every
frame size the modem takes; then our v3 frames, coded by us and sent as 4FSK audio at 100 baud,
through horusdemodlib's `HorusLib` demodulator, fields equal.
"""

from __future__ import annotations

import random

import pytest

from stratoecho import wire
from stratoecho.wire.horus_l2 import coded_size, encode_l2, symbols
from stratoecho.wire.horus_v3 import encode_horus_v3
from tests.fsk_audio import render_tones

cffi = pytest.importorskip("_horus_api_cffi")
demod = pytest.importorskip("horusdemodlib.demod")
decoder = pytest.importorskip("horusdemodlib.decoder")

T = wire.Telemetry("STRATO1", 1234, "10:04:11", 52.71234, -2.71234, 31234, 9, -40.5, 180.2, 3890, 3)


def _theirs(data: bytes) -> bytes:
    cffi.lib.horus_l2_init()
    out = cffi.ffi.new("unsigned char[]", 512)
    n = cffi.lib.horus_l2_encode_tx_packet(out, cffi.ffi.from_buffer(bytearray(data)), len(data))
    return bytes(cffi.ffi.buffer(out, n))


@pytest.mark.parametrize("size", [22, 32, 48, 64, 96, 128])
def test_our_coding_is_the_library_coding(size):
    rng = random.Random(size)
    for data in (bytes(size), bytes([0xFF] * size), *(rng.randbytes(size) for _ in range(4))):
        ours = encode_l2(data)
        assert ours == _theirs(data)
        assert len(ours) == coded_size(size) == cffi.lib.horus_l2_get_num_tx_data_bytes(size)


def test_symbols_are_pairs_of_bits_high_first():
    assert symbols(b"\x1b", preamble=b"") == [0, 1, 2, 3]
    assert symbols(b"$", preamble=b"") == [0, 2, 1, 0]


@pytest.mark.parametrize("via", [None, "nohub"])
def test_horusdemodlib_modem_decodes_our_4fsk(via):
    frame = encode_horus_v3(T, via=via)
    tones = symbols(encode_l2(frame))
    audio = render_tones(tones, baud=100, spacing_hz=270, first_tone_hz=1500, sample_rate=48000,
                         lead_s=0.5, tail_s=1.0, noise=0.05, seed=1)
    heard = []
    modem = demod.HorusLib(mode=demod.Mode.BINARY, callback=heard.append)
    for k in range(0, len(audio), 4000):
        modem.add_samples(audio[k:k + 4000])
    good = [f.data for f in heard if f.crc_pass]
    assert good == [frame]
    d = decoder.decode_packet(good[0])
    assert (d["callsign"], d["sequence_number"], d["time"], d["altitude"]) == ("STRATO1", 1234, "10:04:11", 31234)
    assert (d["latitude"], d["longitude"], d["satellites"]) == (52.71234, -2.71234, 9)
    assert (d["ext_temperature"], d["battery_voltage"], d.get("via")) == (-40.5, 3.89, via)
