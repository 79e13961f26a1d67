"""The listener put together: every part `listen` runs, built from its options in the order
each needs the last (the checks of the options, the keys, the database, the source, the
decoder, the repair link, the station network's publisher, the exporters and the API proxy,
and the hooks that join them to the listen loop), then run until told to stop and closed.

With `--follow` the decoder is one per flight (groundstation/link/flights.py), each followed flight
with its database beside `--db` (ground.db -> ground.CALLSIGN.db); the primary flight keeps
`--db`, the repair link, the uplink and the API proxy.

`build_listener` builds them, or raises `StartError` with the message and exit status the
command prints (2: options that do not go together; 1: a key, database, port or file that
cannot be used), having closed what it had opened. `Listener.run` runs the loop
(groundstation/link/listen.py), closes every part and prints the summary; it returns the exit status.
`python -m groundstation listen` (`cmd_listen`) is build, run, report; so is the bench's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from stratoecho import wire
from stratoecho.cli import stop_on_signals
from stratoecho.systemd import SystemdNotifier
from stratoecho.wire import Telemetry
from stratoecho.wire.uplink import MAX_COUNTER, KeyFileError, payload_hash

from .db import Store, StoreError
from .display import format_summary
from .frame_quota import frame_quota_from_args
from .link.decoder import FrameDecoder
from .link.flights import Flight, Flights, flight_db_path
from .link.keys import auth_from_key_args, followed_from_key_args, relayer_names_from_key_args, relayers_from_key_args
from .link.listen import Hooks, Limits, RepairLink, run_listen
from .link.uplink import CommandSigner, SignerStateError
from .predict import FeedLanding, chase_from_args
from .sources import (
    FrameSource,
    KissSerialSource,
    RawSerialSource,
    ReplaySource,
    SerialSource,
    SourceError,
    UdpSource,
)

if TYPE_CHECKING:
    from stratoecho.wire.downlink import DownlinkAuth

    from .api_proxy import ApiProxy
    from .exports import SsdvUploader
    from .network import StationPublisher

log = structlog.get_logger(__name__)
REPLAY_DRAIN_S = 30.0  # seconds a --replay with --mqtt waits at its end for the broker to take what it queued


class StartError(Exception):
    """A listener that cannot start: the message for standard error, and the exit status
    (2: options that do not go together; 1: a key, database, port or file that cannot be used)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


# --------------------------------------------------------------------------- the options


def check_options(args: argparse.Namespace) -> tuple[object | None, tuple[float, float, float] | None]:
    """The LoRa HAT's settings (None without --lora) and where this station is (None when not
    given), once the options are known to go together; StartError (status 2) if they do not."""
    from .network import station_position
    from .sources.lora_hat import hat_options

    try:
        hat = hat_options(args)  # None without --lora
    except ValueError as e:
        raise StartError(str(e), 2) from e
    if args.kiss and not args.serial:
        raise StartError("--kiss goes with --serial DEV (a KISS TNC on a serial port)", 2)
    try:
        here = station_position(args)  # where this station is: kept, and shared with --mqtt
    except ValueError as e:
        raise StartError(str(e), 2) from e
    if args.udp_feed_landing and not args.udp_feed:
        raise StartError("--udp-feed-landing goes with --udp-feed HOST:PORT (the chase-car map's port)", 2)
    if args.raw and not args.serial:
        raise StartError("--raw goes with --serial DEV (a transparent LoRa module on a serial port)", 2)
    if args.uplink_to and not args.udp:
        raise StartError("--uplink-to goes with --udp (the bridge that transmits what a --udp station sends)", 2)
    if args.uplink_skip_past is not None and not (args.uplink_key and args.callsign):
        raise StartError("--uplink-skip-past needs --flight-key and --callsign (whose counter moves)", 2)
    try:
        frame_quota_from_args(args)  # --source-quota-mb, --quota-total-mb
    except ValueError as e:
        raise StartError(str(e), 2) from e
    return hat, here


