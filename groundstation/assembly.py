"""The listener put together: every part `listen` runs, built from the station's configuration
(`GroundConfig`, groundstation/config.py: the file with the flags over it) in the order each
needs the last (`build_listener`), then run until told to stop and closed (`Listener.run`).
Nothing here sees the command line: `python -m groundstation listen` (`cmd_listen`) is build,
run, report; so is the bench's.

With followed flights (`[keys] follow`) the decoder is one per flight
(groundstation/link/flights.py, built by `link.keys.build_flights`), each followed flight with its
database beside the primary's (ground.db -> ground.CALLSIGN.db); the primary flight keeps that
database, the repair link, the uplink and the API proxy.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from stratoecho import wire
from stratoecho.cli import stop_on_signals
from stratoecho.clock import Clock, flight_clock
from stratoecho.systemd import SystemdNotifier
from stratoecho.wire import Telemetry
from stratoecho.wire.downlink import fingerprint
from stratoecho.wire.uplink import MAX_COUNTER, KeyFileError

from .config import GroundConfig
from .display import format_summary
from .link.decoder import FrameDecoder
from .link.flights import Flights, flight_db_path
from .link.heard import Heard
from .link.keys import build_flights, downlink_check, followed_checks
from .link.listen import Hooks, Limits, run_listen
from .link.uplink import CommandSigner, SignerStateError
from .link.windows import WindowAnswerer
from .predict import Chase, FeedLanding
from .sources import SOURCES, FrameSource, SourceContext, SourceError, UdpSource
from .store import Store, StoreError

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


# --------------------------------------------------------------------------- the configuration


def station_here(config: GroundConfig) -> tuple[float, float, float] | None:
    """Where this station is ([station] position, else [exports.sondehub] position), None when not
    given; StartError (status 2) for one that is no place."""
    from stratoecho.cli import place

    try:
        if config.station.position:
            return place(config.station.position, "--station-position")
        if config.exports.sondehub.position:
            return place(list(config.exports.sondehub.position), "--sondehub-position")
    except ValueError as e:
        raise StartError(str(e), 2) from e
    return None


def check_keys(config: GroundConfig) -> DownlinkAuth | None:
    """The downlink's key (None without one), and the uplink's counter state checked (moved on
    with uplink.skip_past): a bad key file or counter is a start-up error, not a surprise at
    the first window. StartError (status 1) naming what will not do."""
    keys, uplink = config.keys, config.uplink
    try:
        downlink = downlink_check(keys)
    except (KeyFileError, ValueError) as e:
        raise StartError(str(e), 1) from e
    if not (keys.flight_key and keys.callsign):
        return downlink
    try:
        signer = CommandSigner.for_db(keys.flight_key, keys.callsign, config.database.path, keys.allow_raw_key,
                                      tag_len=uplink.tag_len, mtu=uplink.mtu)
        if uplink.skip_past is not None:
            if not 0 <= uplink.skip_past < MAX_COUNTER:
                raise ValueError(f"--uplink-skip-past {uplink.skip_past} is outside 0..{MAX_COUNTER - 1}")
            log.info("uplink counter", callsign=keys.callsign, next_counter=signer.skip_to(uplink.skip_past + 1))
    except (KeyFileError, SignerStateError, ValueError) as e:
        raise StartError(str(e), 1) from e
    return downlink


def open_proxy(config: GroundConfig) -> ApiProxy | None:
    """The API proxy [proxy] asks for (None unless enabled), once the broker's password file and
    certificate are known to be readable, before anything opens. StartError: 2 for settings, 1 for
    its configuration file."""
    from .api_proxy import ProxyConfigError, proxy_from_config

    try:
        config.network.broker_auth()
    except ValueError as e:
        raise StartError(str(e), 2) from e
    try:
        proxy = proxy_from_config(config.proxy, config.uplink.tag_len, config.uplink.mtu)
    except ProxyConfigError as e:
        raise StartError(str(e), 1) from e
    if proxy is not None and not config.keys.flight_key:
        raise StartError("--api-proxy answers over the uplink: it needs --flight-key", 2)
    return proxy


# --------------------------------------------------------------------------- the parts


def open_source(config: GroundConfig, clock: Clock | None = None, stop=None) -> FrameSource:
    """The source [source] names, opened by its registered kind; SourceError if it cannot be."""
    return SOURCES[config.source.kind].open(config.source, SourceContext(clock, stop))


def repair_link(config: GroundConfig, source: FrameSource, store: Store, clock: Clock) -> WindowAnswerer | None:
    """The link that answers the payload's windows, where this station can send (else None); a cue
    is dated on `clock` (real time, or the bench's lockstep under `sim fly`)."""
    keys = config.keys
    # Uplink only through a radio of our own: the serial port or HAT heard on, or the bridge a UDP
    # source names (never a datagram's sender); a replay or another receiver's output cannot answer.
    peer = config.source.uplink_peer(source)
    if keys.flight_key and peer is not None:
        return WindowAnswerer(keys.flight_key, Path(config.database.path), source.send, keys.callsign,
                          uplink_to=peer, tag_len=config.uplink.tag_len, mtu=config.uplink.mtu, store=store,
                          allow_raw_key=keys.allow_raw_key,
                          now=lambda: clock.now().timestamp())
    if keys.flight_key and config.source.kind == "udp":
        log.warning("uplink off", why="--udp without --uplink-to: windows are not answered")
    return None


class LastMusing:
    """The newest musing heard of each flight, as SondeHub shows it: the comment of each of that
    flight's positions after it, never another flight's. It travels with the position it goes with."""

    def __init__(self) -> None:
        self.comments: dict[str | None, str] = {}  # flight (None: the primary) -> its last musing

    def carried(self, heard: Heard) -> Heard:
        """`heard`, noted if it is a musing; a position with its flight's last musing in it."""
        from .exports.sondehub import musing_comment

        if isinstance(heard.record, wire.Record) and heard.record.kind is wire.Kind.MUSING:
            self.comments[heard.flight] = musing_comment(heard.record)
        if isinstance(heard.record, Telemetry):
            return replace(heard, last_musing=self.comments.get(heard.flight))
        return heard


@dataclass
class Listener:
    """Every part of one `listen`, open; `run` runs them and closes them."""

    config: GroundConfig
    stop: threading.Event
    clock: Clock  # real time, or the bench's lockstep under `sim fly` (stratoecho.clock)
    store: Store
    source: FrameSource
    decoder: FrameDecoder
    hooks: Hooks
    flights: Flights  # the primary (store, decoder) and, with --follow, the followed flights
    repair: WindowAnswerer | None = None
    proxy: ApiProxy | None = None
    publisher: StationPublisher | None = None
    exporters: list = field(default_factory=list)  # every live exporter, guarded (groundstation/exports/live.py)
    takes: dict[str, list] = field(default_factory=lambda: {"positions": [], "ssdv": []})  # them by what they take
    ssdv_uploader: SsdvUploader | None = None
    musing: LastMusing = field(default_factory=LastMusing)

    def add_publisher(self) -> None:
        """Every frame to the station network ([network] broker, --mqtt)."""
        from .network import default_station
        from .network.settings import publisher_from_config

        config = self.config
        publisher = self.publisher = publisher_from_config(
            config.network, config.station.name or default_station(), config.keys.callsign, station_here(config))
        if publisher is not None:
            self.hooks.on_frame.append(lambda data, received_at, station, rssi, snr: publisher.publish_frame(
                data, received_at, rssi_dbm=rssi, snr_db=snr))

    def add_exporters(self) -> None:
        """The live exporters `[exports]` asks for (groundstation/exports/live.py); ValueError for
        settings they cannot use (those started already stopped again)."""
        from .exports import LiveContext, SsdvUploader, live_exporters, station_from_config

        landing = lambda burst_alt_m, descent_m_s: FeedLanding(Chase(burst_alt_m, descent_m_s))  # noqa: E731
        context = LiveContext(station_from_config(self.config.exports.sondehub), self.config.source.tuned_mhz(),
                              landing)
        made = live_exporters(self.config.exports, context)
        self.exporters = [guarded for _, guarded in made]
        self.ssdv_uploader = next((g.inner for entry, g in made if entry.takes == "ssdv"
                                   and isinstance(g.inner, SsdvUploader)), None)
        self.takes = {"positions": [g for e, g in made if e.takes == "positions"],
                      "ssdv": [g for e, g in made if e.takes == "ssdv"]}

    def join_hooks(self) -> None:
        """What hears each new record and SSDV packet besides the database, in this order."""
        proxy, store, hooks = self.proxy, self.store, self.hooks
        if proxy is not None and self.clock.answers_at_once():
            proxy.synchronous = True  # on the lockstep an answer is ready in no flight time, as the bench wants it
        if proxy is not None:  # the payload's questions, answered into the outbox for its next window
            hooks.on_new.append(lambda heard: proxy.on_record(heard.record, store) if heard.flight is None else None)
        # With a key, what leaves the station as the flight's (uploads, the feed, their musing
        # comment) is what the balloon signed; a claim stays in the database, shown apart.
        keyed, positions = self.decoder.auth is not None, self.takes["positions"]

        def share(heard: Heard) -> None:
            if keyed and not heard.authentic:
                return
            heard = self.musing.carried(heard)
            if isinstance(heard.record, Telemetry):  # positions only: that is all these exporters take
                for e in positions:
                    e.add(heard)

        hooks.on_new.append(share)
        for e in self.takes["ssdv"]:  # every SSDV packet the database kept as new, with when it was heard
            hooks.on_ssdv.append(e.add)

    # ----------------------------------------------------------------- running

    def run(self) -> int:
        """Listen until stopped (a signal, --duration, --until-idle, a replay's end), then close
        every part and print the summary; the exit status."""
        config, source, status = self.config, self.source, 0
        # Under systemd (Type=notify): ready once the source is open and the database usable.
        # The handlers go in first: a SIGTERM right after READY stops it cleanly, closing every part.
        notifier = SystemdNotifier()
        try:
            with stop_on_signals(self.stop):
                notifier.ready(status=f"listening on {config.source.where()}")
                out = None if config.output.records == "none" else sys.stdout
                run_listen(source, self.store, self.decoder, self.stop, out, as_json=config.output.records == "json",
                           limits=Limits(config.limits.duration_s, config.limits.until_idle_s), repair=self.repair,
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
            left = self.publisher.close(timeout_s=REPLAY_DRAIN_S if self.config.source.ends else 5.0)
            if left:
                host, port = self.config.network.broker
                print(f"error: {left} messages never reached the broker {host}:{port} "
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
        if not_stored := store.frames.not_stored:
            summary += (f"\n  storage quota: {sum(not_stored.values())} frames past it not stored ("
                        + ", ".join(f"{source} {n}" for source, n in sorted(not_stored.items())) + ")")
        print(summary, file=sys.stderr)
        if self.config.output.stats is not None:
            write_stats(self.config.output.stats, {
                "frames": decoder.frames, "records": dict(decoder.records), "duplicates": decoder.duplicates,
                "errors": sum(errors.values()), "incomplete": decoder.incomplete(), "stored": store.inserted,
                "frames_not_stored": sum(store.frames.not_stored.values()),
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


def open_flights(config: GroundConfig, downlink: DownlinkAuth | None, store: Store,
                 here: tuple[float, float, float] | None) -> Flights:
    """The primary flight (`store`, `downlink`) and each followed one with its own decoder and
    database beside the primary's (`build_flights`, the one rule for relayers); StartError (1: a
    key file or database that will not do), having closed the followed databases it opened."""
    db = Path(config.database.path)
    try:
        followed = followed_checks(config.keys)
    except KeyFileError as e:
        raise StartError(str(e), 1) from e
    stores: dict[str, tuple[Store, Path]] = {}
    try:
        for callsign in followed:
            path = flight_db_path(db, callsign)
            stores[callsign] = (Store(path, frame_quota=store.frames.quota), path)
            if here is not None:
                from .network import default_station

                stores[callsign][0].set_station(config.station.name or default_station(), *here)
            log.info("following", callsign=callsign, db=str(path))
        return build_flights(config.keys, downlink, followed, (store, db), stores)
    except (StoreError, KeyFileError) as e:
        for opened, _ in stores.values():
            opened.close()
        raise StartError(str(e), 1) from e


def build_listener(config: GroundConfig, stop: threading.Event | None = None) -> Listener:
    """Every part the station's configuration asks for, open and joined, in the order each needs
    the last; StartError (having closed what was open) if one cannot be had."""
    # Under `sim fly` the station is one of the bench's lockstep processes: its waits are flight time.
    # A caller that hands its own stop (a test, the dashboard's thread) runs in real time.
    clock = flight_clock(name="ground") if stop is None else Clock()
    stop = stop or clock.event()
    here = station_here(config)
    downlink = check_keys(config)
    with contextlib.ExitStack() as on_failure:  # what was opened, closed again when a later part cannot be had
        proxy = open_proxy(config)
        if proxy is not None:
            on_failure.callback(proxy.close, timeout_s=0)
        store = _open_store(config, here)
        on_failure.callback(store.close)
        try:
            source = open_source(config, clock, stop)
        except SourceError as e:
            raise StartError(str(e), 1) from e
        on_failure.callback(source.close)
        if isinstance(source, UdpSource):
            log.info("listening", source=f"udp {source.address[0]}:{source.address[1]}", db=str(config.database.path))
        flights = open_flights(config, downlink, store, here)
        on_failure.callback(lambda: [s.close() for s in flights.stores() if s is not store])
        for flight in flights.all():  # what each database's readers show as the flight's (store.GroundReader.flight.keyed)
            auth = flight.decoder.auth
            flight.store.set_trust(fingerprint(auth.key) if auth is not None else None)
        if downlink is None:
            log.warning("no downlink key: this station believes anyone",
                        consequence="any sentence under the flight's callsign is shown, exported and uploaded as the "
                        "flight's, a forger's too; record fragments and window cues are kept as frames, unread",
                        fix="--flight-key FILE (or --downlink-key FILE)")
        listener = Listener(config, stop, clock, store, source, flights.primary.decoder,
                            Hooks(station=config.station.name), flights, repair=repair_link(config, source, store, clock),
                            proxy=proxy)
        try:
            listener.add_publisher()
            if listener.publisher is not None:
                on_failure.callback(listener.publisher.close, timeout_s=0)
            listener.add_exporters()
        except ValueError as e:
            raise StartError(str(e), 2) from e
        listener.join_hooks()
        on_failure.pop_all()  # all open: the listener closes them
    return listener


def _open_store(config: GroundConfig, here: tuple[float, float, float] | None) -> Store:
    """The primary flight's database, with the station's place when it has one; StartError (1) if not."""
    try:
        store = Store(config.database.path, frame_quota=config.database.frame_quota())
    except StoreError as e:
        raise StartError(str(e), 1) from e
    if here is not None:
        from .network import default_station

        store.set_station(config.station.name or default_station(), *here)
    return store
