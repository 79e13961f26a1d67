"""The sources that ship, registered in `SOURCES` (registry.py): each its `[source]` keys, its
flags on `listen` and how it opens. The flags keep their old names; a flag is an override of its
key (docs/ground.md, "The station's configuration file")."""

from __future__ import annotations

import argparse
from typing import Literal

from pydantic import Field, model_validator

from stratoecho.cli import hostport_type, positive_number

from .registry import HostPort, ListenAddress, SourceContext, SourceKind, SourceSettings, register_source


def _udp_listen(text: str) -> tuple[str, int]:
    """PORT, :PORT or HOST:PORT to listen on; a bare port is every interface (to hear broadcasts)."""
    if text.isdigit():
        text = ":" + text
    return hostport_type(listen=True)(text)


def _given(args: argparse.Namespace, keys: dict[str, str]) -> dict:
    """{key: value} of the flags (by their dest) given on the command line: `listen` leaves the
    rest None (their defaults are the configuration's)."""
    return {key: getattr(args, dest) for dest, key in keys.items() if getattr(args, dest, None) is not None}


def _picked_by(args: argparse.Namespace, configured: str | None, name: str, pick: str, flag: str,
               own: dict[str, str], needs: str) -> dict | None:
    """The keys of source `name` its flags give: with "kind" when its own flag `pick` (a dest) was
    given; ValueError when only its other flags were, and the file names another source."""
    keys = _given(args, own)
    if getattr(args, pick, None) is not None:
        return {"kind": name, **keys}
    if keys and configured != name:
        flags = ", ".join("--" + dest.replace("_", "-") for dest in own if dest in vars(args)
                          and getattr(args, dest) is not None)
        raise ValueError(f"{flags} goes with {flag} {needs}")
    return keys or None


# --------------------------------------------------------------------------- UDP


class UdpSettings(SourceSettings):
    kind: Literal["udp"] = "udp"
    address: ListenAddress = Field(description="HOST:PORT to bind (':7373' every interface; port 0 any free one)")
    uplink_to: HostPort | None = Field(
        None, description="the LoRa bridge that transmits the uplink (one datagram a frame); without it this "
        "station only receives: the uplink never goes to whoever sent a datagram")

    def where(self) -> str:
        return f"udp {self.address[0]}:{self.address[1]}"

    def uplink_peer(self, source) -> tuple | None:
        return self.uplink_to


def _udp_flags(where, listen: argparse.ArgumentParser) -> None:
    where.add_argument("--udp", metavar="HOST:PORT", type=hostport_type(listen=True),
                       help="bind a UDP socket there; one datagram is one frame (port 0: any free port, "
                            "logged); e.g. 127.0.0.1:7355 for a bench payload, :7355 for all interfaces")


def _udp_from_flags(args, configured) -> dict | None:
    if getattr(args, "uplink_to", None) is not None and getattr(args, "udp", None) is None and configured != "udp":
        raise ValueError("--uplink-to goes with --udp (the bridge that transmits what a --udp station sends)")
    return _picked_by(args, configured, "udp", "udp", "--udp", {"udp": "address", "uplink_to": "uplink_to"},
                      "HOST:PORT")


def _open_udp(s: UdpSettings, ctx: SourceContext):
    from .udp import UdpSource

    return UdpSource(*s.address, ctx.clock, ctx.stop)


# --------------------------------------------------------------------------- serial


class SerialSettings(SourceSettings):
    kind: Literal["serial"] = "serial"
    device: str = Field(description="serial device or pyserial URL (/dev/ttyUSB0, loop://, socket://HOST:PORT)")
    framing: Literal["hex", "kiss", "raw"] = Field(
        "hex", description="hex: a LoRa UART bridge printing one frame a line as hex; kiss: a KISS TNC; raw: a "
        "transparent UART LoRa module (Ebyte E32/E22 in normal mode), frames cut at pauses of burst_gap_s")
    baud: int | None = Field(None, gt=0, description="bit/s (unset: 115200, or 9600 for raw, the Ebyte default)")
    burst_gap_s: float = Field(0.03, gt=0, description="raw: a pause this long ends a received packet")
    tx_gap_s: float = Field(1.3, gt=0, description="raw: least time between two uplink frames written to the module")

    def where(self) -> str:
        return self.device

    def uplink_peer(self, source) -> tuple | None:
        return source.peer  # the answer goes out of the same port