def check_keys(args: argparse.Namespace) -> DownlinkAuth | None:
    """The downlink's key (None without one), and the uplink's counter state checked (moved on
    with --uplink-skip-past): a bad key file or counter is a start-up error, not a surprise at
    the first window. StartError (status 1) naming what will not do."""
    try:
        downlink = auth_from_key_args(args)
    except (KeyFileError, ValueError) as e:
        raise StartError(str(e), 1) from e
    if not (args.uplink_key and args.callsign):
        return downlink
    try:
        signer = CommandSigner.for_db(args.uplink_key, args.callsign, args.db, tag_len=args.tag_len,
                                      mtu=args.uplink_mtu)
        if args.uplink_skip_past is not None:
            if not 0 <= args.uplink_skip_past < MAX_COUNTER:
                raise ValueError(f"--uplink-skip-past {args.uplink_skip_past} is outside 0..{MAX_COUNTER - 1}")
            log.info("uplink counter", callsign=args.callsign,
                     next_counter=signer.skip_to(args.uplink_skip_past + 1))
    except (KeyFileError, SignerStateError, ValueError) as e:
        raise StartError(str(e), 1) from e
    return downlink


def open_proxy(args: argparse.Namespace) -> ApiProxy | None:
    """The API proxy `--api-proxy` asks for (None without it), once the broker's password file and
    certificate are known to be readable, before anything opens. StartError: 2 for options, 1 for
    its configuration file."""
    from .api_proxy import ProxyConfigError, proxy_from_args
    from .network import auth_from_args

    try:
        auth_from_args(args, "mqtt-")
    except ValueError as e:
        raise StartError(str(e), 2) from e
    try:
        proxy = proxy_from_args(args)
    except ProxyConfigError as e:
        raise StartError(str(e), 1) from e
    if proxy is not None and not args.uplink_key:
        raise StartError("--api-proxy answers over the uplink: it needs --flight-key", 2)
    return proxy


# --------------------------------------------------------------------------- the parts


def open_source(args: argparse.Namespace, clock=None, stop=None, hat=None) -> FrameSource:
    """The source the options name; SourceError if it cannot be opened."""
    if hat is not None:
        from .sources.lora_hat import LoRaHatSource

        return LoRaHatSource(hat, clock=clock)
    if args.udp:
        return UdpSource(*args.udp, clock, stop)
    if args.serial:
        if args.raw:
            return RawSerialSource(args.serial, args.baud or 9600, gap_s=args.burst_gap, tx_gap_s=args.tx_gap)
        return (KissSerialSource if args.kiss else SerialSource)(args.serial, args.baud or 115200)
    if args.gateway:
        from .sources.lora_gateway import GatewaySource

        return GatewaySource(*args.gateway)
    if args.gateway_udp:
        from .sources.lora_gateway import GatewayUdpSource

        return GatewayUdpSource(*args.gateway_udp)
    if args.horus_udp:
        from .sources.horus_udp import HorusUdpSource

        return HorusUdpSource(*args.horus_udp)
    return ReplaySource(args.replay)


def repair_link(args: argparse.Namespace, source: FrameSource, store: Store, clock=None) -> RepairLink | None:
    """The link that answers the payload's windows, where this station can send (else None); a cue
    is dated on `clock` (the bench's lockstep under `sim fly`) when there is one, else on real time."""
    # Uplink only through a radio of our own: the serial port or HAT heard on, or the --udp bridge
    # named by --uplink-to (never a datagram's sender); a replay or another receiver's output cannot answer.
    if args.uplink_key and (args.serial or args.lora or (args.udp and args.uplink_to)):
        return RepairLink(args.uplink_key, Path(args.db), source.send, args.callsign,
                          uplink_to=args.uplink_to if args.udp else source.peer,
                          tag_len=args.tag_len, mtu=args.uplink_mtu, store=store,
                          **({"now": lambda: clock.now().timestamp()} if clock is not None else {}))
    if args.uplink_key and args.udp:
        log.warning("uplink off", why="--udp without --uplink-to: windows are not answered")
    return None


