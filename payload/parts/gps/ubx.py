"""UBX, the u-blox binary protocol: framing, the one configuration we send (CFG-NAV5) and
its ACK/NAK.

UBX frame (u-blox M8 receiver description, "UBX frame structure")::

    +------+------+-------+----+--------+-----------+------+------+
    | 0xB5 | 0x62 | class | id | length | payload   | CK_A | CK_B |
    |  1   |  1   |   1   | 1  | 2 (LE) | length    |  1   |  1   |
    +------+------+-------+----+--------+-----------+------+------+
    checksum: 8-bit Fletcher over class, id, length and payload

UBX-CFG-NAV5 (class 0x06, id 0x24), 36-byte payload, little-endian; only the fields whose
bit is set in `mask` are applied, so we send mask = 0x0001 (dyn) and zeros elsewhere::

    offset 0  U2 mask             2  U1 dynModel       3  U1 fixMode
           4  I4 fixedAlt         8  U4 fixedAltVar   12  I1 minElev
          13  U1 drLimit         14  U2 pDop          16  U2 tDop
          18  U2 pAcc            20  U2 tAcc          22  U1 staticHoldThresh
          23  U1 dgnssTimeout    24  U1 cnoThreshNumSVs 25 U1 cnoThresh
          26  U1[2] reserved     28  U2 staticHoldMaxDist
          30  U1 utcStandard     31  U1[5] reserved
    dynModel: 0 portable (the default), 2 stationary, 3 pedestrian, 4 automotive,
              5 sea, 6 airborne <1g, 7 airborne <2g, 8 airborne <4g

In the portable model an M8 stops reporting fixes above 12 000 m; airborne <1g allows
50 000 m. A brown-out resets the module to portable, and it does not say so, so the
setting is re-sent every `reconfigure_every_s` and whenever the port is re-opened.

ACK-ACK (0x05 0x01) / ACK-NAK (0x05 0x00): 2-byte payload, the class and id acknowledged.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

UBX_SYNC = b"\xb5\x62"
UBX_MAX_PAYLOAD = 1024  # anything longer is a false sync in noise
CLASS_ACK, ID_ACK_NAK, ID_ACK_ACK = 0x05, 0x00, 0x01
CLASS_CFG, ID_CFG_NAV5 = 0x06, 0x24
CFG_NAV5_LEN = 36
NAV5_MASK_DYN = 0x0001
DYN_PORTABLE, DYN_AIRBORNE_1G = 0, 6


def ubx_checksum(body: bytes) -> bytes:
    """8-bit Fletcher checksum (CK_A, CK_B) over class, id, length and payload."""
    a = b = 0
    for byte in body:
        a = (a + byte) & 0xFF
        b = (b + a) & 0xFF
    return bytes((a, b))


def ubx_frame(cls: int, msg_id: int, payload: bytes = b"") -> bytes:
    body = struct.pack("<BBH", cls, msg_id, len(payload)) + payload
    return UBX_SYNC + body + ubx_checksum(body)


def cfg_nav5(dyn_model: int = DYN_AIRBORNE_1G) -> bytes:
    """UBX-CFG-NAV5 that sets only the dynamic platform model (mask = dyn)."""
    payload = bytearray(CFG_NAV5_LEN)
    struct.pack_into("<HB", payload, 0, NAV5_MASK_DYN, dyn_model)
    return ubx_frame(CLASS_CFG, ID_CFG_NAV5, bytes(payload))


@dataclass(frozen=True)
class UbxFrame:
    cls: int
    msg_id: int
    payload: bytes

    @property
    def ack(self) -> tuple[bool, int, int] | None:
        """(acknowledged?, class, id) for ACK-ACK / ACK-NAK, else None."""
        if self.cls == CLASS_ACK and self.msg_id in (ID_ACK_ACK, ID_ACK_NAK) and len(self.payload) == 2:
            return self.msg_id == ID_ACK_ACK, self.payload[0], self.payload[1]
        return None
