"""The radio the configuration names (`radio.kind`), opened on the parts the hardware gives:
its SPI bus and pin factory (payload/parts/hardware.py) and the payload's clock.

One entry per kind in `RADIOS`, `config.RadioSection.OTHER_KINDS` lists the same names; a LoRa
chip on SPI is any registered chip (`stratoecho.lora_chips.profiles`), opened from its profile.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from stratoecho.config import parse_hostport
from stratoecho.lora_chips.chip import SpiDevice
from stratoecho.lora_chips.profiles import chip_profile, is_chip
from stratoecho.lora_chips.spi import open_chip

from .radio import KissRadio, LoRaUartRadio, Radio, RadioError, RadioUnavailable, TonesRadio, UartModulePins, UdpRadio

log = structlog.get_logger(__name__)


def _udp(cfg, clock, spi_opener, pin_factory) -> UdpRadio:
    return UdpRadio(*parse_hostport(cfg.udp), clock=clock)


def _spi_chip(cfg, clock, spi_opener, pin_factory) -> Radio:
    """The chip `cfg.kind` names, with the options its profile declares from the section's keys."""
    options = {option.name: getattr(cfg, option.name) for option in chip_profile(cfg.kind).options}
    return open_chip(cfg.kind, cfg.spi_bus, cfg.spi_device, cfg.lora_settings(), spi_opener=spi_opener, clock=clock,
                     reset_pin=cfg.reset_pin, pin_factory=pin_factory, tx_power_dbm=cfg.tx_power_dbm, **options)


def _kiss(cfg, clock, spi_opener, pin_factory) -> KissRadio:
    return KissRadio(cfg.serial_port, cfg.baud)


def _lora_uart(cfg, clock, spi_opener, pin_factory) -> LoRaUartRadio:
    return LoRaUartRadio(cfg.serial_port, cfg.baud, UartModulePins(cfg.m0_pin, cfg.m1_pin, cfg.aux_pin),
                         packet_bytes=cfg.packet_bytes, aux_timeout_s=cfg.aux_timeout_s, rx_gap_s=cfg.rx_gap_s)


# The radios that are not a chip on the SPI bus (those are the registered chips); each opener's
# return type names its class (tests/test_radio_port.py holds each to the whole `Radio` port).
RADIOS: dict[str, Callable[..., Radio]] = {
    "udp": _udp,
    "kiss": _kiss,
    "lora_uart": _lora_uart,
}


def make_radio(cfg, clock=None, spi_opener: Callable[[int, int], SpiDevice] | None = None,
               pin_factory=None) -> Radio:
    """The radio `cfg` (a `RadioSection`) names, opened; `RadioError` if it cannot be. `clock`
    (the daemon's) times its waits; `spi_opener(bus, device)` and `pin_factory` are the
    hardware's (None: the Pi's own, spidev and gpiozero's default)."""
    open_radio = _spi_chip if is_chip(cfg.kind) else RADIOS[cfg.kind]
    return open_radio(cfg, clock, spi_opener, pin_factory)


REOPEN_S = 60.0  # how often a radio that is down is tried again (flight seconds)


