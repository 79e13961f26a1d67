"""SSDV: our encoder and decoder against the reference tool's own output, and round trips
of the bench camera's sky through packets lost and bytes corrupted."""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sim.world.camera import SimCameraBackend
from stratoecho import wire
from stratoecho.wire import jpeg_scan, ssdv, ssdv_rs
from tests.fakes import AUTH

VECTORS = Path(__file__).parent / "data" / "ssdv_vectors"  # README.md there says how they were made


def _packets(name: str) -> list[bytes]:
    data = (VECTORS / name).read_bytes()
    return [data[i : i + 256] for i in range(0, len(data), 256)]


def _pixels(jpeg: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"), dtype=float)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / max(((a - b) ** 2).mean(), 1e-9)))


@pytest.fixture(scope="module")
def sky() -> Image.Image:
    cam = SimCameraBackend(lambda: 21000.0, seed=5)
    return Image.fromarray(cam.render(21000.0)).resize((320, 240), Image.Resampling.LANCZOS)


@pytest.fixture(scope="module")
def sky_jpeg(sky) -> bytes:
    out = io.BytesIO()
    sky.save(out, "JPEG", quality=85)  # what the camera code writes: Pillow, 4:2:0, baseline
    return out.getvalue()


# --------------------------------------------------------------------------- the reference's vectors


@pytest.mark.parametrize(
    "jpeg, packets, kwargs",
    [
        ("sky_160x128.jpg", "sky_q4.ssdv", dict(callsign="STRATO", image_id=7, quality=4)),
        ("sky_160x128.jpg", "sky_q6_nofec.ssdv", dict(callsign="STRATO", image_id=8, quality=6, fec=False)),
        ("sky_160x128_444.jpg", "sky444_q5.ssdv", dict(callsign="M0ABC1", image_id=200, quality=5)),
        ("sky_160x128_opt.jpg", "skyopt_q3.ssdv", dict(callsign="STRATO", image_id=9, quality=3)),
    ],
)
def test_encoder_matches_the_reference_tool_byte_for_byte(jpeg, packets, kwargs):
    ours = ssdv.encode_image((VECTORS / jpeg).read_bytes(), **kwargs)
    theirs = _packets(packets)
    assert len(ours) == len(theirs)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert a == b, f"packet {i} differs from byte {next(j for j in range(256) if a[j] != b[j])}"


@pytest.mark.parametrize(
    "packets, dropped, decoded",
    [
        ("sky_q4.ssdv", (), "sky_q4_decoded.jpg"),
        ("sky_q6_nofec.ssdv", (), "sky_q6_decoded.jpg"),
        ("sky444_q5.ssdv", (), "sky444_q5_decoded.jpg"),
        ("sky_q4.ssdv", (2, 3), "sky_q4_lost_2_3_decoded.jpg"),
        ("sky_q4.ssdv", (0, 5), "sky_q4_lost_0_5_decoded.jpg"),
    ],
)
def test_decoder_matches_the_reference_tool_byte_for_byte(packets, dropped, decoded):
    heard = [p for i, p in enumerate(_packets(packets)) if i not in dropped]
    assert ssdv.decode_image(heard) == (VECTORS / decoded).read_bytes()


def test_reference_packets_parse_to_their_header_fields():
    packets = [ssdv.parse_packet(p) for p in _packets("sky_q4.ssdv")]
    assert [p.packet_id for p in packets] == list(range(9))
    assert {(p.callsign, p.image_id, p.width, p.height, p.quality, p.mcu_mode, p.fec) for p in packets} == {
        ("STRATO", 7, 160, 128, 4, 0, True)
    }
    assert [p.eoi for p in packets] == [False] * 8 + [True]
    assert (packets[0].mcu_id, packets[0].mcu_offset) == (0, 0)
    assert all(0 < p.mcu_id < 80 for p in packets[1:]) and packets[0].mcu_count == 80
    assert len(packets[0].payload) == 205 and len(ssdv.parse_packet(_packets("sky_q6_nofec.ssdv")[0]).payload) == 237
    assert ssdv.encode_callsign("STRATO") == int.from_bytes(_packets("sky_q4.ssdv")[0][2:6], "big")


def test_reed_solomon_parity_is_the_reference_codes():
    for packet in _packets("sky_q4.ssdv") + _packets("sky444_q5.ssdv"):
        assert ssdv_rs.parity(packet[1:224]) == packet[224:]


def test_quantisation_tables_are_the_ones_the_reference_writes():
    for quality, decoded in ((4, "sky_q4_decoded.jpg"), (6, "sky_q6_decoded.jpg"), (5, "sky444_q5_decoded.jpg")):
        data = (VECTORS / decoded).read_bytes()
        luma, chroma = ssdv.quant_tables(quality)
        assert b"\xff\xdb\x00\x43\x00" + bytes(luma) in data and b"\xff\xdb\x00\x43\x01" + bytes(chroma) in data


def test_huffman_tables_are_the_standards_as_libjpeg_writes_them():
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (20, 90, 200)).save(out, "JPEG", quality=50, optimize=False)
    for class_id, (counts, symbols) in (
        (0x00, jpeg_scan.DC_LUMINANCE), (0x10, jpeg_scan.AC_LUMINANCE),
        (0x01, jpeg_scan.DC_CHROMINANCE), (0x11, jpeg_scan.AC_CHROMINANCE),
    ):  # fmt: skip
        assert bytes([class_id]) + counts + symbols in out.getvalue()


