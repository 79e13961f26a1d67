"""The GPS: a u-blox (M8 family) receiver on a UART, read with pyserial.

Pure logic first, I/O last:

* `NmeaParser` (`nmea`) — bytes in (any chunking), `NmeaSentence` and `UbxFrame` records out.
  It resynchronises on `$` (NMEA) and `0xB5 0x62` (UBX); bad checksums, overlong or
  truncated lines and line noise are dropped and counted in `errors`, never raised.
* `parse_gga` / `parse_rmc` and `FixState` (`fix`), which folds the latest GGA (position,
  altitude, fix quality, satellites) and RMC (date, validity, speed) into one `Fix`.
* UBX framing (`ubx`): `ubx_frame` (Fletcher-8 checksum), `cfg_nav5` (dynamic model), ACK/NAK;
  the frame layouts are drawn there.
* `GpsReceiver` (`receiver`) — the I/O edge: opens a port or pyserial URL, puts the module in the
  Airborne <1g model, reads fixes, and survives silence, garbage and a module that
  browned out back into its default (portable) model.
* `system_time_from_gps` (`system_time`) — sets the system clock from a fix it trusts.
"""

from __future__ import annotations

from .fix import Fix, FixState, Gga, Rmc, parse_gga, parse_rmc
from .nmea import NMEA_MAX_LINE, NmeaParser, NmeaSentence
from .receiver import STATUSES, GpsReading, GpsReceiver, GpsTiming
from .system_time import EARLIEST_TRUSTED, ClockResult, system_time_from_gps
from .ubx import (
    CFG_NAV5_LEN,
    CLASS_ACK,
    CLASS_CFG,
    DYN_AIRBORNE_1G,
    DYN_PORTABLE,
    ID_ACK_ACK,
    ID_ACK_NAK,
    ID_CFG_NAV5,
    NAV5_MASK_DYN,
    UBX_MAX_PAYLOAD,
    UBX_SYNC,
    UbxFrame,
    cfg_nav5,
    ubx_checksum,
    ubx_frame,
)

__all__ = [
    "CFG_NAV5_LEN", "CLASS_ACK", "CLASS_CFG", "DYN_AIRBORNE_1G", "DYN_PORTABLE", "EARLIEST_TRUSTED",
    "ID_ACK_ACK", "ID_ACK_NAK", "ID_CFG_NAV5", "NAV5_MASK_DYN", "NMEA_MAX_LINE", "STATUSES",
    "UBX_MAX_PAYLOAD", "UBX_SYNC",
    "ClockResult", "Fix", "FixState", "Gga", "GpsReading", "GpsReceiver", "GpsTiming", "NmeaParser",
    "NmeaSentence", "Rmc", "UbxFrame", "cfg_nav5", "parse_gga", "parse_rmc",
    "system_time_from_gps", "ubx_checksum", "ubx_frame",
]
