"""Frame sources: where the ground station hears frames from (`listen`'s --udp, --serial,
--replay, --gateway, --gateway-udp, --horus-udp; the LoRa HAT's is groundstation/sources/lora_hat.py).
Each is registered by name in `SOURCES` (registry.py; the shipped ones in kinds.py) with its
`[source]` keys, its flags and how it opens: the listener opens the one configured.

Every source has the same tiny interface:

* iterating it yields `Received(data, origin, peer)` for each frame, or `None` when a
  poll interval (`POLL_S`) passed with nothing heard, so the caller can check its
  stop event and deadlines without a thread or a sleep; a finite source (replay)
  simply ends;
* `errors` counts what the source itself had to skip (bad hex lines...);
* `close()` releases the socket, port or file.

Opening a source fails with `SourceError`, whose message names what failed
(the address, the device, the path), and nothing else is left open.

Text framing (replay files and serial): one frame a line as a hex string, the
`air.hex` format; blank lines and lines starting with `#` are ignored; spaces
between bytes are allowed. A line that is not hex is counted as "bad hex",
logged with where it was, and skipped.

KISS framing (`KissSerialSource`, a KISS TNC on the serial port): binary frames
between FEND bytes, deframed by `stratoecho.wire.kiss.KissDecoder`; what it has to
drop (bad escapes, oversize frames) is counted in `errors` the same way.

Burst framing (`RawSerialSource`, a transparent UART LoRa module such as an Ebyte
E32/E22 in normal mode): the module writes each packet it hears to its UART as one
binary burst, so a frame is the bytes between two pauses of `gap_s`.

Sources that can transmit have `send(frame, peer)`, used for the uplink: `peer` is
where it goes, configured by the listener and never taken from a frame (anyone can send
a datagram). For UDP it is the bridge named by `listen --uplink-to`; for serial sources
it is `(device,)` and the answer goes out on the same port, framed the way that port speaks:

* hex-line bridge (`SerialSource`): the frame as one line of hex and "\n" — the
  contract such a bridge must honour: it transmits each line it is given as one packet;
* KISS TNC (`KissSerialSource`): one KISS data frame for TNC port 0;
* transparent module (`RawSerialSource`): the frame's bytes in one write, then a pause
  so the module sends it as a packet of its own.
"""

from __future__ import annotations

from . import kinds  # noqa: F401  (registers the sources that ship)
from .base import POLL_S, Position, Received, SourceError, describe_peer
from .registry import SOURCES, SourceContext, SourceKind, SourceSettings, register_source
from .replay import ReplaySource
from .serial_port import KissSerialSource, RawSerialSource, SerialSource
from .udp import UdpSource

# The LoRa gateway's (lora_gateway.py) and Horus UDP's (horus_udp.py, which needs pydantic)
# are imported from their modules when a listener asks for them.
FrameSource = UdpSource | ReplaySource | SerialSource  # KissSerialSource and RawSerialSource are SerialSources

__all__ = [
    "POLL_S", "SOURCES", "FrameSource", "KissSerialSource", "Position", "RawSerialSource", "Received", "ReplaySource",
    "SerialSource", "SourceContext", "SourceError", "SourceKind", "SourceSettings", "UdpSource", "describe_peer",
    "register_source",
]