class ReopeningRadio:
    """A radio that may be down: in flight a module that does not answer (a cold SPI part, a
    loose connector) must not stop the payload, which would restart and in the end reboot
    and log nothing. `open_radio()` is tried now and again every `reopen_s`; while there is
    no radio `send` raises RadioUnavailable (the link keeps the frame queued and waits),
    `receive` hears nothing. A radio that fails while sending is closed and tried again the
    same way. `clock` is the daemon's (`elapsed_s`, `wait`, `event`). `on_change(up, error)` is
    told each time it goes down or comes back. `opened`:
    a radio already open (the first try was made by the caller)."""

    receives: bool  # as the radio it opens says (given: it may not be open yet)

    def __init__(self, open_radio: Callable[[], Radio], clock, *, opened: Radio | None = None, receives: bool = True,
                 reopen_s: float = REOPEN_S, on_change: Callable[[bool, str], None] | None = None):
        self._open, self.clock, self.receives, self.reopen_s = open_radio, clock, receives, reopen_s
        self._on_change = on_change or (lambda up, error: None)
        self._radio: Radio | None = None
        self._next_try = 0.0
        self.error = ""
        self._closed = False
        self._closing = clock.event()  # ends a listen window that waits on a radio that is down
        if opened is not None:
            self._radio = opened
        else:
            self._try_open(first=True)

    @property
    def up(self) -> bool:
        return self._radio is not None

    def _try_open(self, first: bool = False) -> None:
        try:
            self._radio = self._open()
        except RadioError as e:
            self.error = str(e)
            self._next_try = self.clock.elapsed_s() + self.reopen_s
            if first:
                log.error("radio_unavailable", error=self.error, retry_in_s=self.reopen_s)
            else:
                log.debug("radio_still_unavailable", error=self.error)
            return
        if not first:
            log.warning("radio_back", after=self.error)
            self._on_change(True, self.error)

    def _down(self, error: str) -> None:
        if self._closed:  # the daemon is stopping: the radio was closed under a send, not lost
            return
        radio, self._radio = self._radio, None
        self.error = error
        self._next_try = self.clock.elapsed_s() + self.reopen_s
        try:
            radio.close()
        except Exception as e:  # a module that failed may fail to close too; it is replaced anyway
            log.debug("radio_close_failed", error=str(e))
        log.error("radio_failed", error=error, retry_in_s=self.reopen_s)
        self._on_change(False, error)

    def ready(self) -> None:
        """Nothing when there is a radio to send with (tried again if it is time); else
        RadioUnavailable, with the seconds until the next try."""
        if self._closed:
            raise RadioUnavailable("closed", self.reopen_s)
        if self._radio is None:
            wait = self._next_try - self.clock.elapsed_s()
            if wait > 0:
                raise RadioUnavailable(self.error, wait)
            self._try_open()
            if self._radio is None:
                raise RadioUnavailable(self.error, self.reopen_s)

    def send(self, frame: bytes, settings=None) -> None:
        self.ready()
        radio = self._radio
        try:
            radio.send(frame) if settings is None else radio.send(frame, settings)
        except RadioError as e:
            self._down(str(e))
            raise RadioUnavailable(str(e), self.reopen_s) from None

    def send_tones(self, tones: list[int], base_mhz: float) -> float:
        """4FSK from a radio that can key it (an SX127x: `send_tones`); the seconds keyed."""
        self.ready()
        radio = self._radio
        if not isinstance(radio, TonesRadio):
            raise RadioError(f"{type(radio).__name__} cannot key 4FSK")
        try:
            return radio.send_tones(tones, base_mhz)
        except RadioError as e:
            self._down(str(e))
            raise RadioUnavailable(str(e), self.reopen_s) from None

    def receive(self, timeout_s: float) -> list[bytes]:
        return self._listen(lambda radio: radio.receive(timeout_s), timeout_s)

    def hear(self, timeout_s: float) -> list[bytes]:
        """What the radio hears within `timeout_s` left listening between our own frames (its
        `hear`: a LoRa chip stays in RX continuous); nothing while it is down, as `receive`."""
        return self._listen(lambda radio: radio.hear(timeout_s), timeout_s)

    def _listen(self, listen: Callable[[Radio], list[bytes]], timeout_s: float) -> list[bytes]:
        radio = self._radio
        if radio is not None and self.receives:
            try:
                return listen(radio)
            except RadioError as e:
                self._down(str(e))
        # Nothing can be heard; wait out the window as a radio would, or the link's listen
        # loop would spin for the rest of it.
        self.clock.wait(timeout_s, self._closing)
        return []

    def close(self) -> None:
        self._closed = True
        self._closing.set()
        radio, self._radio = self._radio, None
        if radio is not None:
            radio.close()