# --------------------------------------------------------------------------- round trips


def test_camera_frames_round_trip_close_to_the_original(sky, sky_jpeg):
    original = np.asarray(sky, dtype=float)
    for quality, floor in ((4, 32.0), (6, 35.0)):
        packets = ssdv.encode_image(sky_jpeg, "STRATO", 3, quality=quality)
        assert all(len(p) == 256 and p[:2] == b"\x55\x66" for p in packets)
        picture = ssdv.decode_image(packets)
        assert Image.open(io.BytesIO(picture)).size == (320, 240)
        assert _psnr(_pixels(picture), original) > floor


def test_prepared_pictures_cross_without_a_second_loss(sky):
    odd = sky.crop((0, 0, 250, 170))  # no side a multiple of 16
    prepared = ssdv.prepare_jpeg(odd, quality=5)
    assert Image.open(io.BytesIO(prepared)).size == (240, 160)
    packets = ssdv.encode_image(prepared, "STRATO", 4, quality=5)
    assert np.array_equal(_pixels(ssdv.decode_image(packets)), _pixels(prepared))  # same coefficients, same tables


def test_lost_packets_leave_the_rest_of_the_picture(sky_jpeg):
    packets = [ssdv.parse_packet(p) for p in ssdv.encode_image(sky_jpeg, "STRATO", 5)]
    whole = _pixels(ssdv.decode_image(packets))
    lost = {3, 4, len(packets) // 2}
    heard = [p for p in packets if p.packet_id not in lost]
    random.Random(1).shuffle(heard)  # the order heard does not matter, nor repeats
    partial = _pixels(ssdv.decode_image(heard + heard[:3]))
    assert partial.shape == whole.shape
    # MCUs (16x16 at 4:2:0, raster order) before the first loss are untouched...
    first_lost_mcu = packets[3].mcu_id
    rows = (first_lost_mcu // (320 // 16)) * 16
    assert np.array_equal(partial[:rows], whole[:rows])
    # ...and after the last loss's gap the picture resumes where its packets say.
    last_gap_end = next(p.mcu_id for p in packets[len(packets) // 2 + 1 :] if p.mcu_id != ssdv.NO_MCU)
    resume = -(-last_gap_end // 20) * 16 + 16
    assert _psnr(partial[resume:], whole[resume:]) > 30
    assert _psnr(partial, whole) < 60  # something was lost


def test_fec_corrects_corrupted_bytes_on_air(sky_jpeg):
    packets = ssdv.encode_image(sky_jpeg, "STRATO", 6)
    rng = random.Random(2)
    heard = []
    for packet in packets:
        frame = bytearray(packet[1:])  # as LoRa carries it: no sync byte
        assert len(frame) == ssdv.LORA_FRAME_BYTES and frame[0] in wire.GATEWAY_FIRST_BYTES
        for pos in rng.sample(range(255), rng.randint(1, 16)):
            frame[pos] ^= rng.randint(1, 255)
        parsed = ssdv.parse_packet(bytes(frame))
        assert parsed.raw == packet and parsed.corrected >= 1
        heard.append(bytes(frame))
    assert ssdv.decode_image(heard) == ssdv.decode_image(packets)


def test_too_many_errors_or_no_fec_fail_the_crc(sky_jpeg):
    fec_packet = ssdv.encode_image(sky_jpeg, "STRATO", 6)[0]
    bad = bytearray(fec_packet)
    for pos in random.Random(3).sample(range(1, 256), 24):
        bad[pos] ^= 0x5A
    with pytest.raises(wire.WireError) as err:
        ssdv.parse_packet(bytes(bad))
    assert err.value.reason in ("crc mismatch", "not ssdv")
    nofec = bytearray(ssdv.encode_image(sky_jpeg, "STRATO", 6, fec=False)[0])
    nofec[40] ^= 1
    with pytest.raises(wire.WireError, match="CRC") as err:
        ssdv.parse_packet(bytes(nofec))
    assert err.value.reason == "crc mismatch"


def test_decode_frame_dispatches_ssdv_as_a_gateway_does(sky_jpeg):
    frame = ssdv.encode_image(sky_jpeg, "STRATO", 9)[1][1:]
    packet = wire.decode_frame(frame, AUTH)
    assert isinstance(packet, ssdv.SsdvPacket) and packet.packet_id == 1 and packet.lora_frame == frame
    with pytest.raises(wire.WireError) as err:
        wire.decode_frame(frame[:100], AUTH)
    assert err.value.reason == "bad length"


# --------------------------------------------------------------------------- what is refused


def test_pictures_ssdv_cannot_carry_are_refused_clearly(sky):
    def jpeg(image, **kw) -> bytes:
        out = io.BytesIO()
        image.save(out, "JPEG", **kw)
        return out.getvalue()

    cases = [
        (jpeg(sky, progressive=True), "not baseline"),
        (jpeg(sky.crop((0, 0, 250, 160))), "unsupported jpeg"),  # width not a multiple of 16
        (jpeg(sky.convert("L")), "unsupported jpeg"),  # greyscale: prepare_jpeg makes it colour
        (b"not a jpeg", "not a jpeg"),
        (jpeg(sky)[:600], "truncated"),
    ]
    for data, reason in cases:
        with pytest.raises(wire.WireError) as err:
            ssdv.encode_image(data, "STRATO", 1)
        assert err.value.reason == reason
    with pytest.raises(ValueError, match="callsign"):
        ssdv.encode_image(jpeg(sky), "TOO-LONG", 1)
    assert ssdv.decode_callsign(ssdv.encode_callsign("m0abc")) == "M0ABC"


def test_the_ground_decoder_takes_an_ssdv_packet_as_a_frame_heard_and_goes_on(sky_jpeg):
    """A picture packet on the channel (a payload sending SSDV beside its records) is a frame the
    ground keeps, never a crash of the listener."""
    from groundstation.link.decoder import FrameDecoder

    packets = ssdv.encode_image(ssdv.prepare_jpeg(sky_jpeg), "STRATO", 3)
    decoder = FrameDecoder(auth=AUTH)
    got = decoder.feed(packets[0][1:])  # as it comes over LoRa: without the sync byte
    assert got.ok and got.record is None and isinstance(got.frame, wire.SsdvPacket) and decoder.ssdv_packets == 1
    t = wire.Telemetry("STRATO1", 1, "10:00:00", 52.0, -2.0, 1000, 9, 10.0, 900.0, 3900, 1)
    assert decoder.feed(wire.encode_sentence(t)).record == t
