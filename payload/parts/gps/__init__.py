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

from .fix import Fix, FixState, parse_gga, parse_rmc
from .nmea import NmeaParser, NmeaSentence
from .receiver import GpsReceiver, GpsTiming
from .system_time import system_time_from_gps
from .ubx import CFG_NAV5_LEN, UbxFrame, cfg_nav5, ubx_checksum, ubx_frame

__all__ = [
    "CFG_NAV5_LEN", "Fix", "FixState", "GpsReceiver", "GpsTiming", "NmeaParser", "NmeaSentence", "UbxFrame",
    "cfg_nav5", "parse_gga", "parse_rmc", "system_time_from_gps", "ubx_checksum", "ubx_frame",
]