def _serial_flags(where, listen: argparse.ArgumentParser) -> None:
    where.add_argument("--serial", metavar="DEV",
                       help="serial device or pyserial URL (/dev/ttyUSB0, loop://, socket://HOST:PORT) "
                            "from a LoRa UART bridge printing one received frame a line as hex, and "
                            "transmitting each hex line written to it as one packet (the uplink); "
                            "or a KISS TNC (--kiss), or a transparent LoRa module (--raw)")
    framing = listen.add_mutually_exclusive_group()
    framing.add_argument("--kiss", action="store_const", const="kiss", dest="framing",
                         help="with --serial: the device is a KISS TNC sending binary KISS data frames, "
                              "not hex lines (uplink frames go to it as KISS data frames, TNC port 0)")
    framing.add_argument("--raw", action="store_const", const="raw", dest="framing",
                         help="with --serial: the device is a transparent UART LoRa module (Ebyte E32/E22 "
                              "in normal mode, M0 = M1 = low) putting each packet it hears out as one "
                              "binary burst; frames are cut at pauses of --burst-gap (uplink frames are "
                              "written to it as they are, one packet each)")
    listen.add_argument("--baud", type=int, metavar="N",
                        help="serial speed in bit/s (default 115200, or 9600 with --raw, the Ebyte "
                             "default; ignored for URLs without one)")
    listen.add_argument("--burst-gap", type=positive_number("seconds"), metavar="SECONDS",
                        help="with --raw: a pause this long on the serial line ends a received packet "
                             "(default 0.03; longer than a USB adapter's latency, shorter than a "
                             "packet's time on air)")
    listen.add_argument("--tx-gap", type=positive_number("seconds"), metavar="SECONDS",
                        help="with --raw: least time between two uplink frames written to the module, "
                             "so each leaves as its own packet (default 1.3: a 255-byte frame's time "
                             "on air at SF9/125 kHz; set it to your link's)")


def _serial_from_flags(args, configured) -> dict | None:
    framing = getattr(args, "framing", None)
    if framing is not None and getattr(args, "serial", None) is None and configured != "serial":
        what = "a KISS TNC" if framing == "kiss" else "a transparent LoRa module"
        raise ValueError(f"--{framing} goes with --serial DEV ({what} on a serial port)")
    own = {"framing": "framing", "baud": "baud", "burst_gap": "burst_gap_s", "tx_gap": "tx_gap_s"}
    return _picked_by(args, configured, "serial", "serial", "--serial", {"serial": "device", **own}, "DEV")


def _open_serial(s: SerialSettings, ctx: SourceContext):
    from .serial_port import KissSerialSource, RawSerialSource, SerialSource

    if s.framing == "raw":
        return RawSerialSource(s.device, s.baud or 9600, gap_s=s.burst_gap_s, tx_gap_s=s.tx_gap_s)
    return (KissSerialSource if s.framing == "kiss" else SerialSource)(s.device, s.baud or 115200)


# --------------------------------------------------------------------------- replay


class ReplaySettings(SourceSettings):
    kind: Literal["replay"] = "replay"
    file: str = Field(description="an air.hex file ('-' for standard input), run through once")
    ends = True

    def where(self) -> str:
        return self.file


def _replay_flags(where, listen) -> None:
    where.add_argument("--replay", metavar="FILE", help="an air.hex file ('-' for standard input), run through once")


def _open_replay(s: ReplaySettings, ctx: SourceContext):
    from .replay import ReplaySource

    return ReplaySource(s.file)


