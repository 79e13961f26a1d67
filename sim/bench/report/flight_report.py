"""The flight engineer's view of a bench flight: time series, a stacked-panel SVG, and
report.json sections on modes, faults, loss, energy and reboots.

Everything is read from what the ground heard (`ground.db`), plus the payload's and the
channel's own stats JSON when they exist; any of the three may be missing, and an empty
ground database is a flight with nothing delivered.

Flight time. Telemetry carries only the GPS's HH:MM:SS, records a full UTC `created`.
Telemetry is laid out in the payload's order (boot, seq), a day added whenever the time of
day jumps back by more than 12 h (midnight passed), and the day itself is chosen so the
telemetry lines up with the records' dates. Every boot shares that one axis; flight second 0
is the first telemetry heard (or the first record, when no telemetry arrived).

Link loss per minute comes from the channel's `timeline` (a list of {"t_s", "station", "in",
"delivered"}, `t_s` the minute's start in the bench world's flight seconds, which start at
launch as the first telemetry does) when there is one, else from the payload's own estimate
(the health field `loss`).

    flight_series(ground_db, channel_stats)      -> FlightSeries
    flight_svg(series, title)                    -> SVG text
    summarise(ground_db, payload_stats, channel_stats) -> {"modes", "faults", "loss", "energy", "reboots"}
    write_flight_report(out_dir)                 -> out_dir/flight.svg
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from xml.sax.saxutils import escape as xml_escape
from xml.sax.saxutils import quoteattr

from groundstation.store import GroundReader, RecordRow, StoreError, TelemetryRow
from stratoecho.charts import nice_ticks, tick_label
from stratoecho.wire import WireError, device_statuses
from stratoecho.wire.sentence import parse_hms

# ----------------------------------------------------------------------------- configuration
SVG_FILE = "flight.svg"
DAY_S = 86400
ROLLOVER_S = DAY_S / 2  # a time of day that goes back further than this has passed midnight
# A plotted line is broken where points lie further apart than this, or than GAP_BREAK_STEPS
# of the series' usual spacing (one lost health record in a 5-minute cadence is no break).
GAP_BREAK_S = 300.0
GAP_BREAK_STEPS = 2.5
UNKNOWN_MODE = "unknown"  # health records from before the payload reported its mode
# The statuses in a health record where anything but "ok" is a fault: the card's, and every
# device's (its own key, or key 27 for a maker's sensor: wire.device_statuses). Not every text
# field: mode, phase and heater ("off:warm") are states, not faults.
def _statuses(fields: dict) -> dict[str, object]:
    return {"store": fields.get("store"), **device_statuses(fields)}


PAYLOAD_ESTIMATE = "payload estimate"  # the loss series' name when it comes from health records

Point = tuple[float, float]  # (flight seconds, value)


@dataclass(frozen=True)
class Fault:
    t_s: float
    device: str  # a health device field (gps, store, ...) or "store" for a store fault event
    status: str  # the device's status, or the fault event's message without its details


@dataclass
class FlightSeries:
    """What the ground saw, against flight seconds. Points are sorted by time."""

    start_utc: datetime | None = None  # flight second 0
    end_s: float = 0.0  # the last moment anything was heard from
    altitude_m: list[Point] = field(default_factory=list)
    outside_c: list[Point] = field(default_factory=list)
    box_c: list[Point] = field(default_factory=list)  # inside the box (the battery's BME280), from health
    cpu_c: list[Point] = field(default_factory=list)  # the Pi's CPU, from health
    battery_v: list[Point] = field(default_factory=list)
    modes: list[tuple[float, str]] = field(default_factory=list)  # one per health record
    loss: dict[str, list[Point]] = field(default_factory=dict)  # per station: share of frames lost, 0..1
    loss_source: str | None = None  # "channel timeline", PAYLOAD_ESTIMATE, or None
    telemetry_t: list[float] = field(default_factory=list)  # when each telemetry sentence was made
    boots: list[int] = field(default_factory=list)
    reboots: list[tuple[float, int]] = field(default_factory=list)  # (first time seen, boot)
    faults: list[Fault] = field(default_factory=list)
    working: list[tuple[float, str]] = field(default_factory=list)  # (when, device) it was heard ok

    @property
    def start_s(self) -> float:
        """The earliest flight second anything was heard from (records may precede telemetry)."""
        times = [t for t, _ in self.modes] + self.telemetry_t + [t for t, _ in self.reboots]
        times += [f.t_s for f in self.faults]
        return min(times, default=0.0)

    def mode_intervals(self) -> list[tuple[float, float, str]]:
        """(from, to, mode), one per stretch in one mode: each health record's mode holds until
        the next record, the last until `end_s`."""
        spans: list[tuple[float, float, str]] = []
        for i, (t, mode) in enumerate(self.modes):
            end = self.modes[i + 1][0] if i + 1 < len(self.modes) else max(self.end_s, t)
            if spans and spans[-1][2] == mode:
                spans[-1] = (spans[-1][0], end, mode)
            else:
                spans.append((t, end, mode))
        return spans


# ----------------------------------------------------------------------------- reading
def _read_ground(db: Path) -> tuple[list[TelemetryRow], list[RecordRow]]:
    """(telemetry, records) in the payload's order; empty for a missing or new database.
    Read-only: a report must never create, migrate or lock the station's database."""
    if not db.exists():
        return [], []
    try:
        with GroundReader.open(db) as ground:
            return ground.track.telemetry(), ground.records.of()
    except StoreError as e:
        raise ValueError(f"cannot read the ground database: {e}") from e


