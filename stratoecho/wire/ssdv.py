"""SSDV: pictures as the packets every LoRa HAB gateway and the SSDV server already take.

SSDV (Philip Heron's "slow scan digital video", github.com/fsphil/ssdv) cuts a baseline
JPEG into fixed-size packets that each decode on their own: the JPEG's coefficients are
re-coded with fixed quantisation and Huffman tables, and every packet says which MCU
(16x16 pixels at 4:2:0) first starts in it, at which byte, with that MCU's DC values
absolute. A lost packet therefore costs only the MCUs it carried.

A packet (256 bytes by default; `docs/protocol.md` has the table)::

    0x55 sync | type 0x66 (with FEC) or 0x67 (without) | callsign, base 40, 4 bytes |
    image id | packet id, 2 bytes | width/16 | height/16 | flags | first-MCU offset |
    first-MCU index, 2 bytes | payload | CRC-32 of type..payload | RS(255,223) parity (0x66)

Over LoRa the sync byte is left off (255 bytes, as PITS sends and gateways expect; they
put it back before uploading). Multi-byte fields are big-endian. Only the values and the
layout come from the reference; the code is ours, and tests hold it to vectors made by
the reference tool (tests/data/ssdv/).

- `encode_image(jpeg, callsign, image_id)` -> packets; `prepare_jpeg` makes a JPEG it takes.
- `parse_packet(bytes)` -> `SsdvPacket`, FEC-corrected and CRC-checked (WireError if not).
- `decode_image(packets)` -> JPEG bytes; missing MCUs are filled as the reference fills them
  (flat blocks continuing the last DC value: grey until a first block is heard).
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from . import ssdv_rs
from .common import WireError
from .jpeg_scan import (
    AC_CHROMINANCE,
    AC_LUMINANCE,
    DC_CHROMINANCE,
    DC_LUMINANCE,
    EOB,
    ZIGZAG,
    ZRL,
    BitReader,
    BitWriter,
    HuffmanTable,
    extend,
    read_baseline,
    write_coefficient,
)

SYNC = 0x55
TYPE_FEC = 0x66  # "normal": payload + CRC + 32 Reed-Solomon parity bytes
TYPE_NOFEC = 0x67
FIRST_BYTES = frozenset([TYPE_FEC, TYPE_NOFEC])  # as a LoRa frame starts (no sync)
PACKET_BYTES = 256
LORA_FRAME_BYTES = PACKET_BYTES - 1
HEADER_BYTES = 15  # sync included
CRC_BYTES = 4
NO_MCU = 0xFFFF  # a packet in which no MCU starts
DEFAULT_QUALITY = 4  # the reference's default; 0 (coarsest) .. 7 (all quantisers 1)

# The MCU modes: the luminance's sampling (H<<4 | V) and its blocks per MCU.
MCU_SAMPLING = {0: 0x22, 1: 0x12, 2: 0x21, 3: 0x11}
MODE_OF_SAMPLING = {v: k for k, v in MCU_SAMPLING.items()}

# SSDV's fixed quantisation tables in zigzag order, scaled per quality level as
# (value * scale + 50) // 100 within 1..255. The luminance one is the JPEG standard's
# example table with odd entries rounded up to even.
_LUMA_QUANT = [
    16, 12, 12, 14, 12, 10, 16, 14, 14, 14, 18, 18, 16, 20, 24, 40, 26, 24, 22, 22, 24, 50, 36, 38, 30, 40,
    58, 52, 62, 60, 58, 52, 56, 56, 64, 72, 92, 78, 64, 68, 88, 70, 56, 56, 80, 110, 82, 88, 96, 98, 104,
    104, 104, 62, 78, 114, 122, 112, 100, 120, 92, 102, 104, 100,
]  # fmt: skip
_CHROMA_QUANT = [18, 18, 18, 22, 22, 22, 48, 26, 26, 48, 100, 66, 56, 66] + [100] * 50
_QUALITY_SCALE = (5000, 357, 172, 116, 100, 58, 28, 0)

_TABLES = {  # component -> (DC, AC); Cb and Cr share the chrominance tables
    0: (HuffmanTable(*DC_LUMINANCE), HuffmanTable(*AC_LUMINANCE)),
    1: (HuffmanTable(*DC_CHROMINANCE), HuffmanTable(*AC_CHROMINANCE)),
}
_TABLES[2] = _TABLES[1]

_CALLSIGN_DIGITS = "-0123456789---ABCDEFGHIJKLMNOPQRSTUVWXYZ"  # value -> character


def quant_tables(quality: int) -> tuple[list[int], list[int]]:
    """SSDV's (luminance, chrominance) quantisers for a quality level, zigzag order."""
    if not 0 <= quality <= 7:
        raise ValueError(f"SSDV quality is 0..7, got {quality}")
    scale = _QUALITY_SCALE[quality]
    return tuple([min(255, max(1, (v * scale + 50) // 100)) for v in table] for table in (_LUMA_QUANT, _CHROMA_QUANT))


def encode_callsign(callsign: str) -> int:
    """Up to 6 of A-Z 0-9 as a base-40 number, first character least significant."""
    if not 1 <= len(callsign) <= 6 or not all(c.isascii() and c.isalnum() for c in callsign):
        raise ValueError(f"an SSDV callsign is 1 to 6 letters and digits, got {callsign!r}")
    code = 0
    for c in reversed(callsign.upper()):
        code = code * 40 + (ord(c) - ord("0") + 1 if c.isdigit() else ord(c) - ord("A") + 14)
    return code


def callsign_form(callsign: str) -> str | None:
    """The form of a payload's callsign that SSDV can carry (1 to 6 of A-Z 0-9), or None when
    none can: its letters and digits upper-cased, and when more than six, the first ones kept
    with its trailing number (the flight's number, which tells STRATO1 from STRATO2: "STRAT1")."""
    kept = "".join(c for c in callsign.upper() if c.isascii() and c.isalnum())
    if not kept:
        return None
    if len(kept) <= 6:
        return kept
    number = len(kept) - len(kept.rstrip("0123456789"))
    number = min(number, 5)  # at least one letter of the name stays
    return kept[:6 - number] + kept[len(kept) - number:]


def decode_callsign(code: int) -> str:
    if code >= 40**6:
        return ""
    chars = []
    while code:
        code, digit = divmod(code, 40)
        chars.append(_CALLSIGN_DIGITS[digit])
    return "".join(chars)


def _payload_bytes(fec: bool, packet_size: int) -> int:
    return packet_size - HEADER_BYTES - CRC_BYTES - (ssdv_rs.PARITY_BYTES if fec else 0)


DATA_BYTES = _payload_bytes(True, PACKET_BYTES)  # of JPEG in a packet with its Reed-Solomon parity: 205


def _round_div(value: int, divisor: int) -> int:
    """value / divisor rounded half away from zero, as the reference re-quantises."""
    q = (abs(2 * value) // divisor + 1) // 2
    return q if value >= 0 else -q


def _noise(n: int) -> bytes:
    """The filler after the last MCU: the reference's byte sequence x -> 245x + 45."""
    out, x = bytearray(), 0
    for _ in range(n):
        x = (x * 245 + 45) & 0xFF
        out.append(x)
    return bytes(out)


# --------------------------------------------------------------------------- packets


@dataclass(frozen=True)
class SsdvPacket:
    fec: bool
    callsign: str
    image_id: int
    packet_id: int
    width: int
    height: int
    quality: int
    eoi: bool  # the image's last packet
    mcu_mode: int
    mcu_offset: int  # payload byte where the first new MCU starts (0xFF: none)
    mcu_id: int  # that MCU's index (NO_MCU: none)
    payload: bytes
    raw: bytes  # the whole packet, sync byte included, after correction
    corrected: int = 0  # bytes the Reed-Solomon code put right

    @property
    def mcu_count(self) -> int:
        return (self.width // 16) * (self.height // 16) * (1, 2, 2, 4)[self.mcu_mode]

    @property
    def lora_frame(self) -> bytes:
        return self.raw[1:]


def _crc_ok(packet: bytes, payload: int) -> bool:
    end = HEADER_BYTES + payload
    return zlib.crc32(packet[1:end]) == int.from_bytes(packet[end : end + CRC_BYTES], "big")


def parse_packet(data: bytes, packet_size: int = PACKET_BYTES) -> SsdvPacket:
    """Check (and if need be correct) one SSDV packet: with its sync byte or, as LoRa
    carries it, without. WireError with a stable reason when it is not a good packet."""
    if len(data) == packet_size - 1:
        data = bytes([SYNC]) + data
    elif len(data) != packet_size:
        raise WireError("bad length", f"an SSDV packet is {packet_size - 1} or {packet_size} bytes, got {len(data)}")
    packet = bytes([SYNC]) + data[1:]
    corrected, fec = 0, packet[1] == TYPE_FEC
    if packet[1] not in FIRST_BYTES or not _crc_ok(packet, _payload_bytes(fec, packet_size)):
        # Try the FEC type's parity whatever the type byte says: it may be the wrong byte.
        fixed = ssdv_rs.correct(bytes([TYPE_FEC]) + packet[2:])
        if fixed is None or not _crc_ok(bytes([SYNC]) + fixed[0], _payload_bytes(True, packet_size)):
            reason = "crc mismatch" if packet[1] in FIRST_BYTES else "not ssdv"
            raise WireError(reason, "an SSDV packet whose CRC fails and the FEC cannot repair")
        packet, corrected, fec = bytes([SYNC]) + fixed[0], fixed[1], True
    payload_bytes = _payload_bytes(fec, packet_size)
    flags = packet[11]
    info = SsdvPacket(
        fec=fec,
        callsign=decode_callsign(int.from_bytes(packet[2:6], "big")),
        image_id=packet[6],
        packet_id=int.from_bytes(packet[7:9], "big"),
        width=packet[9] * 16,
        height=packet[10] * 16,
        quality=((flags >> 3) & 7) ^ 4,
        eoi=bool(flags & 4),
        mcu_mode=flags & 3,
        mcu_offset=packet[12],
        mcu_id=int.from_bytes(packet[13:15], "big"),
        payload=packet[HEADER_BYTES : HEADER_BYTES + payload_bytes],
        raw=packet,
        corrected=corrected,
    )
    if not info.width or not info.height:
        raise WireError("bad header", "an SSDV packet of an image with no width or height")
    if info.mcu_id != NO_MCU and (info.mcu_id >= info.mcu_count or info.mcu_offset >= payload_bytes):
        raise WireError("bad header", f"MCU {info.mcu_id} at byte {info.mcu_offset} is outside the image or payload")
    return info


# --------------------------------------------------------------------------- encoding


class _Packetiser:
    """Cuts the one continuous SSDV bit stream into payloads and notes, per packet, the
    first MCU that starts in it.

    The rule, the reference's: once a packet is full, the next MCU to begin is padded to
    a byte boundary (1 bits) and becomes the mark of the packet it lands in, its DC
    values absolute. "Full" is looked at after each coefficient is written, so an MCU may
    start in a packet before its mark, and a long MCU can leave a packet with none.
    """

    def __init__(self, payload_bytes: int):
        self.size = payload_bytes
        self.bits = BitWriter()
        self.mark: tuple[int, int] | None = (0, 0)  # (MCU index, stream byte) of the next packet's mark
        self.marks: list[tuple[int, int]] = []  # (MCU index, offset) per finished packet

    def _close(self) -> None:
        start = len(self.marks) * self.size
        if self.mark is not None and self.mark[1] - start >= self.size:
            self.marks.append((NO_MCU, 0xFF))  # the mark falls in the next packet
        else:
            self.marks.append((self.mark[0], self.mark[1] - start) if self.mark else (NO_MCU, 0xFF))
            self.mark = None

    def after_step(self) -> None:
        while len(self.bits.out) >= (len(self.marks) + 1) * self.size:
            self._close()

    def mcu_boundary(self, next_mcu: int) -> bool:
        """At the start of MCU ``next_mcu``: whether it is a mark (absolute DC values)."""
        if self.mark is not None:
            return False
        self.bits.pad_to_byte()
        self.mark = (next_mcu, len(self.bits.out))
        return True

    def finish(self) -> list[tuple[bytes, int, int]]:
        """(payload, MCU index, offset) per packet; the last holds the rest, noise after it."""
        self.bits.pad_to_byte()
        self._close()  # bytes past the last packet are dropped, as the reference drops them
        out = bytes(self.bits.out)
        chunks = [out[i * self.size : (i + 1) * self.size] for i in range(len(self.marks))]
        chunks[-1] += _noise(self.size - len(chunks[-1]))
        return [(chunk, mcu, offset) for chunk, (mcu, offset) in zip(chunks, self.marks)]


def encode_image(
    jpeg: bytes,
    callsign: str,
    image_id: int,
    *,
    quality: int = DEFAULT_QUALITY,
    fec: bool = True,
    packet_size: int = PACKET_BYTES,
) -> list[bytes]:
    """A baseline colour JPEG (sides multiples of 16, chroma 1x1 per MCU) as SSDV packets,
    each ``packet_size`` bytes with its sync byte (`SsdvPacket.lora_frame`, or ``p[1:]``,
    is what goes on air). `prepare_jpeg` makes a JPEG this takes from any picture."""
    image = read_baseline(jpeg)
    if image.components != 3 or image.sampling not in MODE_OF_SAMPLING:
        raise WireError("unsupported jpeg", "SSDV takes colour JPEGs at 4:2:0, 4:2:2 or 4:4:4 (see prepare_jpeg)")
    if image.width % 16 or image.height % 16 or not 16 <= max(image.width, image.height) <= 4080:
        raise WireError("unsupported jpeg", f"SSDV needs sides in multiples of 16 to 4080, not {image.width}x{image.height}")
    if len(image.mcus) > NO_MCU:
        raise WireError("unsupported jpeg", "SSDV numbers at most 65535 MCUs")
    if not 0 <= image_id <= 255:
        raise ValueError(f"an SSDV image id is a byte, got {image_id}")
    if not HEADER_BYTES + CRC_BYTES + (ssdv_rs.PARITY_BYTES if fec else 0) + 2 <= packet_size <= PACKET_BYTES:
        raise ValueError(f"packet size {packet_size} leaves no payload or is over {PACKET_BYTES}")
    target = quant_tables(quality)
    stream = _Packetiser(_payload_bytes(fec, packet_size))
    luma_blocks = (image.sampling >> 4) * (image.sampling & 15)
    predictors = [0, 0, 0]  # the last DC written, per component
    absolute_mcu = 0
    for m, mcu in enumerate(image.mcus):
        for part, block in enumerate(mcu):
            comp = block.component
            dc_table, ac_table = _TABLES[comp]
            source, dest = image.quant[comp], target[min(comp, 1)]
            dc = _round_div(block.dc * source[0], dest[0])
            absolute = m == absolute_mcu and (part == 0 or part >= luma_blocks)
            write_coefficient(stream.bits, dc_table, 0, dc if absolute else dc - predictors[comp])
            predictors[comp] = dc
            stream.after_step()
            k, zeros = 1, 0  # next zigzag position; zeros owed by coefficients rounded away
            for run, value in block.ac:
                if (run, value) == EOB:
                    write_coefficient(stream.bits, ac_table, 0, 0)
                    k = 64
                elif (run, value) == ZRL:
                    write_coefficient(stream.bits, ac_table, 15, 0)
                    k += 16
                else:
                    k += run
                    value = _round_div(value * source[k], dest[k])
                    if value:
                        zeros += run
                        while zeros >= 16:
                            write_coefficient(stream.bits, ac_table, 15, 0)
                            zeros -= 16
                        write_coefficient(stream.bits, ac_table, zeros, value)
                        zeros = 0
                    elif k >= 63:
                        write_coefficient(stream.bits, ac_table, 0, 0)
                        zeros = 0
                    else:
                        zeros += run + 1
                    k += 1
                if k >= 64 and part == len(mcu) - 1:
                    if m + 1 == len(image.mcus):
                        return _assemble(stream.finish(), image, callsign, image_id, quality, fec, packet_size)
                    if stream.mcu_boundary(m + 1):
                        absolute_mcu = m + 1
                stream.after_step()
    raise WireError("truncated", "the JPEG scan ended early")  # read_baseline counts MCUs, so unreachable


def _assemble(chunks, image, callsign: str, image_id: int, quality: int, fec: bool, packet_size: int) -> list[bytes]:
    code = encode_callsign(callsign)
    mode = MODE_OF_SAMPLING[image.sampling]
    packets = []
    for packet_id, (payload, mcu_id, offset) in enumerate(chunks):
        eoi = packet_id == len(chunks) - 1
        head = bytearray([SYNC, TYPE_FEC if fec else TYPE_NOFEC])
        head += code.to_bytes(4, "big") + bytes([image_id]) + packet_id.to_bytes(2, "big")
        head += bytes([image.width // 16, image.height // 16, ((quality - 4) & 7) << 3 | eoi << 2 | mode, offset])
        head += mcu_id.to_bytes(2, "big")
        body = bytes(head[1:]) + payload
        packet = bytes([SYNC]) + body + zlib.crc32(body).to_bytes(CRC_BYTES, "big")
        if fec:
            packet += ssdv_rs.parity(packet[1:])
        packets.append(packet)
    return packets


def prepare_jpeg(picture, *, quality: int = DEFAULT_QUALITY, max_side: int | None = None) -> bytes:
    """A JPEG `encode_image` takes, from a PIL image or any JPEG's bytes: RGB, 4:2:0,
    baseline, sides cut to multiples of 16 (centred crop, after shrinking to ``max_side``),
    quantised with SSDV's own tables for ``quality`` so the packets add no second loss."""
    from PIL import Image  # the payload and ground have Pillow; the wire's packets do not need it

    if isinstance(picture, bytes | bytearray):
        picture = Image.open(io.BytesIO(picture))
    image = picture.convert("RGB")
    if max_side and max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    width, height = (image.width // 16) * 16, (image.height // 16) * 16
    if not width or not height:
        raise ValueError(f"a picture of {image.width}x{image.height} is under 16 pixels on a side")
    left, top = (image.width - width) // 2, (image.height - height) // 2
    image = image.crop((left, top, left + width, top + height))
    natural = [[0] * 64 for _ in range(2)]  # Pillow takes tables in natural (row) order
    for table, zigzag in zip(natural, quant_tables(quality)):
        for k, position in enumerate(ZIGZAG):
            table[position] = zigzag[k]
    out = io.BytesIO()
    image.save(out, "JPEG", qtables=natural, subsampling="4:2:0", optimize=False, progressive=False)
    return out.getvalue()


# --------------------------------------------------------------------------- decoding


class ImageDecoder:
    """The picture `first` belongs to: `feed` it that picture's packets in packet order, then
    `jpeg()` once (it fills what is missing); `pictures.PictureScan` keeps one. Mirrors the reference
    decoder's choices so its output is byte-for-byte the same: a packet after a gap is
    read from its mark; missing MCUs become flat blocks (DC difference 0, end of block)."""

    def __init__(self, first: SsdvPacket):
        self.luma_blocks = (4, 2, 2, 1)[first.mcu_mode]  # Y blocks per MCU
        self.mcu_count = first.mcu_count
        self.header = _jpeg_header(first.width, first.height, MCU_SAMPLING[first.mcu_mode], quant_tables(first.quality))
        self.out = BitWriter(stuff=True)
        self.bits = BitReader()
        self.mcu = self.part = self.k = 0  # k: 0 = the DC is next, else the next zigzag position
        self.dc = [0, 0, 0]
        self.reset_mcu = self.next_reset = 0
        self.expected = 0
        self.done = False

    def _component(self, part: int) -> int:
        return 0 if part < self.luma_blocks else part - self.luma_blocks + 1

    def feed(self, packet: SsdvPacket) -> None:
        if self.done or packet.packet_id < self.expected:
            return
        if packet.mcu_id != NO_MCU:
            self.next_reset = packet.mcu_id
        start = 0
        if packet.packet_id != self.expected:
            if packet.mcu_id == NO_MCU:
                return  # nothing here can be placed
            self._fill(packet.mcu_id)
            self.part = self.k = 0
            start, self.expected = packet.mcu_offset, packet.packet_id
        mark = packet.mcu_offset if packet.mcu_id != NO_MCU else len(packet.payload)
        try:
            if start < mark:
                self._run(packet.payload[start:mark])
            if mark < len(packet.payload) and not self.done:
                self.bits.drop_all()  # the padding before a mark
                if self.mcu != packet.mcu_id:
                    return  # out of step: the next packet is taken as after a gap
                self._run(packet.payload[mark:])
        except WireError:
            return  # bits no code matches: the same, from the next mark
        if not self.done:
            self.expected += 1

    def _run(self, data: bytes) -> None:
        self.bits.extend(data)
        bits, out = self.bits, self.out
        while not self.done:
            comp = self._component(self.part)
            dc_table, ac_table = _TABLES[comp]
            start = bits.pos
            if self.k == 0:
                if self.part == 0 and self.next_reset > self.reset_mcu:
                    self.reset_mcu = self.next_reset
                size = dc_table.decode(bits)
                if size is None or bits.available() < size:
                    bits.pos = start
                    return
                value = extend(bits.read(size), size)
                if self.mcu == self.reset_mcu and (self.part == 0 or self.part >= self.luma_blocks):
                    value, self.dc[comp] = value - self.dc[comp], value  # absolute to difference
                else:
                    self.dc[comp] += value
                write_coefficient(out, dc_table, 0, value)
                self.k = 1
            else:
                symbol = ac_table.decode(bits)
                if symbol is None or bits.available() < (symbol & 15):
                    bits.pos = start
                    return
                run, size = symbol >> 4, symbol & 15
                if symbol == 0:
                    self.k = 64
                elif symbol == 0xF0:
                    self.k += 16
                elif size == 0:
                    raise WireError("bad ssdv data", f"AC symbol 0x{symbol:02X} is not defined")
                else:
                    self.k += run + 1
                if self.k > 64:
                    raise WireError("bad ssdv data", "an AC run passes the end of its block")
                write_coefficient(out, ac_table, run, extend(bits.read(size), size))
            if self.k == 64:
                self.k, self.part = 0, self.part + 1
                if self.part == self.luma_blocks + 2:
                    self.part, self.mcu = 0, self.mcu + 1
                    if self.mcu >= self.mcu_count:
                        self.done = True

    def _flat_block(self, part: int, dc_too: bool = True) -> None:
        dc_table, ac_table = _TABLES[self._component(part)]
        if dc_too:
            write_coefficient(self.out, dc_table, 0, 0)
        write_coefficient(self.out, ac_table, 0, 0)

    def _fill(self, next_mcu: int) -> None:
        """Close the MCU under way and write flat MCUs up to ``next_mcu``."""
        parts = self.luma_blocks + 2
        if self.part or self.k:
            if self.k:
                self._flat_block(self.part, dc_too=False)
                self.part += 1
            for part in range(self.part, parts):
                self._flat_block(part)
            self.mcu += 1
        while self.mcu < next_mcu:
            for part in range(parts):
                self._flat_block(part)
            self.mcu += 1
        self.bits.drop_all()

    def jpeg(self) -> bytes:
        if self.mcu < self.mcu_count and not self.done:
            self._fill(self.mcu_count)
        self.out.pad_to_byte()
        return self.header + bytes(self.out.out) + b"\xff\xd9"


def _segment(marker: int, body: bytes) -> bytes:
    return bytes([0xFF, marker]) + (len(body) + 2).to_bytes(2, "big") + body


def _jpeg_header(width: int, height: int, sampling: int, quant: tuple[list[int], list[int]]) -> bytes:
    """The headers the reference writes: JFIF, SSDV's tables, the frame, then the scan's."""
    head = b"\xff\xd8" + _segment(0xE0, b"JFIF\x00\x01\x01\x01\x00\x48\x00\x48\x00\x00")
    head += _segment(0xDB, bytes([0]) + bytes(quant[0])) + _segment(0xDB, bytes([1]) + bytes(quant[1]))
    frame = bytes([8]) + height.to_bytes(2, "big") + width.to_bytes(2, "big") + bytes([3])
    head += _segment(0xC0, frame + bytes([1, sampling, 0, 2, 0x11, 1, 3, 0x11, 1]))
    head += _segment(0xC4, b"\x00" + _TABLES[0][0].definition()) + _segment(0xC4, b"\x10" + _TABLES[0][1].definition())
    head += _segment(0xC4, b"\x01" + _TABLES[1][0].definition()) + _segment(0xC4, b"\x11" + _TABLES[1][1].definition())
    return head + _segment(0xDA, bytes([3, 1, 0x00, 2, 0x11, 3, 0x11, 0, 63, 0]))


def decode_image(packets: Iterable[SsdvPacket | bytes], packet_size: int = PACKET_BYTES) -> bytes:
    """The JPEG that the packets of one image make: those of the first good packet's
    callsign and image id, in packet order, duplicates and bad packets skipped.
    WireError ("no packets") if none is good."""
    good = []
    for p in packets:
        if not isinstance(p, SsdvPacket):
            try:
                p = parse_packet(p, packet_size)
            except WireError:
                continue
        good.append(p)
    if not good:
        raise WireError("no packets", "no good SSDV packet to make an image of")
    first = good[0]
    ours = {p.packet_id: p for p in reversed(good) if (p.callsign, p.image_id) == (first.callsign, first.image_id)}
    ordered = [ours[i] for i in sorted(ours)]
    decoder = ImageDecoder(ordered[0])
    for p in ordered:
        decoder.feed(p)
    return decoder.jpeg()
