"""`groundstation watch --db FILE`: a live terminal view of the flight, read from the database.

Runs beside `listen` (SQLite in WAL mode lets it read while the listener writes) or alone
on a replayed database. Three pure steps, so each is tested on its own::

    FlightView.from_ground(ground, now=...) -> FlightView    what the database says now
    render(view, width)                    -> str            the screen, one line per fact
    Watcher.step(ground)                   -> str            what to write this time: the whole
                                                             screen (ANSI redraw) or, with
                                                             --plain / no TTY, only new lines

`ground` is a `store.GroundReader`: the view opens the database read-only, so it never
creates, migrates or locks the station's file, and reads one an older ground station left.
`watch(db_path, stop, out, interval_s)` loops until `stop` is set. Everything that came
from the air (callsign, health strings, musings) is escaped with `display.clean_text`
before it reaches the terminal; numbers from the air are shown only if they are numbers.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import textwrap
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TextIO

import structlog

from stratoecho import geo
from stratoecho.cli import positive_number
from stratoecho.wire.content import readings_of

from . import predict
from .display import clean_text
from .store import ANNOUNCED, GroundReader, RecordRow, StoreError, TelemetryRow

log = structlog.get_logger(__name__)

_ASCENT_SPAN_S = 120  # ascent rate over the sentences of the last two minutes
_MAX_RANGES = 6  # missing ranges shown per (kind, boot)


def _line(value) -> str:
    """Air text for one line: control characters escaped, newlines as spaces."""
    return clean_text(str(value)).replace("\n", " ") if value is not None else "—"


def _is_num(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _num(value, fmt: str, unit: str = "") -> str:
    return f"{format(value, fmt)}{unit}" if _is_num(value) else "—"


def _parse_iso(text) -> datetime | None:
    try:
        t = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _seconds_of_day(hms) -> int | None:
    try:
        h, m, s = (int(x) for x in str(hms).split(":"))
    except ValueError:
        return None
    return h * 3600 + m * 60 + s if 0 <= h < 24 and 0 <= m < 60 and 0 <= s < 61 else None


# --------------------------------------------------------------------------- the view model


@dataclass(frozen=True)
class StationLink:
    """Frames one station heard in the last `FlightView.window_s`; station "" is unnamed."""

    station: str
    frames: int
    bad: int
    rssi_dbm: float | None  # latest reading, any time
    snr_db: float | None


@dataclass(frozen=True)
class Missing:
    """Records of (kind, boot) the ground has not got: gaps between those held, and those
    after the last held up to what the health record announced (`announced`)."""

    kind: str
    boot: int
    ranges: tuple[tuple[int, int], ...]
    announced: int | None = None  # the payload's last seq, when health says more than we hold
    none_held: bool = False  # health announces records of this boot and none has arrived

    @property
    def count(self) -> int:
        return sum(last - first + 1 for first, last in self.ranges)


@dataclass(frozen=True)
class FlightView:
    now: datetime
    position: TelemetryRow | None  # the latest, in the payload's order
    ascent_mps: float | None
    health: dict  # the latest health record's fields, as they came
    health_boot_seq: tuple[int, int] | None
    window_s: float
    link: tuple[StationLink, ...]
    frames_total: int
    frames_bad: int
    last_frame_at: datetime | None
    sentences_missed: int  # telemetry gaps in the latest boot
    missing: tuple[Missing, ...]
    musings: tuple[RecordRow, ...]  # the latest, in the order they completed (newest last)
    landing: predict.Prediction | None = None
    home: tuple[float, float, float] | None = None

    @classmethod
    def from_ground(cls, ground: GroundReader, *, now: datetime | None = None, window_s: float = 300.0,
                    musings: int = 5, landing: predict.Landing | None = None) -> FlightView:
        now = now or datetime.now(timezone.utc)
        rows = ground.track.telemetry(limit=30)
        position = rows[-1] if rows else None
        latest_health = ground.records.latest("health")
        health = (latest_health.fields or {}) if latest_health else {}
        health_key = (latest_health.boot, latest_health.seq) if latest_health else None
        since = (now - timedelta(seconds=window_s)).isoformat(timespec="milliseconds")
        link = tuple(StationLink(s.station, s.frames, s.bad or 0, s.last_rssi_dbm, s.last_snr_db)
                     for s in ground.link.station_stats(since))
        counts = ground.counts()
        return cls(
            now=now, position=position, ascent_mps=ascent_rate(rows), health=dict(health),
            health_boot_seq=health_key, window_s=window_s, link=link,
            frames_total=counts.frames, frames_bad=counts.frames_bad, last_frame_at=_parse_iso(ground.link.last_heard()),
            sentences_missed=ground.track.sentences_missing(position.boot) if position else 0,
            missing=missing_records(ground, health, health_key),
            musings=tuple(ground.records.last_completed("musing", musings)),
            landing=landing(ground.track.telemetry()) if landing is not None else None,
            home=landing.chase.home if landing is not None else None,
        )


def ascent_rate(telemetry: list[TelemetryRow]) -> float | None:
    """m/s over the latest boot's sentences of the last `_ASCENT_SPAN_S` (by their UTC time of
    day, across midnight); None with fewer than two sentences or no time between them."""
    if not telemetry:
        return None
    last = telemetry[-1]
    t_last = _seconds_of_day(last.time)
    if t_last is None:
        return None
    best = None
    for row in telemetry[:-1]:
        t = _seconds_of_day(row.time)
        if row.boot != last.boot or t is None:
            continue
        dt = (t_last - t) % 86400
        if 0 < dt <= _ASCENT_SPAN_S and (best is None or dt > best[0]):
            best = (dt, row)
    if best is None or not (_is_num(last.alt) and _is_num(best[1].alt)):
        return None
    return (last.alt - best[1].alt) / best[0]


def missing_records(ground: GroundReader, health: dict, health_key: tuple[int, int] | None) -> tuple[Missing, ...]:
    """Gaps in each (kind, boot) sequence held, then what the latest health record announces
    beyond the last held of its boot."""
    gaps = ground.records.gaps()
    announced: dict[tuple[str, int], int] = {}
    none_held: set[tuple[str, int]] = set()
    if health_key is not None:
        boot = health_key[0]
        held_up_to = ground.records.newest_seqs(boot)
        for field, kind in ANNOUNCED.items():
            value = health.get(field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                continue
            held = held_up_to.get(kind)
            if held is None:
                none_held.add((kind, boot))
                announced[(kind, boot)] = value
            elif value > held:
                gaps.setdefault((kind, boot), []).append((held + 1, value))
                announced[(kind, boot)] = value
    keys = sorted(set(gaps) | none_held, key=lambda k: (k[1], k[0]))
    return tuple(Missing(kind, boot, tuple(gaps.get((kind, boot), ())), announced.get((kind, boot)),
                         (kind, boot) in none_held) for kind, boot in keys)


# --------------------------------------------------------------------------- rendering


def _ago(now: datetime, then: datetime | None) -> str:
    if then is None:
        return "never"
    s = max(0, int((now - then).total_seconds()))
    return f"{s} s ago" if s < 120 else f"{s // 60} min ago" if s < 7200 else f"{s // 3600} h ago"


def _fit(line: str, width: int) -> str:
    return line if len(line) <= width else line[:max(1, width - 1)] + "…"


def _ranges(m: Missing) -> str:
    if m.none_held:
        return f"{m.kind} boot {m.boot}: none heard yet, payload at #{m.announced}"
    shown = ", ".join(f"#{a}" if a == b else f"#{a}-{b}" for a, b in m.ranges[:_MAX_RANGES])
    more = f" (+{len(m.ranges) - _MAX_RANGES} more gaps)" if len(m.ranges) > _MAX_RANGES else ""
    return f"{m.kind} boot {m.boot}: {m.count} missing {shown}{more}"


def render(view: FlightView, width: int = 80) -> str:
    """The whole screen as text, each line at most `width` characters."""
    width = max(20, width)
    h = view.health
    p = view.position
    lines = []
    if p is None:
        lines.append(f"STRATOECHO  no telemetry yet   last frame {_ago(view.now, view.last_frame_at)}")
    else:
        lines.append(f"STRATOECHO  {_line(p.callsign)}  boot {p.boot} #{p.seq}  {_line(p.time)} UTC   "
                     f"last frame {_ago(view.now, view.last_frame_at)}")
        rate = "—" if view.ascent_mps is None else f"{view.ascent_mps:+.1f} m/s"
        lines.append(f"Position  {_num(p.lat, '.5f')},{_num(p.lon, '.5f')}   alt {_num(p.alt, ',')} m   "
                     f"ascent {rate}   {_num(p.sats, 'd')} sats")
        lines += landing_lines(view)
    batt = _num(h.get("batt_mv"), ",", " mV") if "batt_mv" in h else _num(p.batt_mv if p else None, ",", " mV")
    lines.append(f"Power     battery {batt}   current {_num(h.get('batt_ma'), 'd', ' mA')}   "
                 f"used {_num(h.get('energy_wh'), '.1f', ' Wh')}   left {_num(h.get('hours_left'), '.1f', ' h')}")
    lines.append(f"Temps     outside {_num(p.temp_c if p else None, '.1f', ' °C')}   "
                 f"box {_num(h.get('box_temp_c'), '.1f', ' °C')}   cpu {_num(h.get('cpu_temp_c'), '.1f', ' °C')}   "
                 f"pressure {_num(p.pressure_hpa if p else None, '.1f', ' hPa')}")
    if readings := readings_of(h):  # a maker's sensors' values
        lines.append("Sensors   " + "   ".join(f"{_line(name)} {value:g}" for name, value in readings.items()))
    state = f"mode {_line(h.get('mode'))}   phase {_line(h.get('phase'))}"
    for name in ("store", "heater"):
        if name in h:
            state += f"   {name} {_line(h[name])}"
    if "queue_depth" in h:
        state += f"   queue {_num(h['queue_depth'], 'd')}"
    if view.health_boot_seq:
        state += f"   (health #{view.health_boot_seq[1]})"
    lines.append("State     " + state)
    minutes = f"{view.window_s / 60:g} min"
    if not view.link:
        lines.append(f"Link      nothing heard in the last {minutes}   "
                     f"({view.frames_total} frames, {view.frames_bad} bad in all)")
    for i, s in enumerate(view.link):
        name = _line(s.station) if s.station else "here"
        signal = ""
        if s.rssi_dbm is not None or s.snr_db is not None:
            signal = f"   {_num(s.rssi_dbm, '.1f', ' dBm')}  SNR {_num(s.snr_db, '.1f', ' dB')}"
        head = "Link      " if i == 0 else " " * 10
        lines.append(f"{head}{name}: {s.frames} frames, {s.bad} bad in {minutes}{signal}")
    if view.sentences_missed:
        lines.append(f"          telemetry: {view.sentences_missed} sentences not heard this boot")
    if view.missing:
        for i, m in enumerate(view.missing):
            lines.append(("Missing   " if i == 0 else " " * 10) + _ranges(m))
    else:
        lines.append("Missing   nothing")
    lines = [_fit(line, width) for line in lines]
    if view.musings:
        lines.append("Musings")
        for m in view.musings:
            wrapped = textwrap.wrap(f"#{m.seq} {_line(m.text)}", width=width - 2) or [""]
            lines += ["  " + w for w in wrapped]
    return "\n".join(lines) + "\n"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def landing_lines(view: FlightView) -> list[str]:
    """The predicted landing, and distance, bearing and elevation from where the crew is."""
    lp, p = view.landing, view.position
    if lp is None:
        return ["Landing   — (after 3 positions over a minute)"] if p is not None else []
    if lp.phase == "landed":
        head = f"Landed    {lp.lat:.5f},{lp.lon:.5f}"
    else:
        burst = (f"burst {lp.burst_alt_m:,.0f} m " + ("seen" if lp.burst_seen else f"in {_minutes(lp.burst_in_s or 0)}"))
        chute = f"parachute {lp.descent_rate_m_s:.1f} m/s " + ("measured" if lp.descent_rate_measured else "assumed")
        head = (f"Landing   {lp.lat:.5f},{lp.lon:.5f} ±{lp.ellipse.semi_major_m / 1000:.1f} km in "
                f"{_minutes(lp.landing_in_s)}   {burst}   {chute}")
    lines = [head]
    if view.home is not None and p is not None and _is_num(p.lat) and _is_num(p.lon):
        hl, ho, ha = view.home
        balloon = (f"balloon {geo.distance_m(hl, ho, p.lat, p.lon) / 1000:.1f} km at "
                   f"{geo.bearing_deg(hl, ho, p.lat, p.lon):03.0f}°, "
                   f"{geo.elevation_deg(hl, ho, ha, p.lat, p.lon, p.alt):.0f}° up")
        land = (f"landing {geo.distance_m(hl, ho, lp.lat, lp.lon) / 1000:.1f} km at "
                f"{geo.bearing_deg(hl, ho, lp.lat, lp.lon):03.0f}°")
        lines.append(f"From you  {balloon}   {land}")
    return lines


def plain_summary(view: FlightView) -> str:
    """One line for appended output: where the balloon is and how the link goes."""
    p, h = view.position, view.health
    where = "no telemetry yet" if p is None else (
        f"{_line(p.time)} boot {p.boot} #{p.seq} {_num(p.lat, '.5f')},{_num(p.lon, '.5f')} {_num(p.alt, 'd')} m "
        f"{'—' if view.ascent_mps is None else f'{view.ascent_mps:+.1f} m/s'}")
    frames = sum(s.frames for s in view.link)
    bad = sum(s.bad for s in view.link)
    missing = sum(m.count for m in view.missing)
    lp = view.landing
    landing = "" if lp is None else (f"  landing {lp.lat:.5f},{lp.lon:.5f} ±{lp.ellipse.semi_major_m / 1000:.1f} km"
                                     + (f" in {_minutes(lp.landing_in_s)}" if lp.phase != "landed" else " (landed)"))
    return (f"{where}  mode {_line(h.get('mode'))} phase {_line(h.get('phase'))}  "
            f"link {frames} frames/{bad} bad in {view.window_s / 60:g} min  missing {missing}{landing}")


class Watcher:
    """What to write at each step: the full screen (ANSI) or, plain, only what is new: a
    summary line when it changed and each musing once, in the order they completed."""

    def __init__(self, plain: bool, window_s: float = 300.0, musings: int = 5, chase: predict.Chase | None = None):
        self.plain = plain
        self.window_s = window_s
        self.musings = musings
        self.landing = predict.Landing(chase or predict.Chase())
        self._last_summary: str | None = None
        self._last_musing_id = 0

    def step(self, ground: GroundReader, width: int = 80, now: datetime | None = None) -> str:
        if not self.plain:
            view = FlightView.from_ground(ground, now=now, window_s=self.window_s, musings=self.musings,
                                          landing=self.landing)
            body = render(view, width)
            return "\x1b[H" + body.replace("\n", "\x1b[K\n") + "\x1b[J"
        view = FlightView.from_ground(ground, now=now, window_s=self.window_s, musings=0, landing=self.landing)
        out = []
        summary = plain_summary(view)
        if summary != self._last_summary:
            out.append(summary)
            self._last_summary = summary
        for m in ground.records.since(self._last_musing_id, "musing"):
            out.append(f"MUSING boot {m.boot} #{m.seq}: {_line(m.text)}")
            self._last_musing_id = m.id
        return "".join(line + "\n" for line in out)


def watch(db_path: str | Path, stop: threading.Event, out: TextIO, interval_s: float = 1.0, *,
          plain: bool | None = None, window_s: float = 300.0, musings: int = 5, once: bool = False,
          chase: predict.Chase | None = None) -> None:
    """Show the flight in `db_path` on `out` every `interval_s` until `stop` is set (or once).
    `plain` None: plain when `out` is not a terminal."""
    if plain is None:
        plain = not (hasattr(out, "isatty") and out.isatty())
    watcher = Watcher(plain, window_s, musings, chase)
    GroundReader.open(db_path).close()  # StoreError now if this file will not do
    if not plain:
        out.write("\x1b[2J")
    while True:
        width = shutil.get_terminal_size((80, 24)).columns
        try:
            # Opened afresh each time, as the dashboard does: it sees the schema as the listener left it.
            with GroundReader.open(db_path) as ground:
                text = watcher.step(ground, width)
        except Exception as e:  # a locked or busy database: show the next time round
            log.warning("watch_read_failed", error=str(e))
            text = ""
        out.write(text)
        out.flush()
        if once or stop.wait(interval_s):
            break


# --------------------------------------------------------------------------- command line


WATCH_EXAMPLES = """\
examples:
  python -m groundstation watch --db flight.db                    # beside `listen --db flight.db`
  python -m groundstation watch --config ground.toml              # listen's [database] path and [station] position
  python -m groundstation watch --db flight.db --from 52.70 -2.75 --burst-alt 32000   # from the chase car
  python -m groundstation watch --db replay.db --once --plain     # one look, as lines
