"""How records and summaries look on a terminal: pure functions, strings in and out.

Anyone can transmit, so text from the air is treated as hostile: control characters
(ANSI escapes could repaint or retitle the operator's terminal) are shown escaped.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from datetime import datetime, timezone

from stratoecho import wire

_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")  # C0 and C1, but not newline
_INDENT = " " * 10  # lines up continuation lines under the text after "HH:MM:SS  "


def clean_text(text: str) -> str:
    """Escape control characters; keep newlines, indented so a musing stays one block."""
    escaped = _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
    return escaped.replace("\n", "\n" + _INDENT)


def _clock(unix_s: int) -> str:
    return datetime.fromtimestamp(unix_s, timezone.utc).strftime("%H:%M:%S")


def _reading(value: float, unit: str) -> str:
    """A sensor value, or a dash for a sensor that had no reading (NaN)."""
    return "—" + unit.strip() if math.isnan(value) else f"{value:.1f}{unit}"


def format_record(record: wire.Telemetry | wire.Record) -> str:
    """One human-readable line (or block, for multi-line text) per record."""
    if isinstance(record, wire.Telemetry):
        t = record
        return (
            f"{clean_text(t.time)}  TELEMETRY #{t.seq} boot {t.boot}  "
            f"{t.lat:.5f},{t.lon:.5f}  {t.alt} m  {_reading(t.temp_c, '°C')}  "
            f"{_reading(t.pressure_hpa, ' hPa')}  {t.batt_mv if t.batt_mv else '—'} mV  {t.sats} sats"
        )
    return (
        f"{_clock(record.created)}  {record.kind.name} boot {record.boot} "
        f"#{record.seq}: {clean_text(record.text)}"
    )


def format_json(obj: dict) -> str:
    """One JSON object a line (a record's `as_dict()`, leaving the program); json escapes
    control characters itself."""
    return json.dumps(obj, ensure_ascii=False, sort_keys=False)


def format_summary(command: str, frames: int, records: Counter, duplicates: int,
                   errors: Counter, incomplete: int, stored: int | None = None) -> str:
    """The end-of-run summary for standard error: totals, then errors by reason."""
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(records.items())) or "none"
    new = "" if stored is None else f", {stored} new to the database"
    lines = [
        f"{command}: {frames} frames, {sum(records.values())} records ({kinds}){new}, "
        f"{duplicates} duplicate telemetry, {incomplete} records incomplete, "
        f"{sum(errors.values())} errors"
    ]
    lines += [f"  {reason}: {n}" for reason, n in sorted(errors.items(), key=lambda kv: (-kv[1], kv[0]))]
    return "\n".join(lines)
