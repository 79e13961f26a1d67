"""Several ground stations, one flight: stations share what they hear over MQTT, and one
aggregator merges it into the database the dashboard reads.

Topics (``PREFIX`` is ``stratoecho`` unless told otherwise)::

    PREFIX/PAYLOAD/frames/STATION    QoS 1   one raw frame a message, as the station heard it
    PREFIX/PAYLOAD/records/STATION   QoS 1   a record the station decoded itself (optional;
                                             the aggregator refuses them: see "Trust")
    PREFIX/status/STATION            QoS 1   retained "online"; "offline" on a clean close, or
                                             the broker's last will when the station vanishes
    PREFIX/position/STATION          QoS 1   retained: where the station is (listen
                                             --station-position), for the crew's distances

``PAYLOAD`` is the callsign of the last telemetry sentence the station heard (or the one it
was told), ``unknown`` before it heard any: fragments do not carry it. Messages are JSON::

    frames:  {"v": 1, "id": "SESSION:N", "station": ..., "received_at": ISO 8601 UTC,
              "hex": the frame, "rssi_dbm": float|null, "snr_db": float|null, "origin": str|null}
    records: {"v": 1, "id": "SESSION:N", "station": ..., "received_at": ...,
              "record": Record.as_dict() or Telemetry.as_dict()}
    position: {"v": 1, "station": ..., "lat": degrees, "lon": degrees, "alt_m": metres, "at": ISO 8601 UTC}

The aggregator counts a shared record and refuses it (see "Trust"); `heard.record_from_json`
reads one back into the typed record it came from, for tools that want a station's own view.
A ``received_at`` or ``at`` that is no ISO 8601 time, or lies outside a day before to five
minutes after the aggregator's clock, refuses its message (``bad date``; `station_limits`).

``id`` is unique per publisher session (a random SESSION, then a counter), so the aggregator
can drop the copies at-least-once delivery makes.

Raw frames, not records: a record cut into k-of-n fragments may be heard in part by one
station and in part by another, so neither can rebuild it alone. The aggregator feeds every
station's frames into ONE `FrameDecoder`, and the union completes it.

Trust. No station is believed on its word. The aggregator builds records only from raw frames
it decodes itself (a decoded record a station publishes is counted and refused). Our own
frames (record fragments, window cues) vouch for themselves: with the flight's downlink key
(`--downlink-key`, or `--flight-key`) one whose tag checks counts at once, from any station,
and one whose tag fails never counts, whatever number of stations send it (stored as their
claim). Frames anyone can make (UKHAS and HABpack sentences, SSDV) count once vouched for:
heard by a station the aggregator was told to trust (`--trust`), or by `quorum` different
stations (default 2) sending the same bytes. Until then a frame is stored as that station's
claim (the frames table, attributed to it) and held; stations making frames up, alone or
together, cannot put a record in the flight's database, and alone not even a position. Which station a frame
came from is the topic's last level: the broker must let each station's user write only its
own topics (mosquitto: an acl_file with ``pattern write PREFIX/+/frames/%u``), and speak TLS
with a password per station (`BrokerAuth`; docs/ground.md has a mosquitto configuration).

Limits. A login is no licence to use up the aggregator: each station's frames pass its own
rate limit, its claims held in memory are capped (a flood forgets its own first) and the frames
stored from it have a quota in bytes, as have all stations' together (`station_limits`;
docs/ground.md, "What a station is trusted with").

Delivery. `StationPublisher.publish_frame` only appends to a bounded buffer and returns; one
thread of the publisher owns the MQTT client, connects (tenacity back-off), publishes at QoS 1
and keeps each message until the broker acknowledges it, re-sending after a reconnect. A full
buffer drops its oldest frame (counted, logged once): the station's own database still holds
every frame. The `Aggregator` holds a persistent session (fixed client id, clean_session off)
and acknowledges a message only once it is committed to SQLite, so a broker run with
``persistence true`` keeps frames for it while it or the broker restarts.

The package, in the order a message travels: `topics` (message format, topic names,
reconnect policy, broker credentials), `session` (one MQTT client on one thread),
`publisher` (the station side), `aggregator` (the merging side), `cli` (`aggregate` and the
station options of `listen`).
"""

from __future__ import annotations

from .aggregator import Aggregator
from .cli import add_publish_arguments, cmd_aggregate, default_station, format_aggregate_summary, register_cli
from .publisher import StationPublisher
from .topics import BrokerAuth, Reconnect, status_topic

__all__ = ["Aggregator", "BrokerAuth", "Reconnect", "StationPublisher", "add_publish_arguments", "cmd_aggregate",
           "default_station", "format_aggregate_summary", "register_cli", "status_topic"]
