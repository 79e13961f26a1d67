"""Just enough baseline JPEG for SSDV: read a scan's quantised coefficients, write one back.

SSDV does not carry a JPEG, it carries the JPEG's entropy-coded DCT coefficients,
re-coded with fixed tables. So the encoder must undo a JPEG's Huffman coding (never
its DCT: pixels are not touched), and the ground decoder must write a JPEG around the
coefficients it receives. This module does both halves for the one kind of file the
payload makes: baseline (SOF0), 8-bit, one interleaved scan of Y Cb Cr (or Y alone).

A block is kept as its DC value (absolute, quantised) and its AC run-length symbols
exactly as the file codes them, ``(run, value)``, with ``(0, 0)`` the end-of-block and
``(15, 0)`` the sixteen-zero run: SSDV's re-quantisation walks those symbols.

The tables below are the typical Huffman tables of the JPEG standard (ITU T.81
Annex K.3), which SSDV fixes for every image; they are also what libjpeg writes when
not asked to optimise, and a test holds them to Pillow's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .common import WireError

# ITU T.81 Annex K.3: (code counts for lengths 1..16, symbols in code order)
DC_LUMINANCE = (bytes.fromhex("00010501010101010100000000000000"), bytes(range(12)))
DC_CHROMINANCE = (bytes.fromhex("00030101010101010101010000000000"), bytes(range(12)))
AC_LUMINANCE = (
    bytes.fromhex("0002010303020403050504040000017d"),
    bytes.fromhex(
        "01020300041105122131410613516107227114328191a1082342b1c11552d1f0243362728209"
        "0a161718191a25262728292a3435363738393a434445464748494a535455565758595a636465"
        "666768696a737475767778797a838485868788898a92939495969798999aa2a3a4a5a6a7a8a9"
        "aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9ea"
        "f1f2f3f4f5f6f7f8f9fa"
    ),
)
AC_CHROMINANCE = (
    bytes.fromhex("00020102040403040705040400010277"),
    bytes.fromhex(
        "000102031104052131061241510761711322328108144291a1b1c109233352f0156272d10a16"
        "2434e125f11718191a262728292a35363738393a434445464748494a535455565758595a6364"
        "65666768696a737475767778797a82838485868788898a92939495969798999aa2a3a4a5a6a7"
        "a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae2e3e4e5e6e7e8e9"
        "eaf2f3f4f5f6f7f8f9fa"
    ),
)

# Position k of the zigzag scan is row ZIGZAG[k] // 8, column ZIGZAG[k] % 8.
ZIGZAG = sorted(range(64), key=lambda i: (i // 8 + i % 8, (i // 8) if (i // 8 + i % 8) % 2 else (i % 8)))

EOB = (0, 0)
ZRL = (15, 0)


class HuffmanTable:
    """A canonical Huffman code from its (counts, symbols) definition: both directions."""

    def __init__(self, counts: bytes, symbols: bytes):
        if len(counts) != 16 or sum(counts) != len(symbols):
            raise WireError("bad huffman table", "a Huffman table needs 16 counts that add up to its symbols")
        self.counts, self.symbols = bytes(counts), bytes(symbols)
        self.codes: dict[int, tuple[int, int]] = {}  # symbol -> (code, length)
        self._first: list[tuple[int, int, int]] = []  # per length: (first code, how many, index of first symbol)
        code = index = 0
        for length, count in enumerate(counts, start=1):
            self._first.append((code, count, index))
            for symbol in symbols[index : index + count]:
                self.codes[symbol] = (code, length)
                code += 1
            index += count
            code <<= 1

    def definition(self) -> bytes:
        return self.counts + self.symbols

    def decode(self, reader: BitReader) -> int | None:
        """The next symbol, or None when the reader holds too few bits to tell yet."""
        available = reader.available()
        window = reader.peek(16)
        for length, (first, count, index) in enumerate(self._first, start=1):
            if length > available:
                return None
            offset = (window >> (16 - length)) - first
            if 0 <= offset < count:
                reader.skip(length)
                return self.symbols[index + offset]
        raise WireError("bad huffman code", "bits that no code of the Huffman table starts with")


class BitReader:
    """Bits of a byte string, most significant first; reads past the end see zeros."""

    def __init__(self, data: bytes = b""):
        self.data = bytearray(data)
        self.pos = 0

    def extend(self, data: bytes) -> None:
        self.data += data

    def drop_all(self) -> None:
        self.data.clear()
        self.pos = 0

    def available(self) -> int:
        return len(self.data) * 8 - self.pos

    def peek(self, n: int) -> int:
        start = self.pos >> 3
        chunk = int.from_bytes(self.data[start : start + 4].ljust(4, b"\0"), "big")
        return (chunk >> (32 - (self.pos & 7) - n)) & ((1 << n) - 1)

    def skip(self, n: int) -> None:
        self.pos += n

    def read(self, n: int) -> int:
        value = self.peek(n) if n else 0
        self.pos += n
        return value


class BitWriter:
    """Bits to bytes, most significant first; with ``stuff`` every 0xFF byte is followed
    by 0x00 as a JPEG scan requires (SSDV payloads are not stuffed)."""

    def __init__(self, stuff: bool = False):
        self.out = bytearray()
        self.stuff = stuff
        self._bits = 0
        self._count = 0

    def write(self, value: int, length: int) -> None:
        self._bits = (self._bits << length) | (value & ((1 << length) - 1))
        self._count += length
        while self._count >= 8:
            self._count -= 8
            byte = (self._bits >> self._count) & 0xFF
            self.out.append(byte)
            if self.stuff and byte == 0xFF:
                self.out.append(0)
        self._bits &= (1 << self._count) - 1

    def pad_to_byte(self) -> None:
        """Ones up to the next byte boundary, as JPEG pads before a marker."""
        if self._count:
            self.write(0xFF, 8 - self._count)


def magnitude_bits(value: int) -> tuple[int, int]:
    """JPEG's (size category, extra bits) for a coefficient: negatives in ones' complement."""
    size = abs(value).bit_length()
    return size, (value if value >= 0 else value + (1 << size) - 1)


def extend(bits: int, size: int) -> int:
    """The inverse of `magnitude_bits`."""
    return bits if size == 0 or bits >> (size - 1) else bits - (1 << size) + 1


def write_symbol(writer: BitWriter, table: HuffmanTable, symbol: int, value: int = 0, size: int = 0) -> None:
    try:
        code, length = table.codes[symbol]
    except KeyError:
        raise WireError("bad huffman code", f"symbol 0x{symbol:02X} has no code in the table") from None
    writer.write(code, length)
    if size:
        writer.write(magnitude_bits(value)[1], size)


def write_coefficient(writer: BitWriter, table: HuffmanTable, run: int, value: int) -> None:
    """One (run, value) symbol: a DC difference is run 0 in the DC table."""
    size, _ = magnitude_bits(value)
    if size > 15:
        raise WireError("bad coefficient", f"coefficient {value} is beyond baseline JPEG")
    write_symbol(writer, table, (run << 4) | size, value, size)


# --------------------------------------------------------------------------- reading a JPEG


@dataclass
class Block:
    component: int  # 0 Y, 1 Cb, 2 Cr (position in the frame header)
    dc: int  # absolute quantised DC
    ac: list[tuple[int, int]]  # the file's AC symbols: (run, value), EOB and ZRL included


@dataclass
class BaselineJpeg:
    width: int
    height: int
    sampling: int  # the luminance's H<<4 | V (chroma is always 1x1 here)
    components: int  # 1 or 3
    quant: list[list[int]]  # per component, zigzag order
    mcus: list[list[Block]] = field(default_factory=list)


def _segments(jpeg: bytes):
    """(marker, payload, offset after it) for each marker segment up to the first SOS."""
    if jpeg[:2] != b"\xff\xd8":
        raise WireError("not a jpeg", "the data does not start with a JPEG SOI marker")
    pos = 2
    while pos + 4 <= len(jpeg):
        if jpeg[pos] != 0xFF:
            raise WireError("bad jpeg", f"expected a marker at byte {pos}")
        marker = jpeg[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = int.from_bytes(jpeg[pos + 2 : pos + 4], "big")
        body = jpeg[pos + 4 : pos + 2 + length]
        if len(body) != length - 2:
            raise WireError("truncated", "a JPEG marker segment runs past the end")
        pos += 2 + length
        yield marker, body, pos
        if marker == 0xDA:
            return
    raise WireError("truncated", "the JPEG ends before its scan")


def read_baseline(jpeg: bytes) -> BaselineJpeg:
    """Parse a baseline JPEG and Huffman-decode its scan into blocks (WireError if it is not one)."""
    qtables: dict[int, list[int]] = {}
    htables: dict[tuple[int, int], HuffmanTable] = {}
    frame = None
    restart_interval = scan_start = 0
    for marker, body, after in _segments(jpeg):
        if marker in (0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            raise WireError("not baseline", f"JPEG frame type SOF{marker - 0xC0} is not baseline")
        if marker == 0xDB:
            while body:
                if body[0] >> 4:
                    raise WireError("not baseline", "16-bit quantisation tables are not baseline")
                qtables[body[0] & 15] = list(body[1:65])
                body = body[65:]
        elif marker == 0xC4:
            while body:
                counts = body[1:17]
                n = sum(counts)
                htables[(body[0] >> 4, body[0] & 15)] = HuffmanTable(counts, body[17 : 17 + n])
                body = body[17 + n :]
        elif marker == 0xDD:
            restart_interval = int.from_bytes(body[:2], "big")
        elif marker == 0xC0:
            frame = body
        elif marker == 0xDA:
            scan_start = after
            break
    if frame is None:
        raise WireError("not baseline", "no baseline (SOF0) frame header")
    if frame[0] != 8:
        raise WireError("not baseline", "only 8-bit samples are baseline")
    height, width, ncomp = int.from_bytes(frame[1:3], "big"), int.from_bytes(frame[3:5], "big"), frame[5]
    comps = [frame[6 + 3 * i : 9 + 3 * i] for i in range(ncomp)]
    if ncomp not in (1, 3) or body[0] != ncomp:
        raise WireError("unsupported jpeg", "one interleaved scan of 1 or 3 components is needed")
    if any(c[1] != 0x11 for c in comps[1:]):
        raise WireError("unsupported jpeg", "the chroma must not be subsampled beyond the luminance's MCU")
    sampling = comps[0][1] if ncomp == 3 else 0x11
    try:
        quant = [qtables[c[2]] for c in comps]
        selectors = {body[1 + 2 * i]: body[2 + 2 * i] for i in range(ncomp)}
        tables = [(htables[(0, selectors[c[0]] >> 4)], htables[(1, selectors[c[0]] & 15)]) for c in comps]
    except KeyError:
        raise WireError("bad jpeg", "the scan names a table the file does not define") from None
    image = BaselineJpeg(width, height, sampling, ncomp, quant)
    h, v = sampling >> 4, sampling & 15
    mcu_count = -(-width // (8 * h)) * -(-height // (8 * v))
    order = [0] * (h * v) + list(range(1, ncomp))  # the blocks of one MCU, by component
    for segment in _restart_segments(jpeg[scan_start:]):
        reader = BitReader(segment)
        predictors = [0] * ncomp
        for _ in range(restart_interval or mcu_count):
            if len(image.mcus) == mcu_count:
                break
            mcu = []
            for comp in order:
                block = _read_block(reader, *tables[comp], comp)
                predictors[comp] += block.dc
                block.dc = predictors[comp]
                mcu.append(block)
            image.mcus.append(mcu)
    if len(image.mcus) != mcu_count:
        raise WireError("truncated", f"the scan holds {len(image.mcus)} of {mcu_count} MCUs")
    return image


def _restart_segments(scan: bytes) -> list[bytes]:
    """The entropy-coded data cut at restart markers, byte stuffing removed, up to EOI."""
    segments, current, pos = [], bytearray(), 0
    while pos < len(scan):
        byte = scan[pos]
        if byte != 0xFF:
            current.append(byte)
            pos += 1
            continue
        nxt = scan[pos + 1] if pos + 1 < len(scan) else 0xD9
        if nxt == 0x00:
            current.append(0xFF)
        elif 0xD0 <= nxt <= 0xD7:
            segments.append(bytes(current))
            current = bytearray()
        elif nxt != 0xFF:  # EOI or any other marker ends the scan
            break
        pos += 2 if nxt != 0xFF else 1
    segments.append(bytes(current))
    return segments


def _read_block(reader: BitReader, dc_table: HuffmanTable, ac_table: HuffmanTable, component: int) -> Block:
    def symbol(table: HuffmanTable) -> int:
        s = table.decode(reader)
        if s is None:
            raise WireError("truncated", "the JPEG scan ends inside a block")
        return s

    size = symbol(dc_table)
    dc = extend(reader.read(size), size)
    ac: list[tuple[int, int]] = []
    k = 1
    while k < 64:
        s = symbol(ac_table)
        run, size = s >> 4, s & 15
        if size == 0 and run not in (0, 15):
            raise WireError("bad huffman code", f"AC symbol 0x{s:02X} is not defined")
        value = extend(reader.read(size), size)
        ac.append((run, value))
        if (run, size) == EOB:
            break
        k += run + 1
    if k > 64:
        raise WireError("bad jpeg", "an AC run passes the end of its block")
    return Block(component, dc, ac)
