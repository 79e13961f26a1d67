"""Pictures as SSDV packets from the payload ([devices.camera] ssdv): each packet one frame on
air as it is, in the images' place in the queue; the frames heard decode back to the picture."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from pydantic import ValidationError

from payload.assembly import build_onboard
from payload.clock import Clock
from payload.config import PayloadConfig
from payload.onboard import Onboard
from payload.parts.camera import Camera
from payload.producers import Fitted
from payload.uplink.handler import record_kind
from sim.world.camera import SimCameraBackend
from sim.world.flight import SimSensors
from stratoecho import wire
from stratoecho.wire import Kind, ssdv
from tests.fakes import AUTH, RecordingRadio


def ssdv_config(**camera) -> PayloadConfig:
    return PayloadConfig.model_validate({"devices": {"camera": {"ssdv": True, **camera}}, "callsign": "STRAT1"})


def daemon(tmp_path, cfg: PayloadConfig, sim: SimCameraBackend) -> Onboard:
    clock = Clock(speedup=1e6)
    cam = Camera(sim.factory, still_dir=tmp_path / "stills", thumb_max_bytes=6000, timeout_s=5)
    return build_onboard(cfg, SimSensors(clock), RecordingRadio(), clock, None, tmp_path / "data",
                        fitted=Fitted(camera=cam))


def drain(d: Onboard) -> list[bytes]:
    """Every queued frame on the radio; the frames sent."""
    for _ in range(1000):
        if not d.parts.store.queue.depth():
            break
        if not d.parts.transmitter.send_one() and d.parts.transmitter.deferred_s:
            d.clock.wait(d.parts.transmitter.deferred_s, d.daemon.stop)  # bulk waits for its share of the hour
    assert not d.parts.store.queue.depth()
    return d.parts.radio.frames


def test_pictures_go_down_as_ssdv_frames_that_decode_back_to_the_picture(tmp_path):
    sim = SimCameraBackend(lambda: 25_000.0, size=(320, 240))
    d = daemon(tmp_path, ssdv_config(ssdv_quality=3), sim)
    assert d.daemon.run_once("camera") and d.daemon.run_once("camera")
    assert not d.parts.store.queue.queued(limit=5, kinds=(Kind.IMAGE,))  # SSDV instead of the image record
    frames = drain(d)
    packets = [wire.decode_frame(f, AUTH) for f in frames if f[0] in ssdv.FIRST_BYTES]
    assert all(isinstance(p, wire.SsdvPacket) for p in packets)
    assert all(len(f) == ssdv.LORA_FRAME_BYTES for f in frames if f[0] in ssdv.FIRST_BYTES)
    assert not [f for f in frames if f[0] == wire.MAGIC]  # nothing went as record fragments
    by_image: dict[int, list] = {}
    for p in packets:
        assert p.callsign == "STRAT1"
        by_image.setdefault(p.image_id, []).append(p)
    assert sorted(by_image) == [0, 1]
    for group in by_image.values():
        assert [p.packet_id for p in group] == list(range(len(group)))
        assert group[-1].eoi and group[0].quality == 3
        picture = Image.open(io.BytesIO(ssdv.decode_image(group)))
        assert picture.size == (160, 112)  # the thumbnail's 160x120, cut to multiples of 16
    assert d.parts.pictures.counts.ssdv_packets_queued == len(packets)
    d.parts.flight.fitted.camera.close()


def test_image_ids_go_on_across_restarts_and_wrap_at_256(tmp_path):
    sim = SimCameraBackend(lambda: 25_000.0, size=(64, 48))
    d = daemon(tmp_path, ssdv_config(), sim)
    d.parts.store.state.set("ssdv:next_image_id", "255")
    assert d.daemon.run_once("camera") and d.daemon.run_once("camera")
    ids = sorted({wire.decode_frame(q.payload, AUTH).image_id for q in d.parts.store.queue.queued(limit=100, kinds=(Kind.SSDV,))})
    assert ids == [0, 255]
    d.parts.store.close()
    d.parts.flight.fitted.camera.close()
    again = daemon(tmp_path, ssdv_config(), sim)
    assert again.daemon.run_once("camera")
    ids = {wire.decode_frame(q.payload, AUTH).image_id for q in again.parts.store.queue.queued(limit=100, kinds=(Kind.SSDV,))
           if q.boot == again.parts.flight.boot}
    assert ids == {1}
    again.parts.flight.fitted.camera.close()


def test_one_still_in_send_every_goes_down_and_the_count_survives_a_restart(tmp_path):
    sim = SimCameraBackend(lambda: 25_000.0, size=(64, 48))
    d = daemon(tmp_path, ssdv_config(send_every=3), sim)
    assert all(d.daemon.run_once("camera") for _ in range(4))  # stills 0-3: 0 and 3 go down
    d.parts.store.close()
    d.parts.flight.fitted.camera.close()
    again = daemon(tmp_path, ssdv_config(send_every=3), sim)
    assert again.daemon.run_once("camera") and again.daemon.run_once("camera")  # stills 4 and 5: neither; 6 would
    ids = {wire.decode_frame(q.payload, AUTH).image_id for q in again.parts.store.queue.queued(limit=100, kinds=(Kind.SSDV,))}
    assert ids == {0, 1} and again.parts.pictures.counts.images_queued == 0
    assert len(list((tmp_path / "stills").iterdir())) == 6  # every still is on the card
    again.parts.flight.fitted.camera.close()


def test_the_ssdv_callsign_is_six_letters_and_digits_at_most():
    # Unset, it is a form of the payload's callsign: the name's first letters and its number.
    cfg = PayloadConfig.model_validate({"devices": {"camera": {"ssdv": True}}})
    assert cfg.devices.camera.ssdv_callsign == "STRAT1"  # STRATO1 is 7
    for callsign, form in (("NEAR1", "NEAR1"), ("far1", "FAR1"), ("M0ABC-11", "M0AB11"), ("STRATO12", "STRA12"),
                           ("BALLOON", "BALLOO"), ("VK3/ZZZ-123456", "V23456")):
        cfg = PayloadConfig.model_validate({"callsign": callsign, "devices": {"camera": {"ssdv": True}}})
        assert cfg.devices.camera.ssdv_callsign == form, callsign
        assert ssdv.decode_callsign(ssdv.encode_callsign(form)) == form
    with pytest.raises(ValidationError, match="ssdv_callsign"):
        PayloadConfig.model_validate({"callsign": "/-_", "devices": {"camera": {"ssdv": True}}})
    with pytest.raises(ValidationError, match="SSDV callsign"):
        PayloadConfig.model_validate({"devices": {"camera": {"ssdv": True, "ssdv_callsign": "STRATO1"}}})
    cfg = PayloadConfig.model_validate({"devices": {"camera": {"ssdv": True, "ssdv_callsign": "so1"}}})
    assert cfg.devices.camera.ssdv_callsign == "SO1"
    assert ssdv_config().devices.camera.ssdv_callsign == "STRAT1"  # derived from a callsign that fits
    with pytest.raises(ValidationError, match="mtu"):
        PayloadConfig.model_validate({"callsign": "S1", "radio": {"mtu": 200}, "devices": {"camera": {"ssdv": True}}})


def test_ssdv_is_never_a_record_on_the_wire():
    with pytest.raises(ValueError):
        wire.Record(Kind.SSDV, 1, 1, 0, b"x")
    with pytest.raises(ValueError):
        wire.fragment_body(Kind.SSDV, 1, 1, b"\0" * 10, auth=AUTH)
    assert record_kind(int(Kind.SSDV)) is None  # no repair asked by kind: SSDV carries its own FEC
