"""SondeHub-Amateur uploader: our telemetry on the public tracker (amateur.sondehub.org).

What SondeHub documents (sondehub-infra swagger, `amateur_telemetry_format`) and this sends:
a JSON array of objects, by HTTP PUT to https://api.v2.sondehub.org/amateur/telemetry,
optionally gzip-compressed (Content-Encoding: gzip)::

    software_name "stratoecho", software_version, uploader_callsign,
    uploader_position [lat, lon, alt], uploader_radio, uploader_antenna   the station, where given
    time_received  when we heard it, YYYY-MM-DDTHH:MM:SS.ffffffZ
    payload_callsign, datetime (the sentence's GPS time with its date, same format),
    lat, lon, alt (m), sats, batt (V),
    temp (°C), pressure (hPa)         only when the sensor had a reading
    frequency (MHz), modulation       the receiver's, when given
    snr (dB), rssi (dBm)              the frame's own signal, when the radio reported it
    raw                               when given
    comment                           the last musing heard (`musing_comment`), when given
    historical true                   for data uploaded after the fact (`export`)
    dev "true"                        test uploads: SondeHub does not store them

and the station itself (`station.py`) by PUT to /amateur/listeners at start and every
`listener_interval_s`, when it has a position (never with `dev`: that endpoint has no test mode).

200 is stored; 202 is stored with data warnings (logged). SondeHub merges the same
(payload_callsign, datetime) from many receivers, so sending a position again after a
failure is harmless; this uploader still never queues the same pair twice itself.

Delivery is the shared uploader's (`uploader.py`): `add()` builds the object in the caller's
thread and queues it; one background thread sends batches, retrying 5xx and
no answer with back-off, never 4xx. One bad position never holds up the others: SondeHub's
handler fails a whole request (500) when one object in it is malformed, so a batch refused or
still failing is split down to the position the server will not take, which is dropped
(`sondehub_position_dropped`), while an outage costs a bounded number of requests a round.
`close()` sends what is queued until its deadline; what is left is logged (every row is in
the database: `export --format sondehub` uploads them later).
"""

from __future__ import annotations

import gzip as gzip_module
import json
import math
import time
import urllib.parse
from collections.abc import Hashable
from dataclasses import dataclass

import structlog

from groundstation.link.heard import Heard
from stratoecho import __version__, wire
from stratoecho.wire.musing_sentence import fold_text

from .base import has_fix, iso_z, received_time, telemetry_datetime
from .station import SOFTWARE_NAME, Station, listener_object
from .uploader import BODY_LOG_CHARS, Answer, BatchUploader, Outcome, UploadPolicy, check_seconds, check_url

log = structlog.get_logger(__name__)

DEFAULT_URL = "https://api.v2.sondehub.org/amateur/telemetry"
DEFAULT_METHOD = "PUT"  # what the SondeHub API documents for /amateur/telemetry
COMMENT_CHARS = 300  # the longest musing put in a position's comment


@dataclass(frozen=True)
class SondeHubPolicy(UploadPolicy):
    """The shared uploader's timings and limits (`uploader.UploadPolicy`), and the station's."""

    listener_interval_s: float = 6 * 3600.0  # the station upload again; SondeHub forgets a station after ~12 h
    listener_retry_s: float = 600.0  # ...or this soon after one that failed

    def __post_init__(self) -> None:
        super().__post_init__()
        check_seconds(self, ("listener_interval_s", "listener_retry_s"))


def sondehub_object(heard: Heard, station: Station, *, software_version: str = __version__,
                    frequency_mhz: float | None = None, modulation: str | None = None,
                    snr_db: float | None = None, rssi_dbm: float | None = None, raw: str | None = None,
                    comment: str | None = None, historical: bool = False, dev: bool = False) -> dict | None:
    """One position as a SondeHub-Amateur telemetry object; None without a fix (SondeHub
    must never get a zero or made-up position). The signal is the one given, else the one
    the frame was heard with (`heard.snr_db`, `heard.rssi_dbm`). WireError for a bad time."""
    t = heard.record
    if not has_fix(t):
        return None
    received = received_time(heard)
    obj: dict = {
        "software_name": SOFTWARE_NAME,
        "software_version": software_version,
        **station.telemetry_fields(),
        "time_received": iso_z(received, micro=True),
        "payload_callsign": t.callsign,
        "datetime": iso_z(telemetry_datetime(t.time, received), micro=True),
        "lat": float(t.lat),
        "lon": float(t.lon),
        "alt": float(t.alt),
        "sats": t.sats,
    }
    if t.batt_mv != 0:  # 0: no current reading, never a flat battery
        obj["batt"] = round(t.batt_mv / 1000.0, 3)
    if not math.isnan(t.temp_c):
        obj["temp"] = float(t.temp_c)
    if not math.isnan(t.pressure_hpa):
        obj["pressure"] = float(t.pressure_hpa)
    if frequency_mhz is not None:
        obj["frequency"] = float(frequency_mhz)
    if modulation:
        obj["modulation"] = str(modulation)
    snr_db = heard.snr_db if snr_db is None else snr_db
    rssi_dbm = heard.rssi_dbm if rssi_dbm is None else rssi_dbm
    if snr_db is not None and math.isfinite(snr_db):
        obj["snr"] = float(snr_db)
    if rssi_dbm is not None and math.isfinite(rssi_dbm):
        obj["rssi"] = float(rssi_dbm)
    if raw:
        obj["raw"] = raw
    if comment:
        obj["comment"] = comment
    if historical:
        obj["historical"] = True
    if dev:
        obj["dev"] = "true"
    return obj


