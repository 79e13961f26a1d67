"""The API's answers: what each GET /api/... returns, built from typed rows
(`store.GroundReader`) into the JSON the page reads; the commands the operator may queue as
the wire package declares them (`commands_json`, GET /api/commands), and those POST
/api/commands takes, made by the same declaration (`parse_command`)."""

from __future__ import annotations

import bisect
import math
from datetime import datetime, timedelta, timezone

from stratoecho import geo
from stratoecho.wire.commands import Command, PowerMode, operator_command, operator_commands, required_fields
from stratoecho.wire.sentence import telemetry_datetime

from .. import predict
from ..exports.base import utc_time
from ..store import ANNOUNCED, GroundReader, OutboxRow, RecordRow, SentenceHeard, TelemetryRow, utc_now

LINK_MINUTES = 720  # per-minute link statistics cover the last 12 hours heard
# A frame heard more than this after the server's clock is no minute of the flight: a station's
# wrong clock, stored before the aggregator bounded them (station_limits). A day, not minutes:
# the machines of a field network may be minutes apart, never a day.
FUTURE_S = 86_400
MISSING_RANGES = 20  # ranges of missing seqs listed per stream (the count covers all)


# --------------------------------------------------------------------------- reading


def _finite(value):
    """JSON has no NaN or infinity: a health field that held one reads as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def sentence_time(hms: str, received_at: str) -> str:
    """A telemetry sentence's HH:MM:SS as a full UTC time (ISO), dated nearest to when it was
    received (stratoecho.wire.sentence.telemetry_datetime); `received_at` itself if either is
    unreadable."""
    try:
        return telemetry_datetime(hms, utc_time(received_at)).isoformat()
    except (ValueError, OverflowError):  # WireError too; a date at the calendar's end
        return received_at


def _holes(seqs: list[int], last_known: int) -> tuple[int, list[list[int]]]:
    """Missing numbers between the first of sorted `seqs` and `last_known`: (count, first ranges)."""
    count, ranges = 0, []
    for prev, nxt in zip(seqs, [*seqs[1:], last_known + 1]):
        if nxt > prev + 1:
            count += nxt - prev - 1
            if len(ranges) < MISSING_RANGES:
                ranges.append([prev + 1, nxt - 1])
    return count, ranges


def telemetry_json(row: TelemetryRow) -> dict:
    return {**row.as_dict(), "t": sentence_time(row.time, row.received_at)}


def record_json(row: RecordRow) -> dict:
    """A record as the page reads it: `fields` where it has them, `image` (its URL) for a picture."""
    out = {"id": row.id, "kind": row.kind, "boot": row.boot, "seq": row.seq, "created": row.created,
           "text": row.text, "received_at": row.received_at, "authentic": row.authentic}
    if row.fields is not None:
        out["fields"] = _finite(row.fields)
    if row.jpeg_bytes is not None:
        out["image"] = {"url": f"/api/images/{row.boot}/{row.seq}.jpg", "bytes": row.jpeg_bytes}
    return out


def outbox_json(rows: list[OutboxRow]) -> list[dict]:
    return [{"id": r.id, "queued_at": r.queued_at, "command": r.command, "what": r.what, "sent_at": r.sent_at,
             "state": r.state, "refused": r.refused} for r in rows]


def prediction_json(landing: predict.Landing, db: GroundReader) -> dict | None:
    """/api/prediction: the landing as `predict.Prediction` has it, its UTC times, and the
    crew's numbers from the station when one was given (`station`) and from every station
    the database knows the position of (`stations`)."""
    p = landing(db.track.telemetry())
    if p is None:
        return None
    try:
        as_of = datetime.fromtimestamp(p.t_s, timezone.utc)
        landing_at = (as_of + timedelta(seconds=p.landing_in_s)).isoformat()
    except (ValueError, OverflowError, OSError):  # positions dated by a station's wrong clock (an old database)
        return None
    answer = {
        "phase": p.phase, "lat": round(p.lat, 6), "lon": round(p.lon, 6),
        "ellipse": {"semi_major_m": round(p.ellipse.semi_major_m), "semi_minor_m": round(p.ellipse.semi_minor_m),
                    "bearing_deg": round(p.ellipse.bearing_deg, 1)},
        "as_of": as_of.isoformat(), "landing_in_s": round(p.landing_in_s),
        "landing_at": landing_at,
        "burst_alt_m": round(p.burst_alt_m), "burst_seen": p.burst_seen,
        "burst_in_s": None if p.burst_in_s is None else round(p.burst_in_s),
        "vertical_rate_m_s": round(p.vertical_rate_m_s, 2), "descent_rate_m_s": round(p.descent_rate_m_s, 2),
        "descent_rate_measured": p.descent_rate_measured, "ground_alt_m": round(p.ground_alt_m), "layers": p.layers,
        "station": None,
    }
    home, latest = landing.chase.home, db.track.latest_position()
    if home is not None:
        answer["station"] = _seen_from(*home, p, latest)
    # every station that said where it is (listen --station-position, shared over the network)
    answer["stations"] = [{"name": s.name, **_seen_from(s.lat, s.lon, s.alt_m, p, latest)} for s in db.link.stations()]
    return answer


def _seen_from(lat: float, lon: float, alt: float, p: predict.Prediction, latest: TelemetryRow | None) -> dict:
    """The crew's numbers from one place: to the landing, and to the balloon with its elevation."""
    seen = {"lat": lat, "lon": lon, "alt_m": alt,
            "landing": {"distance_m": round(geo.distance_m(lat, lon, p.lat, p.lon)),
                        "bearing_deg": round(geo.bearing_deg(lat, lon, p.lat, p.lon), 1)}}
    if latest is not None:
        seen["balloon"] = {
            "distance_m": round(geo.distance_m(lat, lon, latest.lat, latest.lon)),
            "bearing_deg": round(geo.bearing_deg(lat, lon, latest.lat, latest.lon), 1),
            "elevation_deg": round(geo.elevation_deg(lat, lon, alt, latest.lat, latest.lon, latest.alt), 1)}
    return seen


