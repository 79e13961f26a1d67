"""The ground keeps SSDV packets heard and rebuilds each picture from them, partial ones too,
as an image record the dashboard shows (boot 0, seq the SSDV image id)."""

from __future__ import annotations

import io
import sqlite3

from PIL import Image

from groundstation.__main__ import main as ground_main
from groundstation.link.decoder import FrameDecoder
from groundstation.store import GroundReader, Store
from stratoecho import wire
from stratoecho.wire import ssdv
from tests.fakes import AUTH


def picture(colour=(200, 40, 40), size=(64, 48)) -> bytes:
    image = Image.new("RGB", size, colour)
    for x in range(0, size[0], 8):
        for y in range(size[1]):
            image.putpixel((x, y), (255, 255, 255))
    return ssdv.prepare_jpeg(image)


def test_replay_rebuilds_a_picture_from_the_ssdv_frames_heard(tmp_path):
    packets = ssdv.encode_image(picture(), "STRAT1", 7)
    assert len(packets) > 2
    air = tmp_path / "air.hex"
    air.write_text("".join(p[1:].hex() + "\n" for p in packets))
    db = tmp_path / "g.db"
    assert ground_main(["listen", "--replay", str(air), "--db", str(db), "--quiet"]) == 0
    with GroundReader.open(db) as reader:
        (row,) = reader.records.of("image")
        jpeg = reader.pictures.image(0, 7)
    assert (row.boot, row.seq) == (0, 7) and "incomplete" not in row.text and "STRAT1" in row.text
    assert jpeg == ssdv.decode_image(packets)
    assert Image.open(io.BytesIO(jpeg)).size == (64, 48)
    with sqlite3.connect(db) as raw:
        assert raw.execute("SELECT count(*) FROM ssdv_packets").fetchone() == (len(packets),)
        assert raw.execute("SELECT count(*) FROM frames WHERE ok = 1").fetchone() == (len(packets),)


def shown(path, seq: int):
    """The image row and its JPEG as the dashboard reads them."""
    with GroundReader.open(path) as reader:
        (row,) = reader.records.of("image")
        return row, reader.pictures.image(0, seq)


def test_a_partial_picture_is_shown_and_completed_as_packets_arrive(tmp_path):
    packets = ssdv.encode_image(picture(), "STRAT1", 3)
    decoder, store = FrameDecoder(auth=AUTH), Store(tmp_path / "g.db")
    for p in packets[:-1]:
        store.add_ssdv(decoder.feed(p[1:]).frame)
    store.commit()
    row, jpeg = shown(tmp_path / "g.db", 3)
    assert "incomplete" in row.text and jpeg == ssdv.decode_image(packets[:-1])
    assert not store.add_ssdv(decoder.feed(packets[0][1:]).frame)  # heard again: nothing new
    assert store.add_ssdv(decoder.feed(packets[-1][1:]).frame)
    store.commit()
    row, jpeg = shown(tmp_path / "g.db", 3)
    assert "incomplete" not in row.text and jpeg == ssdv.decode_image(packets)
    store.close()


def test_an_image_id_used_again_after_the_wrap_replaces_the_old_picture(tmp_path):
    old = ssdv.encode_image(picture((200, 40, 40)), "STRAT1", 9)
    new = ssdv.encode_image(picture((40, 40, 200), size=(48, 32)), "STRAT1", 9)
    store = Store(tmp_path / "g.db")
    for p in old + new[:1]:
        store.add_ssdv(wire.decode_frame(p[1:], AUTH))
    store.commit()
    assert shown(tmp_path / "g.db", 9)[1] == ssdv.decode_image(new[:1])
    store.close()


def test_pictures_from_ssdv_are_not_counted_as_missing_records(tmp_path):
    """Image ids 1 and 5 heard: ids 2..4 are pictures never sent this way, not records lost."""
    from groundstation.store import GroundReader, Store
    from stratoecho import wire

    with Store(tmp_path / "g.db") as store:
        for seq in (1, 5):
            store.add(wire.Record(wire.Kind.IMAGE, 0, seq, 0, b"\xff\xd8 a picture \xff\xd9"))
        for seq in (1, 3):
            store.add(wire.Record(wire.Kind.MUSING, 2, seq, 0, "words"))
    with GroundReader.open(tmp_path / "g.db") as ground:
        assert ground.records.gaps() == {("musing", 2): [(2, 2)]}
