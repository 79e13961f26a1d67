"""The dashboard's command line: `serve`, and `operator-password` (who may queue commands)."""

from __future__ import annotations

import argparse
import getpass
import sys
import threading
import time
from pathlib import Path

from stratoecho.cli import checked, number, stop_on_signals, wait_for_stop

from .. import predict
from ..maps.basemap import BaseMap
from ..maps.tiles import TileFileError, open_tiles
from ..store import StoreError
from . import access
from .hosts import check_name
from .limits import Limits, parse_limit
from .maps import MapLayers, check_tile_url
from .server import SWITCH_INTERVAL_S, serve

SERVE_EXAMPLES = """\
examples:
  python -m groundstation serve --db flight.db                 # http://127.0.0.1:8080/ on this laptop
  python -m groundstation serve --config ground.toml           # [database] path, [station], [dashboard] of listen's file
  python -m groundstation operator-password                    # once per station: who may send commands
  python -m groundstation serve --db flight.db --host 0.0.0.0  # also to phones on the field network, by IP address
  python -m groundstation serve --db flight.db --host 0.0.0.0 --allow-host chase-laptop.local  # and by that name
  python -m groundstation serve --db flight.db --port 8090     # beside another service on 8080
  python -m groundstation serve --db ground.db                 # with ground.FAR1.db beside it: both flights
  python -m groundstation serve --db flight.db --tiles ~/maps/launch.pmtiles --station 52.70 -2.75 90
  python -m groundstation serve --db flight.db --host 0.0.0.0 --limit network_connections=384  # a bigger club
exit status: 0 after Ctrl-C or SIGTERM; 1 if the database, the address, the password or tile file cannot be used;
2 for a usage error or a --config file that will not do (named, with the key and what was expected)
"""

PASSWORD_EXAMPLES = """\
examples:
  python -m groundstation operator-password                     # asks twice; ~/.config/stratoecho/operator.toml
  python -m groundstation operator-password --file station.toml # then: serve --operator-file station.toml
  printf '%s\\n' "$PW" | python -m groundstation operator-password --password-stdin
exit status: 0 when written; 1 when the passwords differ, the password is too short or too easy to guess
(it says why and what would do), or the file cannot be written
"""


_port = number("a port (0..65535; 0 picks a free one)", 0, 65535, whole=True)
_hours = number("a session length in hours (more than 0, at most 168)", 0, 24 * 7, above=True)