def position_json(row: TelemetryRow | None) -> dict | None:
    """A position as the page takes it (the summary's launch and latest, a flight's latest)."""
    if row is None:
        return None
    return {"boot": row.boot, "seq": row.seq, "time": row.time, "lat": row.lat, "lon": row.lon, "alt": row.alt,
            "received_at": row.received_at, "t": sentence_time(row.time, row.received_at)}


def summary(db: GroundReader) -> dict:
    counts, cursor, health = db.counts(), db.newest_ids(), db.records.latest("health")
    return {
        "counts": {"frames": counts.frames, "frames_bad": counts.frames_bad, "telemetry": counts.telemetry,
                   **{f"{kind}s": counts.of(kind) for kind in ("musing", "event", "image")},
                   "health": counts.of("health")},
        "cursor": {"telemetry": cursor.telemetry, "records": cursor.records},
        "callsign": db.flight.callsign(),
        "claims": db.flight.claims(),  # which callsign is tagged, and what open sentences claim beside it
        "launch": position_json(db.track.first_position()),
        "latest": position_json(db.track.latest_position()),
        "max_alt": db.track.max_altitude(),
        "health": record_json(health) if health else None,
        "last_heard": db.link.last_heard(),
        "outbox_queued": db.outbox.waiting(),
        "modes": [m.name.lower() for m in PowerMode],  # best first, as the wire has them: the mode chart's rungs
        "server_time": utc_now(),
    }


