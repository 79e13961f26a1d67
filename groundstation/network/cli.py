"""`aggregate` and the station options of `listen`: the command line of the station network."""

from __future__ import annotations

import argparse
import socket
import sqlite3
import sys
import threading

import structlog

from stratoecho.cli import checked, hostport_type, positive_number, stop_on_signals
from stratoecho.wire.uplink import KeyFileError

from ..link.keys import add_key_arguments, downlink_check, keys_from_args, relayer_checks
from ..station_limits import StationLimits
from ..store import StoreError
from .aggregator import REMEMBER, Aggregator
from .topics import _NOT_A_LEVEL, DEFAULT_PREFIX, BrokerAuth, check_prefix, topic_level

log = structlog.get_logger(__name__)


# --------------------------------------------------------------------------- command line

AGGREGATE_EXAMPLES = """\
examples:
  python -m groundstation aggregate --broker 127.0.0.1:1883 --db flight.db --trust hilltop
  python -m groundstation aggregate --broker mqtt.example.org:8883 --user aggregator --password-file agg.pw \\
      --ca club-ca.crt --db flight.db --topic-prefix club/stratoecho
  # each station, beside its own database:
  python -m groundstation listen --serial /dev/ttyUSB0 --db here.db --mqtt mqtt.example.org:8883 --station hilltop \\
      --mqtt-user hilltop --mqtt-password-file hilltop.pw --mqtt-ca club-ca.crt
broker: any MQTT 3.1.1 broker; run it with persistence on (mosquitto: "persistence true") so
frames wait there for the aggregator while it or the broker restarts, and raise its
max_queued_messages (mosquitto's default keeps 1000 a client) to what a long outage needs.
exit status: 0 after a clean stop; 1 if the database cannot be used; 2 for a usage error
"""


def default_station() -> str:
    """This machine's host name as a topic level."""
    return _NOT_A_LEVEL.sub("_", socket.gethostname()) or "station"


STATION_NAME = checked(lambda name: topic_level(name, "station"))  # argparse type: a topic level


def register_cli(subparsers) -> argparse.ArgumentParser:
    """Add the `aggregate` command to the ground station's subcommands."""
    parser = subparsers.add_parser(
        "aggregate", help="merge the frames several stations share over MQTT into one database",
        description=(
            "Subscribe to every station's frames on an MQTT broker (TOPIC-PREFIX/+/frames/+), put them "
            "through one decoder so fragments heard by different stations complete a record together, and "
            "store every frame (with its station and signal) and every record once in the database, noting "
            "which stations heard each. No station is believed on its word: records a station decoded "
            "(TOPIC-PREFIX/+/records/+) are refused, and a frame counts once --quorum stations sent the same "
            "bytes or a --trust station did; until then it is kept as that station's claim. The dashboard "
            "reads that database. Runs until Ctrl-C or SIGTERM, then prints a summary on standard error."
        ),
        epilog=AGGREGATE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--broker", required=True, metavar="HOST:PORT", type=hostport_type(),
                        help="the MQTT broker the stations publish to, e.g. 127.0.0.1:1883")
    parser.add_argument("--db", required=True, metavar="FILE",
                        help="SQLite database to store into (created if missing; safe to reuse: records "
                             "already there are not stored twice)")
    parser.add_argument("--topic-prefix", default=DEFAULT_PREFIX, type=checked(check_prefix), metavar="PREFIX",
                        help=f"first topic level(s) the stations publish under (default {DEFAULT_PREFIX})")
    parser.add_argument("--client-id", default="stratoecho-aggregator", metavar="ID",
                        help="MQTT client id; the broker keeps this id's session (and the frames waiting for "
                             "it) while the aggregator is away. Two aggregators need two ids "
                             "(default stratoecho-aggregator)")
    parser.add_argument("--trust", action="append", default=[], type=STATION_NAME, metavar="STATION",
                        help="a station whose frames count alone (your own); repeat for more. Others' count "
                             "once --quorum stations sent the same bytes")
    add_key_arguments(parser)
    parser.add_argument("--quorum", type=int, default=2, metavar="N",
                        help="how many stations must send a frame's bytes before an untrusted station's frame "
                             "counts (default 2; 1 believes every station)")
    _broker_auth_arguments(parser, "")
    _limit_arguments(parser)
    parser.add_argument("--duration", type=positive_number("seconds"), metavar="SECONDS",
                        help="stop after this many seconds (for scripted runs)")
    parser.set_defaults(func=cmd_aggregate)
    return parser