def musing_comment(record: wire.Record) -> str:
    """A musing as a position's `comment`, which the SondeHub tracker shows in the payload's popup
    as HTML, unescaped: folded to plain ASCII as gateways carry it, without < > &."""
    text = fold_text(record.text).replace("<", "(").replace(">", ")").replace("&", "and")
    text = text if len(text) <= COMMENT_CHARS else text[:COMMENT_CHARS - 3].rstrip() + "..."
    return f"musing {record.boot}.{record.seq}: {text}"


class SondeHubUploader(BatchUploader[dict]):
    """Exporter to SondeHub-Amateur; see the module docstring. Counters in `stats`.

    `station`: the receiving station (`Station`), or only its callsign. A position's comment is the
    last musing the listener heard of its flight before it (`Heard.last_musing`, `musing_comment`)."""

    name = "sondehub"
    item_noun = "position"
    drop_hint = "it is in the database; `export --format sondehub` can try it again"
    unsent_hint = ("they are in the database: `python -m groundstation export --format sondehub` "
                   "uploads them later (SondeHub merges duplicates)")

    def __init__(self, station: Station | str, url: str = DEFAULT_URL, *, method: str = DEFAULT_METHOD,
                 gzip: bool = True, policy: SondeHubPolicy | None = None, frequency_mhz: float | None = None,
                 modulation: str | None = None, historical: bool = False, dev: bool = False,
                 software_version: str = __version__, listener_url: str | None = None) -> None:
        self.station = station if isinstance(station, Station) else Station(station)
        check_url(url, "SondeHub", DEFAULT_URL)
        method = method.upper()
        if method not in ("PUT", "POST"):
            raise ValueError(f"method {method!r}: use PUT (what SondeHub documents) or POST")
        if frequency_mhz is not None and not (math.isfinite(frequency_mhz) and frequency_mhz > 0):
            raise ValueError(f"frequency {frequency_mhz!r} MHz: give the receiver's frequency in MHz, e.g. 434.2")
        super().__init__(url, method=method, policy=policy or SondeHubPolicy(),
                         user_agent=f"{SOFTWARE_NAME}-{software_version}")
        self.policy: SondeHubPolicy
        self.uploader_callsign = self.station.callsign
        self.gzip = gzip
        # /amateur/telemetry's sibling, so a local or test server gets both uploads
        self.listener_url = listener_url or urllib.parse.urljoin(url, "listeners")
        self._object_args = dict(station=self.station, software_version=software_version,
                                 frequency_mhz=frequency_mhz, modulation=modulation, historical=historical, dev=dev)
        self._listener = (listener_object(self.station, software_version)
                          if self.station.position is not None and not dev and not historical else None)
        self._listener_due = time.monotonic() if self._listener is not None else float("inf")
        self._listener_tried = False
        if self._listener is None and not (dev or historical):
            log.info("sondehub_listener_off", uploader=self.uploader_callsign,
                     why="no station position: the station is not shown on SondeHub's map")
        self._start()

    def add(self, heard: Heard) -> None:
        try:
            obj = sondehub_object(heard, **self._object_args, comment=heard.last_musing)
        except ValueError as e:  # WireError is one: a time that is not HH:MM:SS
            self.stats["skipped_invalid"] += 1
            log.warning("sondehub_skipped", reason=str(e), boot=heard.record.boot, seq=heard.record.seq)
            return
        if obj is None:
            self.stats["skipped_no_fix"] += 1
            return
        self._enqueue(obj)  # never the same (payload_callsign, datetime) twice

    # ------------------------------------------------------------------ the shared uploader's questions

    def _key(self, obj: dict) -> Hashable:
        return obj["payload_callsign"], obj["datetime"]  # SondeHub merges on these

    def _describe(self, obj: dict) -> dict:
        return {"payload_callsign": obj["payload_callsign"], "datetime": obj["datetime"]}

    def _encode(self, batch: list[dict]) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(batch, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        if self.gzip:
            return gzip_module.compress(body), {"Content-Encoding": "gzip"}
        return body, {}

    def _log_sent(self, batch: list[dict], answer: Answer) -> None:
        if answer.status == 202:  # stored, but SondeHub found something to say about the data
            self.stats["batches_with_warnings"] += 1
            log.warning("sondehub_data_warnings", items=len(batch), body=answer.body[:BODY_LOG_CHARS])
        else:
            super()._log_sent(batch, answer)

    def _chore_due(self) -> float:
        return self._listener_due

    def _chore(self, closing: bool) -> None:
        """The station on SondeHub's map; again in `listener_interval_s`, or sooner after a failure.
        Closing, only a station never uploaded yet (a short run) is worth the time."""
        if closing and self._listener_tried:
            return
        assert self._listener is not None
        self._listener_tried = True
        body = json.dumps(self._listener, ensure_ascii=False).encode("utf-8")
        answer = self._post(self.listener_url, body, {}, "PUT")  # the only method it documents
        ok = answer.outcome is Outcome.SENT
        self.stats["listener_uploads" if ok else "listener_failures"] += 1
        if ok:
            log.info("sondehub_listener_uploaded", uploader=self.uploader_callsign, status=answer.status)
        else:
            log.warning("sondehub_listener_failed", outcome=answer.outcome.value, status=answer.status,
                        url=self.listener_url, body=answer.body[:BODY_LOG_CHARS])
        wait = self.policy.listener_interval_s if ok else self.policy.listener_retry_s
        with self._cond:
            self._listener_due = time.monotonic() + wait