def flight_offsets(db: GroundReader) -> dict[str, float]:
    """For each minute of reception (YYYY-MM-DDTHH:MM) that heard telemetry, the median of
    (sentence time - time heard) in seconds: what moves a minute of reception onto flight time.
    Live it is a few seconds; on a replayed or imported database it is the days in between."""
    by_minute: dict[str, list[float]] = {}
    for r in db.track.telemetry():
        if _minute(r.received_at[:16]) is None:  # not a time a minute of reception can be read from
            continue
        try:  # no zone is UTC
            heard, sent = utc_time(r.received_at), utc_time(sentence_time(r.time, r.received_at))
        except ValueError:
            continue
        by_minute.setdefault(r.received_at[:16], []).append((sent - heard).total_seconds())
    return {m: sorted(v)[len(v) // 2] for m, v in by_minute.items()}


def _minute(minute: str) -> datetime | None:
    """A minute of reception (YYYY-MM-DDTHH:MM, UTC) as a time; None for text that is not one
    (an older database may hold what a station said, whatever it was)."""
    try:
        return datetime.fromisoformat(minute + ":00").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def _on_flight_time(minute: str, offsets: dict[str, float], known: list[str]) -> str | None:
    """The minute of reception `minute` as a flight time (ISO, UTC): moved by its own offset, or
    by that of the nearest minute that heard telemetry; unmoved when none did. None where it is
    no time, or moved past the calendar's end (a station's wrong clock, in an older database)."""
    start = _minute(minute)
    if start is None:
        return None
    if not known:
        return start.isoformat()
    i = bisect.bisect_left(known, minute)
    near = min(known[max(i - 1, 0):i + 1], key=lambda k: abs((_minute(k) - start).total_seconds()))
    try:
        return (start + timedelta(seconds=offsets[near])).isoformat()
    except OverflowError:
        return None


def link(db: GroundReader) -> dict:
    """Frames and telemetry lost per minute, per station figures, and the records still missing.
    Each minute is the minute the frames were heard, with `t`, that minute on flight time (the
    sentences' own clock), where the page draws it beside the other charts; `undated_frames`
    counts those of minutes no chart can place (an older database's wrong clocks)."""
    offsets = flight_offsets(db)
    known = sorted(offsets)
    # Frames heard after the server's clock (and a day) or in minutes that are no time are left
    # out of the chart and counted (`undated_frames`): an older database's wrong clocks.
    until = (datetime.now(timezone.utc) + timedelta(seconds=FUTURE_S)).isoformat(timespec="milliseconds")
    minutes, undated = {}, db.link.frames_after(until)
    for m in db.link.frames_per_minute(LINK_MINUTES, until):
        t = _on_flight_time(m.minute, offsets, known)
        if t is None:
            undated += m.frames
            continue
        minutes[m.minute] = {"minute": m.minute, "t": t, "frames": m.frames, "bad": m.bad, "rssi_dbm": m.rssi_dbm,
                             "snr_db": m.snr_db, "telemetry": 0, "telemetry_missing": 0}
    # A sentence is one frame: the holes in its numbers are frames lost, minute by minute.
    prev: SentenceHeard | None = None
    seqs: dict[int, list[int]] = {}
    for s in db.track.sentences():
        seqs.setdefault(s.boot, []).append(s.seq)
        minute = minutes.get(s.received_at[:16])
        if minute is not None:
            minute["telemetry"] += 1
            if prev is not None and prev.boot == s.boot:
                minute["telemetry_missing"] += s.seq - prev.seq - 1
        prev = s
    heard = db.link.records_heard_per_station()
    stations = [
        {"station": s.station, "frames": s.frames, "bad": s.bad, "rssi_dbm": s.rssi_dbm, "snr_db": s.snr_db,
         "last_rssi_dbm": s.last_rssi_dbm, "last_heard": s.last_heard, "records_heard": heard.get(s.station, 0)}
        for s in sorted(db.link.station_stats(), key=lambda s: -s.frames)
    ]
    streams = {("telemetry", boot): s for boot, s in seqs.items()}
    streams.update(db.records.numbers(except_kinds=("health",)))
    return {"minutes": list(minutes.values()), "undated_frames": undated, "stations": stations,
            "missing": missing(streams, db.records.of("health"))}


def missing(streams: dict[tuple[str, int], list[int]], health: list[RecordRow]) -> list[dict]:
    """Per (kind, boot): records between the first heard and the newest known (heard, or announced
    by a health record of that boot) that never arrived."""
    announced: dict[tuple[str, int], int] = {}
    for record in health:
        for name, kind in ANNOUNCED.items():
            value = (record.fields or {}).get(name)
            key = (kind, record.boot)
            if isinstance(value, int) and key in streams:  # before the first heard: unknowable
                announced[key] = max(announced.get(key, 0), value)
    out = []
    for (kind, boot), seqs in sorted(streams.items()):
        last = max(seqs[-1], announced.get((kind, boot), 0))
        count, ranges = _holes(seqs, last)
        out.append({"kind": kind, "boot": boot, "first": seqs[0], "last": last, "heard": len(seqs),
                    "missing": count, "ranges": ranges})
    return out


# --------------------------------------------------------------------------- commands


def commands_json() -> list[dict]:
    """GET /api/commands: each command the operator may queue, by id, with what its form needs
    (stratoecho/wire/commands.py), from which the page draws the form."""
    return [{"command": cls.name(), "id": int(cls.command_id), "label": cls.form.label, "help": cls.form.help,
             "risky": cls.form.risky,
             "fields": [{"name": f.name, "label": f.label, "help": f.help, **f.as_json(),
                         "required": f.name in required_fields(cls)} for f in cls.form.fields]}
            for cls in operator_commands()]


def parse_command(body: object) -> tuple[Command, str]:
    """A command from the page's JSON, made and checked by its declaration, and the line the
    outbox shows for it. ValueError says what is wrong."""
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    cmd = operator_command(body.get("command")).from_operator(body)
    return cmd, cmd.what()