def _time_of_day(text: str) -> int | None:
    try:
        h, m, s = parse_hms(text)
    except WireError:
        return None
    return h * 3600 + m * 60 + s


def _place_telemetry(rows: list[TelemetryRow], record_epochs: list[float]) -> list[float | None]:
    """Each telemetry row's time as Unix seconds (None where its time does not parse).

    Without records to date it by, the day is 1970-01-01: only differences matter then.
    """
    unwrapped: list[float | None] = []
    day, last = 0, None
    for row in rows:
        tod = _time_of_day(row.time)
        if tod is None:
            unwrapped.append(None)
            continue
        if last is not None and tod < last - ROLLOVER_S:
            day += 1
        last = tod
        unwrapped.append(day * DAY_S + tod)
    known = [u for u in unwrapped if u is not None]
    base = 0
    if known and record_epochs:
        # The midnight that best puts the telemetry where the records say the flight was.
        tele_mid, rec_mid = statistics.median(known), statistics.median(record_epochs)
        guess = math.floor((rec_mid - tele_mid) / DAY_S) * DAY_S
        base = min((guess, guess + DAY_S), key=lambda b: abs(b + tele_mid - rec_mid))
    return [None if u is None else float(base + u) for u in unwrapped]


def epoch_of(created: str) -> float | None:
    try:
        t = datetime.fromisoformat(created)
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)  # the schema says UTC
    return t.timestamp()


def placed_telemetry(ground_db: Path) -> tuple[list[tuple[TelemetryRow, float]], list[RecordRow]]:
    """The ground's telemetry as (row, Unix seconds), those whose time parses, and its records."""
    tele_rows, rec_rows = _read_ground(Path(ground_db))
    rec_epochs = [e for r in rec_rows if (e := epoch_of(r.created)) is not None]
    placed = [(r, e) for r, e in zip(tele_rows, _place_telemetry(tele_rows, rec_epochs)) if e is not None]
    return placed, rec_rows


NOT_FAULTS = (None, "ok", "starting")  # a device event's `after` that is no fault: working, or coming up


def _fault_status(detail: str) -> str:
    """A store_fault event's detail 'store write failed (FullError: disk full); running degraded'
    -> 'store write failed'."""
    rest = detail
    for stop in (" (", ";"):
        rest = rest.split(stop, 1)[0]
    return rest.strip() or "fault"