class LastMusing:
    """The newest musing heard of each flight, as SondeHub shows it: the comment of each of that
    flight's positions after it, never another flight's."""

    def __init__(self) -> None:
        self.comments: dict[str | None, str] = {}  # flight (None: the primary) -> its last musing
        self._flight: str | None = None  # whose record the hooks are hearing now

    @property
    def comment(self) -> str | None:
        return self.comments.get(None)

    def note(self, heard) -> None:
        from .exports.sondehub import musing_comment

        # The exporters ask `self()` right after this hook, for the same record: its flight's comment.
        self._flight = getattr(heard, "flight", None)
        if isinstance(heard.record, wire.Record) and heard.record.kind is wire.Kind.MUSING:
            self.comments[self._flight] = musing_comment(heard.record)

    def __call__(self) -> str | None:
        return self.comments.get(self._flight)


@dataclass
class Listener:
    """Every part of one `listen`, open; `run` runs them and closes them."""

    args: argparse.Namespace
    stop: threading.Event
    clock: object | None  # the bench's lockstep clock under `sim fly` (stratoecho.clock), else None
    store: Store
    source: FrameSource
    decoder: FrameDecoder
    hooks: Hooks
    repair: RepairLink | None = None
    proxy: ApiProxy | None = None
    publisher: StationPublisher | None = None
    exporters: list = field(default_factory=list)
    ssdv_uploader: SsdvUploader | None = None
    musing: LastMusing = field(default_factory=LastMusing)
    flights: Flights | None = None  # with --follow: the primary (store, decoder) and the followed flights

    def __post_init__(self) -> None:
        if self.flights is None:
            self.flights = Flights(Flight(None, self.decoder, self.store, Path(self.args.db)))

    def add_publisher(self) -> None:
        """Every frame to the station network (--mqtt)."""
        from .network import publisher_from_args

        publisher = self.publisher = publisher_from_args(self.args)  # None without --mqtt
        if publisher is not None:
            self.hooks.on_frame.append(lambda data, received_at, station, rssi, snr: publisher.publish_frame(
                data, received_at, rssi_dbm=rssi, snr_db=snr))

    def add_exporters(self, hat) -> None:
        """SondeHub, the chase-car feed and the SSDV upload, as the options ask; ValueError for
        options they cannot use (the SSDV uploader, whose thread runs already, stopped again)."""
        from .exports import DEFAULT_URL, live_exporters, ssdv_from_args, station_from_args

        args = self.args
        try:
            station = station_from_args(args)
            self.ssdv_uploader = ssdv_from_args(args, station)
            self.exporters = live_exporters(
                (args.sondehub_url or DEFAULT_URL) if station else None, station, args.udp_feed,
                udp_broadcast=args.udp_broadcast,
                frequency_mhz=args.sondehub_frequency or (hat.settings.frequency_mhz if hat else None),
                modulation=args.sondehub_modulation, comment=self.musing,
                udp_landing=FeedLanding(chase_from_args(args, "")) if args.udp_feed_landing else None)
        except ValueError:
            if self.ssdv_uploader is not None:  # its thread runs already
                self.ssdv_uploader.close(deadline_s=0)
            raise

    def join_hooks(self) -> None:
        """What hears each new record and SSDV packet besides the database, in this order."""
        from .exports import Guarded

        proxy, store, hooks = self.proxy, self.store, self.hooks
        if proxy is not None and self.clock is not None:
            proxy.synchronous = True  # on the lockstep an answer is ready in no flight time, as the bench wants it
        if proxy is not None:  # the payload's questions, answered into the outbox for its next window
            hooks.on_new.append(lambda heard: proxy.on_record(heard.record, store) if heard.flight is None else None)
        hooks.on_new.append(self.musing.note)
        for e in self.exporters:  # positions only: that is all an exporter takes
            hooks.on_new.append(lambda heard, e=e: e.add(heard) if isinstance(heard.record, Telemetry) else None)
        if self.ssdv_uploader is not None:  # every SSDV packet the database kept as new, with when it was heard
            self.exporters.append(Guarded(self.ssdv_uploader, "ssdv"))
            hooks.on_ssdv.append(self.exporters[-1].add)

    # ----------------------------------------------------------------- running

    def run(self) -> int:
        """Listen until stopped (a signal, --duration, --until-idle, a replay's end), then close
        every part and print the summary; the exit status."""
        args, source, status = self.args, self.source, 0
        # Under systemd (Type=notify): ready once the source is open and the database usable.
        notifier = SystemdNotifier()
        where = getattr(source, "address", None) or args.serial or args.replay or getattr(source, "name", None)
        notifier.ready(status=f"listening on {where}")
        try:
            with stop_on_signals(self.stop):
                run_listen(source, self.store, self.decoder, self.stop, None if args.quiet else sys.stdout,
                           as_json=args.json, limits=Limits(args.duration, args.until_idle), repair=self.repair,
                           hooks=self.hooks, flights=self.flights)
        except SourceError as e:
            print(f"error: {e}", file=sys.stderr)
            status = 1
        finally:
            notifier.stopping()
            status = self.close() or status
            self.report()
        return status

    def close(self) -> int:
        """Stop the exporters, the proxy and the publisher, and close the database; 1 when the
        broker never took some of what was published, else 0."""
        status = 0
        # SondeHub and the SSDV server may each take seconds to send what is still queued: side by
        # side, so stopping takes the longest close deadline, not their sum (systemd waits 20 s).
        closing = [threading.Thread(target=e.close, name="exporter-close") for e in self.exporters]
        for t in closing:
            t.start()
        for t in closing:
            t.join()
        if self.proxy is not None:
            self.proxy.close(timeout_s=10)
        if self.publisher is not None:
            # A replay has queued the whole file by now: give the broker time to take it.
            left = self.publisher.close(timeout_s=REPLAY_DRAIN_S if self.args.replay else 5.0)
            if left:
                print(f"error: {left} messages never reached the broker {self.args.mqtt[0]}:{self.args.mqtt[1]} "
                      f"(is it running, and does it accept this station?)", file=sys.stderr)
                status = 1
        self.store.close()
        for flight in self.flights.followed.values():
            flight.store.close()
        return status

    def report(self) -> None:
        """The summary on standard error, and the counts in --stats FILE."""
        decoder, store, repair, ssdv_uploader = self.decoder, self.store, self.repair, self.ssdv_uploader
        errors = decoder.errors + self.source.errors
        summary = format_summary("listen", decoder.frames, decoder.records, decoder.duplicates,
                                 errors, decoder.incomplete(), store.inserted)
        if repair is not None:
            summary += (f"\n  repair: {repair.nacks_sent} nacks sent, {repair.items_requested} items requested, "
                        f"{repair.planner.given_up} records given up")
        if ssdv_uploader is not None:
            s = ssdv_uploader.summary()
            summary += (f"\n  ssdv upload: {s['sent']} packets sent, {s['refused']} refused, {s['dropped']} dropped, "
                        f"{s['unsent']} not sent")
        for callsign, f in self.flights.stats().items():
            summary += (f"\n  flight {callsign}: {f['frames']} frames, {sum(f['records'].values())} records "
                        f"({', '.join(f'{k} {n}' for k, n in sorted(f['records'].items())) or 'none'}), "
                        f"{f['relayed']} relayed, {f['errors']} errors, {f['stored']} new to {f['db']}")
        if not_stored := store.frames_not_stored:
            summary += (f"\n  storage quota: {sum(not_stored.values())} frames past it not stored ("
                        + ", ".join(f"{source} {n}" for source, n in sorted(not_stored.items())) + ")")
        print(summary, file=sys.stderr)
        if self.args.stats is not None:
            write_stats(self.args.stats, {
                "frames": decoder.frames, "records": dict(decoder.records), "duplicates": decoder.duplicates,
                "errors": sum(errors.values()), "incomplete": decoder.incomplete(), "stored": store.inserted,
                "frames_not_stored": sum(store.frames_not_stored.values()),
                "nacks_sent": 0, "items_requested": 0, **(repair.stats() if repair else {}),
                **({"api_proxy": self.proxy.stats()} if self.proxy is not None else {}),
                **({"ssdv_upload": ssdv_uploader.summary()} if ssdv_uploader is not None else {}),
                **({"flights": self.flights.stats()} if self.flights.followed else {}),
            })