# --------------------------------------------------------------------------- a LoRa gateway, Horus


class GatewaySettings(SourceSettings):
    kind: Literal["gateway"] = "gateway"
    address: HostPort = Field(description="the PiInTheSky lora-gateway's JSON port (its ServerPort, 6004)")

    def where(self) -> str:
        return f"gateway {self.address[0]}:{self.address[1]}"


class GatewayUdpSettings(SourceSettings):
    kind: Literal["gateway_udp"] = "gateway_udp"
    address: ListenAddress = Field(description="[HOST]:PORT its raw telemetry broadcast reaches (its UDPPort)")

    def where(self) -> str:
        return f"gateway udp {self.address[0]}:{self.address[1]}"


class HorusUdpSettings(SourceSettings):
    kind: Literal["horus_udp"] = "horus_udp"
    address: ListenAddress = Field(("0.0.0.0", 55672), description="[HOST]:PORT of horus-gui's PAYLOAD_SUMMARY "
                                   "broadcasts (55672, shared with chasemapper)")

    def where(self) -> str:
        return f"horus udp {self.address[0]}:{self.address[1]}"


def _gateway_flags(where, listen) -> None:
    where.add_argument("--gateway", metavar="HOST:PORT", type=hostport_type(),
                       help="a LoRa gateway (PiInTheSky lora-gateway): connect to its JSON port "
                            "(ServerPort, 6004 in its sample gateway.txt; one client at a time) and take "
                            "each POSN line's sentence, with its signal; reconnects when it drops")


def _gateway_udp_flags(where, listen) -> None:
    where.add_argument("--gateway-udp", metavar="[HOST:]PORT", type=_udp_listen,
                       help="a LoRa gateway's raw telemetry broadcast (its UDPPort): each $$ sentence "
                            "it broadcasts; the port is shared with other listeners on this machine")


def _horus_flags(where, listen) -> None:
    where.add_argument("--horus-udp", metavar="[HOST:]PORT", nargs="?", const=("0.0.0.0", 55672), type=_udp_listen,
                       help="Horus UDP PAYLOAD_SUMMARY broadcasts from horus-gui or horusdemodlib (default "
                            "port 55672, shared with chasemapper): each becomes a position (docs/ground.md)")


def _one_flag(name: str, flag: str, key: str):
    """The from_flags of a source set by its one flag (`flag`, whose dest is the source's name)."""
    def from_flags(args, configured) -> dict | None:
        return _picked_by(args, configured, name, name, flag, {name: key}, "")
    return from_flags


def _open_gateway(s: GatewaySettings, ctx: SourceContext):
    from .lora_gateway import GatewaySource

    return GatewaySource(*s.address)


def _open_gateway_udp(s: GatewayUdpSettings, ctx: SourceContext):
    from .lora_gateway import GatewayUdpSource

    return GatewayUdpSource(*s.address)


def _open_horus(s: HorusUdpSettings, ctx: SourceContext):
    from .horus_udp import HorusUdpSource

    return HorusUdpSource(*s.address)


# --------------------------------------------------------------------------- a LoRa HAT


