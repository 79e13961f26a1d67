"""The position again as Horus Binary 4FSK, on the channel `[radio.horus]` gives it.

After every `every`-th position sentence the transmitter hands the sentence here; its position
is packed as Horus Binary v3 (the default: the callsign on the air, no id needed) or v2 (with
the payload id Project Horus gave out), coded by the Horus layer 2 and keyed by the SX127x as
4FSK at 100 baud (`radio.send_tones`), which then goes back to its LoRa channel. horus-gui and
horusdemodlib decode it from any SSB receiver; docs/protocol.md has the frame and its time on air.
"""

from __future__ import annotations

import structlog

from stratoecho import wire
from stratoecho.wire.horus_l2 import encode_l2, symbols

from ..policy.duty import horus_packet, worst_horus_s

log = structlog.get_logger(__name__)


class HorusBeacon:
    """`cfg`: the [radio.horus] section (frequency_mhz, format, payload_id, every)."""

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.sent = 0

    def due(self, seq: int) -> bool:
        return seq % self.cfg.every == 0

    def packet(self, t: wire.Telemetry) -> bytes:
        return horus_packet(t, self.cfg)

    def air_s(self, callsign: str) -> float:
        """Seconds on air of one Horus packet of this callsign, at its longest."""
        return worst_horus_s(callsign, self.cfg)

    def key(self, radio, sentence: bytes) -> float | None:
        """Key the position `sentence` carries as Horus 4FSK; the seconds keyed, or None if the
        sentence cannot be read back (never expected: our own) or is unusable as a position."""
        try:
            t = wire.decode_position(sentence)
            frame = self.packet(t)
        except wire.WireError as e:
            log.error("horus_not_keyed", error=str(e))
            return None
        seconds = radio.send_tones(symbols(encode_l2(frame)), self.cfg.frequency_mhz)
        self.sent += 1
        log.info("horus_keyed", format=self.cfg.format, bytes=len(frame), seconds=round(seconds, 2), seq=t.seq)
        return seconds