def write_stats(path: Path, stats: dict) -> None:
    """Temporary file then rename: a reader (sim fly) sees the old file or the whole new one."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        print(f"error: cannot write stats to {path}: {e.strerror}", file=sys.stderr)


# --------------------------------------------------------------------------- building


def open_flights(args: argparse.Namespace, downlink: DownlinkAuth | None, store: Store,
                 here: tuple[float, float, float] | None) -> Flights:
    """The primary flight (`store`, `downlink`) and each --follow'ed one with its own decoder and
    database beside --db, every envelope checked with every relayer's key known here; StartError
    (1: a key file or database that will not do, or a bad --relayer-key as ever; 2: a malformed
    --follow), having closed the followed databases it opened."""
    try:
        relayers = relayers_from_key_args(args)
    except (KeyFileError, ValueError) as e:
        raise StartError(str(e), 1) from e
    try:
        followed = followed_from_key_args(args)
    except KeyFileError as e:
        raise StartError(str(e), 1) from e
    except ValueError as e:
        raise StartError(str(e), 2) from e
    if downlink is not None and args.callsign:  # our own envelope, heard back, is checked too
        relayers.setdefault(payload_hash(args.callsign), downlink)
    for callsign, auth in followed.items():
        relayers[payload_hash(callsign)] = auth
    flights: dict[str, Flight] = {}
    try:
        for callsign, auth in followed.items():
            path = flight_db_path(args.db, callsign)
            flights[callsign] = Flight(callsign, FrameDecoder(auth=auth, relayers=relayers),
                                       Store(path, frame_quota=store.frame_quota), path)
            if here is not None:
                from .network import default_station

                flights[callsign].store.set_station(args.station or default_station(), *here)
            log.info("following", callsign=callsign, db=str(path))
    except StoreError as e:
        for flight in flights.values():
            flight.store.close()
        raise StartError(str(e), 1) from e
    primary = Flight(None, FrameDecoder(auth=downlink, relayers=relayers), store, Path(args.db))
    return Flights(primary, flights, relayers, relayer_names_from_key_args(args), args.downlink_tag_len)


def build_listener(args: argparse.Namespace, stop: threading.Event | None = None) -> Listener:
    """Every part `listen`'s options ask for, open and joined, in the order each needs the
    last; StartError (having closed what was open) if one cannot be had."""
    from stratoecho.clock import ENV, flight_clock

    # Under `sim fly` the station is one of the bench's lockstep processes: its waits are flight time.
    clock = flight_clock(name="ground") if os.environ.get(ENV) and stop is None else None
    stop = stop or (clock.event() if clock is not None else threading.Event())
    hat, here = check_options(args)
    downlink = check_keys(args)
    proxy = open_proxy(args)
    try:
        store = Store(args.db, frame_quota=frame_quota_from_args(args))
    except StoreError as e:
        raise StartError(str(e), 1) from e
    if here is not None:
        from .network import default_station

        store.set_station(args.station or default_station(), *here)
    try:
        source = open_source(args, clock, stop, hat)
    except SourceError as e:
        store.close()
        raise StartError(str(e), 1) from e
    if isinstance(source, UdpSource):
        log.info("listening", source=f"udp {source.address[0]}:{source.address[1]}", db=args.db)
    try:
        flights = open_flights(args, downlink, store, here)
    except StartError:
        store.close()
        source.close()
        raise
    decoder = flights.primary.decoder
    if downlink is None:
        log.warning("no downlink key", consequence="record fragments and window cues are kept as frames, unread; "
                    "sentences and pictures are shown", fix="--flight-key FILE (or --downlink-key FILE)")
    listener = Listener(args, stop, clock, store, source, decoder, Hooks(station=args.station),
                        repair=repair_link(args, source, store, clock), proxy=proxy, flights=flights)
    listener.add_publisher()
    try:
        listener.add_exporters(hat)
    except ValueError as e:
        for s in flights.stores():
            s.close()
        source.close()
        raise StartError(str(e), 2) from e
    listener.join_hooks()
    return listener