def register_cli(subparsers) -> argparse.ArgumentParser:
    """Add the `serve` command to `python -m groundstation`'s subparsers."""
    parser = subparsers.add_parser(
        "serve", help="serve a web dashboard of the ground database (works with no internet)",
        description=(
            "Serve a web dashboard of the ground database while `listen` fills it: the track on a map "
            "that needs no internet (the station's own base map, and your region's OpenStreetMap tiles with "
            "--tiles) with launch, burst, the predicted landing and its 95 % ellipse, the crew's numbers "
            "(rates, time to burst and landing, "
            "distance, bearing and elevation from --station and from every station that said where "
            "it is), altitude, temperature, battery and power "
            "mode against flight time, musings as they arrive, pictures, link statistics per minute and "
            "per station with the records still missing, and the operator's form to queue signed "
            "commands (ping, set mode, set intervals, memory note) that the listener signs and sends in "
            "the payload's next listen window. Everyone may watch; queuing needs the operator's password "
            "(operator-password). Everything the page needs is served from here: no internet. Reads "
            "never block the listener. Runs until Ctrl-C or SIGTERM."
        ),
        epilog=SERVE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--db", metavar="FILE",
                        help="the ground database `listen --db` writes (created if missing); required, here or as "
                             "[database] path in --config")
    parser.add_argument("--flight-db", type=Path, action="append", default=[], metavar="FILE",
                        help="another flight's ground database, kept elsewhere, shown beside --db's (repeat for "
                             "each; read only). Those `listen --follow` keeps beside --db (ground.CALLSIGN.db "
                             "for --db ground.db) are found without it, a new one within seconds")
    parser.add_argument("--host", default="127.0.0.1", metavar="ADDR",
                        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 opens it to "
                             "the field network: everyone there may watch, only the operator may queue commands)")
    parser.add_argument("--port", type=_port, default=8080, metavar="N",
                        help="TCP port (default 8080; 0 picks a free one, logged)")
    parser.add_argument("--allow-host", type=checked(check_name), action="append", default=[], metavar="NAME",
                        help="a name the dashboard answers to (the Host a browser sends), besides localhost, "
                             "127.0.0.1, [::1], the --host address and, with --host 0.0.0.0 or ::, any IP "
                             "address; repeat for each (e.g. the laptop's chase-laptop.local). A request to any "
                             "other name is refused: a web page cannot reach the dashboard under a name of its "
                             "own (DNS rebinding)")
    parser.add_argument("--operator-file", type=Path, metavar="FILE",
                        help="the operator password `operator-password` wrote (default "
                             f"{_home(access.default_file())} when it exists; without one, commands are taken "
                             "only on a dashboard listening on 127.0.0.1, from this machine)")
    predict.add_chase_arguments(parser, "--station")
    parser.add_argument("--tiles", type=Path, metavar="FILE",
                        help="OpenStreetMap tiles of the chase region, installed at home: a PMTiles archive "
                             "(`python -m groundstation map fetch`) or an MBTiles file, raster or vector "
                             "(Protomaps schema); drawn over the built-in base map (coastlines, borders, "
                             "rivers, places), which covers the rest of the world")
    parser.add_argument("--tile-url", type=checked(check_tile_url), metavar="URL",
                        help="a raster tile server's URL template with {z}, {x}, {y} (e.g. one on this laptop): "
                             "the browser fetches its tiles itself, the only time the page reaches another "
                             "machine")
    parser.add_argument("--session-hours", type=_hours, default=access.SESSION_S / 3600, metavar="H",
                        help=f"how long an operator login lasts (default {access.SESSION_S / 3600:g})")
    parser.add_argument("--limit", type=checked(parse_limit), action="append", default=[], metavar="NAME=VALUE",
                        help="one of the caps and deadlines that keep any crowd from locking the dashboard (docs/"
                             "ground.md, \"Limits\"; repeat for each), e.g. head_s=5 or network_streams=96: "
                             + ", ".join(f"{name} ({value:g})" for name, value in vars(Limits()).items()))
    parser.set_defaults(func=cmd_serve)

    password = subparsers.add_parser(
        "operator-password", help="set the password that lets a dashboard user queue commands",
        description=(
            "Set the station's operator password: on the dashboard (`serve`), everyone may watch, and only "
            "a browser logged in with this password may queue commands for the balloon. Kept as a scrypt "
            "hash in a file only its owner can read; restart `serve` to use a new one. It must have "
            f"{access.MIN_PASSWORD_CHARS} characters or more and take 10^{access.MIN_GUESSES_LOG10} guesses or more by "
            "zxcvbn's estimate (common passwords, words, names, this station's own words, patterns): four or more "
            "unrelated words picked at random will do."
        ),
        epilog=PASSWORD_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    password.add_argument("--file", type=Path, default=None, metavar="FILE",
                          help=f"where to keep it (default {_home(access.default_file())})")
    password.add_argument("--password-stdin", action="store_true",
                          help="read the password from the first line of standard input instead of asking")
    password.set_defaults(func=cmd_operator_password)
    return parser


def _home(path: Path) -> str:
    home = str(Path.home())
    return "~" + str(path)[len(home):] if str(path).startswith(home + "/") else str(path)


def load_sessions(args: argparse.Namespace) -> access.Sessions:
    """The operator's password file (`--operator-file`, else the default one if it exists);
    OperatorFileError names the file and what is wrong with it."""
    path = args.operator_file
    if path is None and access.default_file().exists():
        path = access.default_file()
    credential = access.Credential.read(path) if path is not None else None
    return access.Sessions(credential, time.monotonic, args.session_hours * 3600)


def cmd_operator_password(args: argparse.Namespace) -> int:
    path = args.file or access.default_file()
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("operator password: ")
        if getpass.getpass("again: ") != password:
            print("error: the two passwords differ; nothing written", file=sys.stderr)
            return 1
    try:
        access.Credential.from_password(password).write(path)
    except ValueError as e:
        print(f"error: {e}; nothing written", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: {path}: cannot write: {e.strerror or e}", file=sys.stderr)
        return 1
    print(f"operator password written to {path} (restart `serve` to use it)", file=sys.stderr)
    return 0


def cmd_serve(args: argparse.Namespace, stop: threading.Event | None = None) -> int:
    stop = stop or threading.Event()
    try:
        chase = predict.chase_from_args(args, "--station")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        tiles = open_tiles(args.tiles) if args.tiles else None
        layers = MapLayers(basemap=BaseMap(), tiles=tiles, tile_url=args.tile_url)
        # The base map's first use builds its place index (seconds on a Pi): not in a browser's wait.
        threading.Thread(target=layers.basemap.features, args=((-1.0, -1.0, 1.0, 1.0), 8), name="basemap-warm-up",
                         daemon=True).start()
        server = serve(args.db, args.host, args.port, stop, load_sessions(args), chase, layers,
                       Limits(**dict(args.limit)), allowed_hosts=args.allow_host, flight_dbs=args.flight_db)
    except (StoreError, OSError, access.OperatorFileError, TileFileError) as e:  # a start-up error
        print(f"error: {e}", file=sys.stderr)
        return 1
    switch = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    # The handlers go in before the first line says the dashboard is up: a SIGTERM sent as soon as
    # it is (systemd's stop, a test) must stop it cleanly, not find the default action still there.
    try:
        with stop_on_signals(stop):
            print(f"dashboard: {server.url}  (Ctrl-C to stop)", file=sys.stderr)
            print(f"answers to {server.hosts.describe()} (--allow-host NAME adds a name)", file=sys.stderr)
            if not server.sessions.can_log_in and not server.loopback_only:
                print("read-only: no operator password is set, so nobody can queue commands from the dashboard "
                      "(`python -m groundstation operator-password`, then restart `serve`)", file=sys.stderr)
            wait_for_stop(stop)
    finally:
        sys.setswitchinterval(switch)
    return 0