def _limit_arguments(parser: argparse.ArgumentParser) -> None:
    """Each station's share of the aggregator (docs/ground.md, "What a station is trusted with")."""
    d = StationLimits()
    group = parser.add_argument_group(
        "each station's limits", "what one login may cost the aggregator; the defaults fit a four-hour flight "
                                 "heard by a handful of stations. Raise them for a float flight of days or a "
                                 "station with several receivers")
    group.add_argument("--station-rate", type=float, default=d.rate_frames_s, metavar="FRAMES_S",
                       help=f"frames a second a station may send, past its burst (default {d.rate_frames_s:g})")
    group.add_argument("--station-burst", type=int, default=d.burst_frames, metavar="FRAMES",
                       help=f"frames a station may send at once, catching up after an outage (default {d.burst_frames})")
    group.add_argument("--station-pending", type=int, default=d.pending_per_station, metavar="FRAMES",
                       help="a station's claims held in memory, waiting for another station to vouch for them "
                            f"(default {d.pending_per_station})")
    group.add_argument("--pending-total", type=int, default=d.pending_total, metavar="FRAMES",
                       help=f"all stations' claims held in memory together (default {d.pending_total})")
    group.add_argument("--station-quota-mb", type=float, default=d.quota_bytes / 1e6, metavar="MB",
                       help=f"megabytes of frames stored per station, a frame's row ~200 to ~700 bytes (default "
                            f"{d.quota_bytes / 1e6:g}: a four-hour flight at the most a radio hears; 0 stores none of "
                            "its frames, though vouched ones still decode)")
    group.add_argument("--quota-total-mb", type=float, default=d.quota_total_bytes / 1e6, metavar="MB",
                       help=f"megabytes of frames stored from all stations together (default "
                            f"{d.quota_total_bytes / 1e6:g}); past it no station's frames are stored, vouched ones "
                            "still decode")
    group.add_argument("--max-age-h", type=float, default=d.max_age_s / 3600, metavar="HOURS",
                       help="a frame (or position) a station says it heard longer ago than this by this machine's "
                            f"clock is refused, as is one more than {d.clock_ahead_s / 60:g} minutes ahead of it "
                            f"(default {d.max_age_s / 3600:g}: longer than a flight; raise it to take in a broker's "
                            "backlog older than that)")


def limits_from_args(args: argparse.Namespace) -> StationLimits:
    """The StationLimits `_limit_arguments` gave; ValueError naming the option that will not do."""
    if not args.station_rate > 0:
        raise ValueError(f"--station-rate: a positive number of frames a second, got {args.station_rate:g}")
    for option, value, least in (("--station-burst", args.station_burst, 1),
                                 ("--station-pending", args.station_pending, 1),
                                 ("--pending-total", args.pending_total, 1)):
        if value < least:
            raise ValueError(f"{option}: {least} frame{'s' if least != 1 else ''} or more, got {value}")
    if args.pending_total < args.station_pending:
        raise ValueError(f"--pending-total {args.pending_total} is below --station-pending {args.station_pending}: "
                         "all stations' claims together hold at least one station's")
    if not args.station_quota_mb >= 0:
        raise ValueError(f"--station-quota-mb: 0 MB or more, got {args.station_quota_mb:g}")
    if not args.quota_total_mb >= args.station_quota_mb:
        raise ValueError(f"--quota-total-mb {args.quota_total_mb:g} is below --station-quota-mb "
                         f"{args.station_quota_mb:g}: all stations' frames together hold at least one station's")
    if not args.max_age_h > 0:
        raise ValueError(f"--max-age-h: more than 0 hours, got {args.max_age_h:g}")
    return StationLimits(rate_frames_s=args.station_rate, burst_frames=args.station_burst,
                         pending_per_station=args.station_pending, pending_total=args.pending_total,
                         quota_bytes=round(args.station_quota_mb * 1e6),
                         quota_total_bytes=round(args.quota_total_mb * 1e6), max_age_s=args.max_age_h * 3600)


def _broker_auth_arguments(parser, prefix: str) -> None:
    """--user/--password-file/--ca/--tls (`prefix` "mqtt-" for a station's options)."""
    parser.add_argument(f"--{prefix}user", metavar="NAME", help="user name at the broker")
    parser.add_argument(f"--{prefix}password-file", metavar="FILE",
                        help="file whose first line is the broker password (never the password itself on the "
                             "command line, where anyone on the machine can read it)")
    parser.add_argument(f"--{prefix}ca", metavar="FILE",
                        help="certificate authority that signed the broker's certificate: speak TLS and check the "
                             "broker with it (implies --" + prefix + "tls)")
    parser.add_argument(f"--{prefix}tls", action="store_true",
                        help="speak TLS, checking the broker against the system's certificate authorities "
                             "(port 8883 by convention)")


def auth_from_args(args: argparse.Namespace, prefix: str = "") -> BrokerAuth | None:
    """The BrokerAuth of _broker_auth_arguments' options, None when none was given; ValueError
    naming what will not do."""
    key = prefix.replace("-", "_")
    user, password_file = getattr(args, f"{key}user", None), getattr(args, f"{key}password_file", None)
    ca, tls = getattr(args, f"{key}ca", None), getattr(args, f"{key}tls", False)
    if user is None and password_file is None and ca is None and not tls:
        return None
    return BrokerAuth.from_files(user, password_file, ca, tls)