exit status: 0 after Ctrl-C or --once; 1 if there is no database; 2 for a usage error or a --config file that will
not do
"""


def register_cli(sub) -> argparse.ArgumentParser:
    """Add `watch` to the ground station's subcommands."""
    p = sub.add_parser(
        "watch", help="follow the flight live in the terminal, from the database",
        description=("Show the latest position, altitude, ascent rate, battery, temperatures, mode and "
                     "phase, the link (frames per station, signal) and missing records, and musings as "
                     "they complete, read from the database `listen` writes. Run it beside `listen`, or "
                     "alone on a replayed database. Redraws the screen in a terminal; with --plain, or "
                     "when standard output is not a terminal, appends lines instead."),
        epilog=WATCH_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", metavar="FILE", help="the ground database (as given to listen --db); required, here "
                                                "or as [database] path in --config")
    p.add_argument("--interval", type=positive_number("seconds"), default=1.0, metavar="SECONDS",
                   help="seconds between refreshes (default 1)")
    p.add_argument("--plain", action="store_true", help="append plain lines instead of redrawing")
    p.add_argument("--window", type=positive_number("minutes"), default=5.0, metavar="MINUTES",
                   help="link quality over the last this many minutes (default 5)")
    p.add_argument("--musings", type=int, default=5, metavar="N", help="latest musings shown on screen (default 5)")
    p.add_argument("--once", action="store_true", help="show the view once and exit")
    predict.add_chase_arguments(p, "--from")
    p.set_defaults(func=cmd_watch)
    return p


def cmd_watch(args: argparse.Namespace, stop: threading.Event | None = None, out: TextIO | None = None) -> int:
    if not Path(args.db).is_file():
        print(f"error: no database at {args.db} (start `listen --db {args.db}` first)", file=sys.stderr)
        return 1
    try:
        chase = predict.chase_from_args(args, "--from")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        watch(args.db, stop or threading.Event(), out or sys.stdout, args.interval,
              plain=True if args.plain else None, window_s=args.window * 60, musings=args.musings, once=args.once,
              chase=chase)
    except StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a watcher ends: a clean exit, not a traceback
    return 0
