"""The station network's shared ground: message format version, topic names, the
reconnect policy and the broker credentials (docs: the package's docstring)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from stratoecho.backoff import Backoff
from stratoecho.secret_files import secret_file_problem

from ..store import utc_now

FORMAT_VERSION = 1
DEFAULT_PREFIX = "stratoecho"
UNKNOWN_PAYLOAD = "unknown"
ONLINE, OFFLINE = "online", "offline"
POLL_S = 0.1  # the network loop's select() wait: how late a buffered frame may leave
_NOT_A_LEVEL = re.compile(r"[/+#\x00]")


# --------------------------------------------------------------------------- policy and topics

@dataclass(frozen=True)
class Reconnect:
    """How hard to try reaching the broker: waits grow from `initial_s`, doubling, up to
    `max_s`, with up to `initial_s` of jitter so stations do not return in lockstep."""

    initial_s: float = 1.0
    max_s: float = 60.0
    connect_timeout_s: float = 10.0  # TCP connect until the broker's CONNACK
    keepalive_s: int = 30  # a broker that vanishes without closing is noticed after 1.5 x this

    def wait(self):
        """The tenacity wait strategy."""
        return Backoff(self.initial_s, 2.0, self.max_s, jitter_s=self.initial_s).wait


def topic_level(name: str, what: str = "station") -> str:
    """`name` if it can be one MQTT topic level; ValueError naming `what` otherwise."""
    if not name or _NOT_A_LEVEL.search(name):
        raise ValueError(f"{what} {name!r} cannot be an MQTT topic level: it must be non-empty, without / + # or NUL")
    return name


def check_prefix(prefix: str) -> str:
    """A topic prefix: one or more levels, no wildcards."""
    for level in prefix.split("/"):
        topic_level(level, "topic prefix level")
    return prefix


def payload_level(callsign: str | None) -> str:
    """A callsign as a topic level (characters MQTT reserves become '_'); `unknown` for none."""
    return _NOT_A_LEVEL.sub("_", callsign) if callsign else UNKNOWN_PAYLOAD


def frames_topic(prefix: str, payload: str, station: str) -> str:
    return f"{prefix}/{payload}/frames/{station}"


def records_topic(prefix: str, payload: str, station: str) -> str:
    return f"{prefix}/{payload}/records/{station}"


def status_topic(prefix: str, station: str) -> str:
    return f"{prefix}/status/{station}"


def position_topic(prefix: str, station: str) -> str:
    return f"{prefix}/position/{station}"


def _iso(received_at: str | datetime | None) -> str:
    if received_at is None:
        return utc_now()
    if isinstance(received_at, datetime):
        if received_at.tzinfo is None:
            received_at = received_at.replace(tzinfo=timezone.utc)
        return received_at.astimezone(timezone.utc).isoformat(timespec="milliseconds")
    return str(received_at)


# --------------------------------------------------------------------------- credentials

@dataclass(frozen=True)
class BrokerAuth:
    """How a client proves itself to the broker and checks the broker: a user name and password
    (read from a file, never given on a command line, where `ps` shows it), and TLS against
    `ca_file` (None: the system's certificate authorities) when `tls` is set."""

    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None

    @classmethod
    def from_files(cls, username: str | None, password_file: str | Path | None, ca_file: str | Path | None,
                   tls: bool) -> BrokerAuth:
        """ValueError naming the file or option that will not do."""
        password = None
        if password_file is not None:
            try:
                st = Path(password_file).stat()
                password = Path(password_file).read_text(encoding="utf-8").rstrip("\r\n")
            except (OSError, UnicodeDecodeError) as e:
                raise ValueError(f"{password_file}: cannot read the broker password: {e}") from None
            if why := secret_file_problem(password_file, st, "broker password file"):
                raise ValueError(why)
            if not password:
                raise ValueError(f"{password_file}: empty; expected the broker password on its first line")
            if username is None:
                raise ValueError("a broker password file needs the user name too (--mqtt-user)")
        if ca_file is not None and not Path(ca_file).is_file():
            raise ValueError(f"{ca_file}: no such certificate file")
        return cls(username, password, tls or ca_file is not None, None if ca_file is None else str(ca_file))