def add_publish_arguments(parser: argparse.ArgumentParser) -> None:
    """`--mqtt HOST:PORT`, `--station NAME`, `--mqtt-prefix` for a command that hears frames."""
    group = parser.add_argument_group(
        "sharing (MQTT)",
        "With --mqtt, every frame heard (good or bad) is also published, raw, to "
        "PREFIX/PAYLOAD/frames/STATION at QoS 1 for an aggregator (python -m groundstation aggregate). "
        "Publishing never holds up receiving: while the broker is away frames wait in a bounded buffer.")
    group.add_argument("--mqtt", metavar="HOST:PORT", type=hostport_type(),
                       help="MQTT broker to publish heard frames to, e.g. mqtt.example.org:1883")
    group.add_argument("--station", type=STATION_NAME, default=None, metavar="NAME",
                       help="this station's name in topics and in the aggregate's heard-by lists "
                            "(default: the host name)")
    group.add_argument("--mqtt-prefix", type=checked(check_prefix), default=DEFAULT_PREFIX, metavar="PREFIX",
                       help=f"first topic level(s) (default {DEFAULT_PREFIX}); must match the aggregator's")
    group.add_argument("--station-position", nargs="+", type=float, metavar="COORD",
                       help="LAT LON [ALT]: where this station is (default: --sondehub-position); kept in its "
                            "database and, with --mqtt, shared with the network, so the dashboard gives "
                            "distance, bearing and elevation to the balloon from every station")
    _broker_auth_arguments(group, "mqtt-")


def cmd_aggregate(args: argparse.Namespace, stop: threading.Event | None = None) -> int:
    stop = stop or threading.Event()
    host, port = args.broker
    try:
        auth = auth_from_args(args)
        if args.quorum < 1:
            raise ValueError(f"--quorum: 1 station or more, got {args.quorum}")
        limits = limits_from_args(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        keys = keys_from_args(args)
        downlink = downlink_check(keys)
        if downlink is None:
            log.warning("no downlink key", consequence="record fragments are kept as claims, never decoded",
                        fix="--downlink-key FILE (keygen --downlink-from FLIGHT_KEY FILE)")
        relayers = relayer_checks(keys, None, {})  # the --relayer-key ones: no flight of its own to add
        aggregator = Aggregator(host, port, args.db, args.topic_prefix, client_id=args.client_id,
                                trusted=args.trust, quorum=args.quorum, auth=auth, downlink=downlink,
                                limits=limits, remember=max(REMEMBER, limits.pending_total))
        aggregator.decoder.relayers.update(relayers)
    except (KeyFileError, ValueError, StoreError) as e:  # the key file or the database will not do
        print(f"error: {e}", file=sys.stderr)
        return 1
    timer = threading.Timer(args.duration, stop.set) if args.duration else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    status = 0
    try:
        with stop_on_signals(stop):
            aggregator.run(stop)
    except sqlite3.Error as e:  # the messages not stored stay unacknowledged at the broker
        print(f"error: database {args.db}: {e}", file=sys.stderr)
        status = 1
    finally:
        if timer is not None:
            timer.cancel()
        print(format_aggregate_summary(aggregator), file=sys.stderr)
    return status


def format_aggregate_summary(aggregator: Aggregator) -> str:
    s, d = aggregator.stats, aggregator.decoder
    records = ", ".join(f"{n} {kind}" for kind, n in sorted(d.records.items())) or "none"
    lines = [
        f"aggregate: {s.messages} messages, {s.frames} frames stored, {s.records_new} new records and sentences",
        f"  decoded: {records}; {d.incomplete()} records incomplete",
        f"  duplicates: {s.duplicate_frames} frames heard before, {s.duplicate_records} records already held, "
        f"{s.repeats} messages delivered again",
    ]
    trust = (f"  trust: {s.vouched_frames} frames vouched for (quorum {aggregator.quorum}"
             + (f", trusted {', '.join(sorted(aggregator.trusted))}" if aggregator.trusted else "") + f"), "
             f"{s.held_frames} held as one untrusted station's claim, {s.bad_tags} with a tag that failed or was "
             "not checked")
    if s.refused_records:
        trust += f", {s.refused_records} decoded records refused"
    lines.append(trust)
    if s.rate_dropped or s.over_quota or aggregator._held.evicted:
        by = lambda counts: ", ".join(f"{st} {n}" for st, n in sorted(counts.items()))  # noqa: E731
        limit = []
        if s.rate_dropped:
            limit.append(f"{s.rate_dropped} frames over a station's rate dropped ({by(aggregator.gate.rate_dropped)})")
        if s.over_quota:
            limit.append(f"{s.over_quota} past a station's storage quota not stored ({by(aggregator.gate.over_quota)})")
        if aggregator._held.evicted:
            limit.append(f"claims forgotten past a station's share: {by(aggregator._held.evicted)}")
        lines.append("  limits: " + "; ".join(limit))
    bad = {**s.bad_messages, **{f"frame: {k}": v for k, v in d.errors.items()}}
    if bad:
        lines.append("  ignored: " + ", ".join(f"{n} {reason}" for reason, n in sorted(bad.items())))
    return "\n".join(lines)