def _number(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def flight_series(ground_db: Path, channel_stats: dict | None = None) -> FlightSeries:
    """The flight's time series from the ground database (and the channel's per-minute timeline)."""
    tele_epochs, rec_rows = placed_telemetry(Path(ground_db))
    rec_epochs = [(r, e) for r in rec_rows if (e := epoch_of(r.created)) is not None]
    series = FlightSeries()
    if not tele_epochs and not rec_epochs:
        series.loss, series.loss_source = _timeline_loss(channel_stats)
        return series
    t0 = tele_epochs[0][1] if tele_epochs else min(e for _, e in rec_epochs)
    series.start_utc = datetime.fromtimestamp(t0, timezone.utc)

    first_seen: dict[int, float] = {}
    for row, e in tele_epochs:
        t = e - t0
        first_seen[row.boot] = min(first_seen.get(row.boot, t), t)
        series.telemetry_t.append(t)
        series.altitude_m.append((t, float(row.alt)))
        if row.temp_c is not None:  # NULL: the outside sensor had no reading
            series.outside_c.append((t, float(row.temp_c)))
        if row.batt_mv > 0:  # 0: no battery monitor fitted
            series.battery_v.append((t, row.batt_mv / 1000))

    estimate: list[Point] = []
    for record, e in rec_epochs:
        t = e - t0
        first_seen[record.boot] = min(first_seen.get(record.boot, t), t)
        fields = record.fields or {}  # none where schema version 1 kept none
        if record.kind == "event" and fields.get("event") == "store_fault":
            series.faults.append(Fault(t, "store", _fault_status(str(fields.get("detail", "")))))
        # A device's own event says when it failed, to the second; health says so every five minutes,
        # and a fault between two health records (an I2C sensor out for two minutes) only here.
        if record.kind == "event" and fields.get("event") == "device":
            device, after = str(fields.get("device") or "device"), fields.get("after")
            if after not in NOT_FAULTS:
                series.faults.append(Fault(t, device, str(after)))
            elif after == "ok":
                series.working.append((t, device))
        if record.kind != "health":
            continue
        mode = fields.get("mode")
        series.modes.append((t, mode.lower() if isinstance(mode, str) and mode else UNKNOWN_MODE))
        for name, points in (("box_temp_c", series.box_c), ("cpu_temp_c", series.cpu_c)):
            if (v := _number(fields.get(name))) is not None:
                points.append((t, v))
        if (loss := _number(fields.get("loss"))) is not None:
            estimate.append((t, min(max(loss, 0.0), 1.0)))
        for device, status in _statuses(fields).items():
            if isinstance(status, str) and status != "ok":
                series.faults.append(Fault(t, device, status))
            elif status == "ok":
                series.working.append((t, device))

    for name in ("altitude_m", "outside_c", "box_c", "cpu_c", "battery_v"):
        getattr(series, name).sort()
    series.telemetry_t.sort()
    series.modes.sort(key=lambda m: m[0])
    series.faults.sort(key=lambda f: (f.t_s, f.device))
    series.working.sort()
    series.boots = sorted(first_seen)
    series.reboots = [(first_seen[b], b) for b in series.boots[1:]]
    series.end_s = max([e - t0 for _, e in tele_epochs] + [e - t0 for _, e in rec_epochs])

    series.loss, series.loss_source = _timeline_loss(channel_stats)
    if not series.loss and estimate:
        series.loss, series.loss_source = {PAYLOAD_ESTIMATE: sorted(estimate)}, PAYLOAD_ESTIMATE
    return series


def _timeline(channel_stats: dict | None) -> list[dict]:
    timeline = (channel_stats or {}).get("timeline") or []
    return [m for m in timeline if isinstance(m, dict) and _number(m.get("t_s")) is not None]


def _timeline_loss(channel_stats: dict | None) -> tuple[dict[str, list[Point]], str | None]:
    per_station: dict[str, list[Point]] = {}
    for minute in _timeline(channel_stats):
        sent, got = minute.get("in") or 0, minute.get("delivered") or 0
        if sent <= 0:
            continue  # nothing on the air that minute: no loss to measure
        station = str(minute.get("station") or "channel")
        per_station.setdefault(station, []).append((float(minute["t_s"]), 1 - min(got, sent) / sent))
    for points in per_station.values():
        points.sort()
    return per_station, ("channel timeline" if per_station else None)


# ----------------------------------------------------------------------------- report.json sections
def summarise(ground_db: Path, payload_stats: dict | None, channel_stats: dict | None) -> dict:
    """report.json sections "modes", "faults", "loss", "energy" and "reboots". Times are flight
    seconds; a share is 0..1; None where nothing could say."""
    s = flight_series(ground_db, channel_stats)
    payload_stats, channel_stats = payload_stats or {}, channel_stats or {}
    return {"modes": _modes(s), "faults": _faults(s), "loss": _loss(s, payload_stats, channel_stats, ground_db),
            "energy": _energy(s, payload_stats), "reboots": _reboots(s)}


def _modes(s: FlightSeries) -> dict:
    seconds: dict[str, float] = {}
    for start, end, mode in s.mode_intervals():
        seconds[mode] = round(seconds.get(mode, 0.0) + end - start, 1)
    transitions = [{"t_s": round(t, 1), "from": prev, "to": mode}
                   for (_, prev), (t, mode) in zip(s.modes, s.modes[1:]) if mode != prev]
    return {"seconds": seconds, "transitions": transitions}


def _faults(s: FlightSeries) -> dict:
    groups: dict[tuple[str, str], dict] = {}
    for f in s.faults:
        g = groups.setdefault((f.device, f.status), {"device": f.device, "status": f.status, "count": 0,
                                                     "first_s": round(f.t_s, 1)})
        g["count"] += 1
        g["last_s"] = round(f.t_s, 1)
    for g in groups.values():  # heard working after its last fault: a flight report that said only
        # "absent (from 6 min)" read as a sensor lost for good when it was back at 9
        back = next((t for t, device in s.working if device == g["device"] and t > g["last_s"]), None)
        if back is not None:
            g["ok_again_s"] = round(back, 1)
    return {"total": len(s.faults), "by_device": list(groups.values())}


def describe_faults(by_device: list[dict]) -> str:
    """`sim report`'s faults line: "bme280 absent (from 6 min, ok again at 9 min)", each group once."""
    return ", ".join(f"{x['device']} {x['status']} (from {x['first_s'] / 60:.0f} min"
                     + (f", ok again at {x['ok_again_s'] / 60:.0f} min" if "ok_again_s" in x else "") + ")"
                     for x in by_device) or "none seen at the ground"


def _ground_frames(ground_db: Path) -> int | None:
    """Good frames the ground heard; None where it has no database (or an empty one) to say."""
    if not Path(ground_db).exists():
        return None
    with GroundReader.open(ground_db) as ground:
        return None if ground.empty else ground.counts().frames_good


def _loss(s: FlightSeries, payload_stats: dict, channel_stats: dict, ground_db: Path) -> dict:
    # Overall share: the channel counts its own drops; without it, what the payload sent
    # against what the ground decoded (which also counts frames the ground could not use).
    lost_share, source = None, None
    if (frames_in := channel_stats.get("frames_in")) and "frames_dropped" in channel_stats:
        lost_share, source = channel_stats["frames_dropped"] / frames_in, "channel"
    elif ((sent := (payload_stats.get("link") or {}).get("frames_sent"))
          and (got := _ground_frames(ground_db)) is not None):
        lost_share, source = max(0.0, 1 - got / sent), "payload sent vs ground received"
    gap = None
    for a, b in zip(s.telemetry_t, s.telemetry_t[1:]):
        if gap is None or b - a > gap["s"]:
            gap = {"s": round(b - a, 1), "from_s": round(a, 1), "to_s": round(b, 1)}
    stations = {}
    by_station: dict[str, list[dict]] = {}
    for minute in _timeline(channel_stats):
        by_station.setdefault(str(minute.get("station") or "channel"), []).append(minute)
    for name, minutes in by_station.items():
        sent_n = sum(m.get("in") or 0 for m in minutes)
        got_n = sum(m.get("delivered") or 0 for m in minutes)
        worst = max(s.loss.get(name, []), key=lambda p: p[1], default=None)
        stations[name] = {
            "in": sent_n, "delivered": got_n, "lost_share": round(1 - got_n / sent_n, 4) if sent_n else None,
            "worst_minute": {"t_s": worst[0], "lost_share": round(worst[1], 4)} if worst else None,
        }
    return {"lost_share": None if lost_share is None else round(lost_share, 4), "lost_share_from": source,
            "longest_telemetry_gap": gap, "stations": stations}


def _energy(s: FlightSeries, payload_stats: dict) -> dict:
    volts = [v for _, v in s.battery_v]
    wh = _number(payload_stats.get("energy_wh"))
    return {"energy_wh": None if wh is None else round(wh, 3),
            "battery_v_min": round(min(volts), 3) if volts else None,
            "battery_v_max": round(max(volts), 3) if volts else None}


def _reboots(s: FlightSeries) -> dict:
    return {"boots": s.boots, "count": len(s.reboots),
            "at": [{"boot": boot, "t_s": round(t, 1)} for t, boot in s.reboots]}


# ----------------------------------------------------------------------------- the picture
WIDTH = 900
LEFT, RIGHT, TOP, BOTTOM = 64, 170, 52, 44  # the right margin holds each panel's legend
PANEL_GAP = 16
MODE_BAND, FAULT_STRIP = 54, 22  # the mode panel's band and the fault ticks' strip below it
LEGEND_CHARS = 23
MODE_COLOURS = {"nominal": "#2ca02c", "low_power": "#ff9f1c", "survival": "#d62728", UNKNOWN_MODE: "#bbbbbb"}
OTHER_MODE_COLOURS = ("#9467bd", "#8c564b", "#17becf", "#e377c2")
STATION_COLOURS = ("#1f77b4", "#9467bd", "#ff7f0e", "#17becf", "#8c564b")
FAULT_COLOUR = "#d62728"
REBOOT_COLOUR = "#555555"


@dataclass
class _Line:
    label: str
    colour: str
    points: list[Point]
    key: str  # data-series attribute, for readers and tests


@dataclass
class _Canvas:
    out: list[str]
    x0: float  # minutes at the left edge
    x1: float
    ticks: list[float]

    @property
    def pw(self) -> float:
        return WIDTH - LEFT - RIGHT

    def x(self, t_s: float) -> float:
        return LEFT + (t_s / 60 - self.x0) / (self.x1 - self.x0) * self.pw


def flight_svg(series: FlightSeries, title: str) -> str:
    """Stacked panels on one flight-time axis (minutes): altitude, temperature, battery, mode
    (with fault ticks), link loss; reboots as dashed lines across them all. Self-contained:
    no scripts, no external fonts. The same series always give the same bytes."""
    panels = [
        ("altitude", "altitude (km)", 130,
         [_Line("altitude", "#1f77b4", [(t, m / 1000) for t, m in series.altitude_m], "altitude")], (0.0, None)),
        ("temperature", "temperature (°C)", 120,
         [_Line("outside", "#1f77b4", series.outside_c, "outside")]
         + ([_Line("box", "#ff7f0e", series.box_c, "box")] if series.box_c else [])
         + ([_Line("CPU", "#d62728", series.cpu_c, "cpu")] if series.cpu_c else []), (None, None)),
        ("battery", "battery (V)", 100, [_Line("battery", "#2ca02c", series.battery_v, "battery")], (None, None)),
        ("mode", "mode", MODE_BAND + FAULT_STRIP, [], None),
        ("loss", "link loss (%)", 110,
         [_Line(name, STATION_COLOURS[i % len(STATION_COLOURS)], [(t, 100 * v) for t, v in pts], name)
          for i, (name, pts) in enumerate(sorted(series.loss.items()))], (0.0, 100.0)),
    ]
    height = TOP + sum(h for _, _, h, _, _ in panels) + PANEL_GAP * (len(panels) - 1) + BOTTOM
    lo = min(series.start_s, 0.0) / 60
    hi = max(series.end_s / 60, lo + 1.0)
    ticks = nice_ticks(lo, hi, 10)
    c = _Canvas([], ticks[0], ticks[-1], ticks)
    c.out += [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">',
        f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="white"/>',
        f'<text x="{LEFT + c.pw / 2:.1f}" y="22" text-anchor="middle" font-size="14">{xml_escape(title)}</text>',
    ]
    y = TOP
    for name, label, h, lines, y_range in panels:
        c.out.append(f'<g class="panel" id="panel-{name}">')
        _frame(c, y, h, label)
        if name == "mode":
            _mode_panel(c, series, y, h)
        else:
            _line_panel(c, y, h, lines, y_range, note=_loss_note(series) if name == "loss" else None)
        c.out.append("</g>")
        y += h + PANEL_GAP
    bottom = y - PANEL_GAP
    _reboot_lines(c, series, TOP, bottom)
    for t in ticks:
        c.out.append(f'<text x="{c.x(t * 60):.1f}" y="{bottom + 16}" text-anchor="middle">'
                     f"{tick_label(t, ticks)}</text>")
    c.out.append(f'<text x="{LEFT + c.pw / 2:.1f}" y="{bottom + 34}" text-anchor="middle">flight time (min)'
                 + (f", 0 = {series.start_utc:%Y-%m-%d %H:%M:%S} UTC" if series.start_utc else "") + "</text>")
    c.out.append("</svg>")
    return "\n".join(c.out) + "\n"


def _frame(c: _Canvas, y: float, h: float, label: str) -> None:
    """The panel's vertical grid, border and y-axis title."""
    for t in c.ticks:
        x = c.x(t * 60)
        c.out.append(f'<line x1="{x:.1f}" y1="{y}" x2="{x:.1f}" y2="{y + h}" stroke="#eee"/>')
    c.out.append(f'<rect x="{LEFT}" y="{y}" width="{c.pw}" height="{h}" fill="none" stroke="#999"/>')
    mid = y + h / 2
    c.out.append(f'<text x="14" y="{mid:.1f}" text-anchor="middle" transform="rotate(-90 14 {mid:.1f})">'
                 f"{xml_escape(label)}</text>")


def _legend(c: _Canvas, y: float, entries: Sequence[tuple[str, str, str]], step: float = 15) -> None:
    """(label, colour, shape) rows in the right margin; shape 'line', 'box', 'tick' or 'none' (a note)."""
    x = LEFT + c.pw + 12
    c.out.append('<g class="legend">')
    for i, (label, colour, shape) in enumerate(entries):
        ry = y + 10 + i * step
        if shape == "line":
            c.out.append(f'<line x1="{x}" y1="{ry}" x2="{x + 16}" y2="{ry}" stroke="{colour}" stroke-width="2"/>')
        elif shape == "box":
            c.out.append(f'<rect x="{x}" y="{ry - 5}" width="16" height="10" fill="{colour}"/>')
        elif shape == "tick":
            c.out.append(f'<line x1="{x + 8}" y1="{ry - 6}" x2="{x + 8}" y2="{ry + 6}" stroke="{colour}" '
                         'stroke-width="2"/>')
        # The margin holds about 22 characters; a longer label is cut rather than clipped by the edge.
        text = label if len(label) <= LEGEND_CHARS else label[: LEGEND_CHARS - 1] + "…"
        fill = ' fill="#888"' if shape == "none" else ""
        c.out.append(f'<text x="{x + 22}" y="{ry + 4}"{fill}>{xml_escape(text)}</text>')
    c.out.append("</g>")


def _segments(points: list[Point]) -> list[list[Point]]:
    """Runs of points without a long silence between them: a line across one would invent data."""
    steps = [b[0] - a[0] for a, b in zip(points, points[1:])]
    limit = max(GAP_BREAK_S, GAP_BREAK_STEPS * statistics.median(steps)) if steps else GAP_BREAK_S
    runs: list[list[Point]] = []
    for p in points:
        if runs and p[0] - runs[-1][-1][0] <= limit:
            runs[-1].append(p)
        else:
            runs.append([p])
    return runs


def _line_panel(c: _Canvas, y: float, h: float, lines: list[_Line], y_range: tuple, note: str | None) -> None:
    values = [v for line in lines for _, v in line.points]
    if not values:
        c.out.append(f'<text x="{LEFT + c.pw / 2:.1f}" y="{y + h / 2 + 4:.1f}" text-anchor="middle" fill="#888">'
                     "no data</text>")
        return
    floor, ceil = y_range
    lo = min(values) if floor is None else min(floor, min(values))
    hi = max(values) if ceil is None else max(ceil, max(values))
    pad = (hi - lo) * 0.05 if floor is None or ceil is None else 0.0
    yt = nice_ticks(lo - (pad if floor is None else 0.0), hi + (pad if ceil is None else 0.0), 4)
    y0, y1 = yt[0], yt[-1]

    def py(v: float) -> float:
        return y + h - (v - y0) / (y1 - y0) * h

    for t in yt:
        ty = py(t)
        c.out.append(f'<line x1="{LEFT - 4}" y1="{ty:.1f}" x2="{LEFT + c.pw}" y2="{ty:.1f}" stroke="#eee"/>')
        c.out.append(f'<text x="{LEFT - 7}" y="{ty + 4:.1f}" text-anchor="end">{tick_label(t, yt)}</text>')
    for line in lines:
        runs = _segments(line.points)
        d = " ".join("M" + " L".join(f"{c.x(t):.1f} {py(v):.1f}" for t, v in run) for run in runs)
        c.out.append(f'<path class="series" data-series={quoteattr(line.key)} d="{d}" fill="none" '
                     f'stroke="{line.colour}" stroke-width="1.5" stroke-linejoin="round"/>')
        for run in runs:
            if len(run) == 1:  # a lone point draws no line: show it as a dot
                t, v = run[0]
                c.out.append(f'<circle cx="{c.x(t):.1f}" cy="{py(v):.1f}" r="2" fill="{line.colour}"/>')
    _legend(c, y, [(line.label, line.colour, "line") for line in lines]
            + ([(note, "#888", "none")] if note else []))


def _loss_note(series: FlightSeries) -> str | None:
    return {"channel timeline": "(per minute, channel)", PAYLOAD_ESTIMATE: None}.get(series.loss_source or "")


def _mode_colour(mode: str, others: list[str]) -> str:
    if mode in MODE_COLOURS:
        return MODE_COLOURS[mode]
    if mode not in others:
        others.append(mode)
    return OTHER_MODE_COLOURS[others.index(mode) % len(OTHER_MODE_COLOURS)]


def _mode_panel(c: _Canvas, series: FlightSeries, y: float, h: float) -> None:
    """A band coloured by mode in the upper part, fault ticks in a strip below it."""
    band_h = MODE_BAND
    others: list[str] = []
    seen: list[str] = []
    for start, end, mode in series.mode_intervals():
        colour = _mode_colour(mode, others)
        if mode not in seen:
            seen.append(mode)
        x0, x1 = c.x(start), c.x(end)
        c.out.append(f'<rect class="mode" data-mode={quoteattr(mode)} x="{x0:.1f}" y="{y + 1}" '
                     f'width="{max(x1 - x0, 0.5):.1f}" height="{band_h - 1}" fill="{colour}"/>')
    if not series.modes:
        c.out.append(f'<text x="{LEFT + c.pw / 2:.1f}" y="{y + band_h / 2 + 4:.1f}" text-anchor="middle" '
                     'fill="#888">no health records</text>')
    strip = y + band_h
    c.out.append(f'<line x1="{LEFT}" y1="{strip}" x2="{LEFT + c.pw}" y2="{strip}" stroke="#ccc"/>')
    c.out.append(f'<text x="{LEFT - 7}" y="{strip + 14}" text-anchor="end" fill="{FAULT_COLOUR}">faults</text>')
    for f in series.faults:
        x = c.x(f.t_s)
        c.out.append(f'<line class="fault" x1="{x:.1f}" y1="{strip + 3}" x2="{x:.1f}" y2="{strip + 17}" '
                     f'stroke="{FAULT_COLOUR}" stroke-width="1.5"><title>{xml_escape(f"{f.device}: {f.status}")}'
                     "</title></line>")
    # Modes beside the band (four rows fit), the faulty devices on one row beside the strip;
    # each tick's own tooltip names its device and status.
    _legend(c, y - 5, [(m.replace("_", " "), _mode_colour(m, others), "box") for m in seen], step=13)
    if series.faults:
        devices = ", ".join(dict.fromkeys(f.device for f in series.faults))
        _legend(c, strip + 1, [(devices, FAULT_COLOUR, "tick")])


def _reboot_lines(c: _Canvas, series: FlightSeries, top: float, bottom: float) -> None:
    for t, boot in series.reboots:
        x = c.x(t)
        c.out.append(f'<g class="reboot"><line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{bottom}" '
                     f'stroke="{REBOOT_COLOUR}" stroke-dasharray="4 3"/>'
                     f'<text x="{x:.1f}" y="{top - 8}" text-anchor="middle" fill="{REBOOT_COLOUR}">'
                     f"boot {boot}</text></g>")


# ----------------------------------------------------------------------------- the file
def _json_or_none(path: Path) -> dict | None:
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def write_flight_report(out_dir: Path) -> Path:
    """Write out_dir/flight.svg from out_dir/ground.db and out_dir/channel.json (each optional)."""
    out_dir = Path(out_dir)
    series = flight_series(out_dir / "ground.db", _json_or_none(out_dir / "channel.json"))
    when = f" ({series.start_utc:%Y-%m-%d} UTC)" if series.start_utc else ""
    path = out_dir / SVG_FILE
    tmp = path.with_suffix(".svg.tmp")
    tmp.write_text(flight_svg(series, f"stratoecho flight {out_dir.name}{when}"), encoding="utf-8")
    tmp.replace(path)
    return path