class LoraHatSettings(SourceSettings):
    """`chip` and the HAT's settings by the payload's `[radio]` names (frequency_mhz, lora_mode,
    spreading_factor..., the chip's own pins and switches, each checked against the chip profiles'
    kinds as the payload's are): together checked as `listen --lora` checks its flags."""

    model_config = SourceSettings.model_config | {"extra": "allow"}  # the chips' own keys, checked below
    kind: Literal["lora"] = "lora"
    chip: str = Field(description="the chip's registered name (stratoecho/lora_chips/profiles.py): sx127x, sx126x")
    frequency_mhz: float | None = Field(None, gt=0, description="the payload's radio.frequency_mhz; required")
    lora_mode: int | None = Field(None, ge=0, le=8, description="a UKHAS LoRa mode: sets the five modem keys")
    spreading_factor: int | None = Field(None, ge=7, le=12)
    bandwidth_hz: float | None = Field(None, gt=0)
    coding_rate: int | None = Field(None, ge=5, le=8, description="the denominator of 4/N")
    explicit_header: bool | None = None
    low_data_rate_optimize: bool | None = None
    crc: bool | None = None
    sync_word: int | None = Field(None, ge=0, le=0xFF)
    preamble: int | None = Field(None, ge=6, le=0xFFFF)
    spi_bus: int | None = Field(None, ge=0, le=9)
    spi_device: int | None = Field(None, ge=0, le=9, description="the chip select: 0 CE0, 1 CE1")
    reset_pin: int | str | None = None
    tx_power_dbm: int | None = None

    @model_validator(mode="wrap")
    @classmethod
    def _chip_keys(cls, data, handler):
        """Each chip's own keys checked against its profile, as the payload's [radio] checks them
        (a key that is neither the HAT's nor a chip's is an error naming it)."""
        from stratoecho.lora_chips.profiles import option_values

        if isinstance(data, dict):
            checked = option_values(data, declared=cls.model_fields)
            data = {**data, **{key: checked[key] for key in data if key in checked}}
        return handler(data)

    @model_validator(mode="after")
    def _check_hat(self) -> LoraHatSettings:
        from .lora_hat import hat_options

        try:
            hat_options(self.options())
        except ValueError as e:  # said in the flags' words: the keys are their names, `chip` is --lora
            raise ValueError(f"{e} (here the keys are those flags' names: --frequency-mhz is frequency_mhz)") from None
        return self

    def options(self) -> dict:
        """The HAT's options by name, as `hat_options` reads them ("lora": the chip)."""
        return {**self.model_dump(exclude={"kind", "chip"}), **(self.model_extra or {}), "lora": self.chip}

    def where(self) -> str:
        return f"lora {self.chip}"

    def tuned_mhz(self) -> float | None:
        return self.frequency_mhz

    def uplink_peer(self, source) -> tuple | None:
        return source.peer  # the HAT transmits the uplink itself


def _hat_flags(where, listen) -> None:
    from .lora_hat import add_lora_arguments

    add_lora_arguments(listen, where)  # --lora CHIP and the HAT's own options


def _hat_from_flags(args, configured) -> dict | None:
    from .lora_hat import hat_option_names, hat_options

    given = {name: getattr(args, name) for name in hat_option_names() if getattr(args, name, None) is not None}
    if getattr(args, "lora", None) is not None:
        return {"kind": "lora", "chip": args.lora, **given}
    if configured != "lora":
        hat_options(given)  # ValueError naming the HAT options given without --lora
    return given or None


def _open_hat(s: LoraHatSettings, ctx: SourceContext):
    from .lora_hat import LoRaHatSource, hat_options

    return LoRaHatSource(hat_options(s.options()), clock=ctx.clock)


for _kind in (
    SourceKind("udp", UdpSettings, _open_udp, _udp_flags, _udp_from_flags),
    SourceKind("serial", SerialSettings, _open_serial, _serial_flags, _serial_from_flags),
    SourceKind("replay", ReplaySettings, _open_replay, _replay_flags, _one_flag("replay", "--replay", "file")),
    SourceKind("gateway", GatewaySettings, _open_gateway, _gateway_flags, _one_flag("gateway", "--gateway", "address")),
    SourceKind("gateway_udp", GatewayUdpSettings, _open_gateway_udp, _gateway_udp_flags,
               _one_flag("gateway_udp", "--gateway-udp", "address")),
    SourceKind("horus_udp", HorusUdpSettings, _open_horus, _horus_flags,
               _one_flag("horus_udp", "--horus-udp", "address")),
    SourceKind("lora", LoraHatSettings, _open_hat, _hat_flags, _hat_from_flags),
):
    register_source(_kind)
