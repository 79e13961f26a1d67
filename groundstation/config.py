"""The ground station's configuration (`listen --config FILE`, TOML): one typed `GroundConfig`,
validated with the file and key named in every error, as the payload's is (payload/config.py on
stratoecho/config.py). A part that reads a section declares it beside itself (`[keys]` in
link/keys.py, `[proxy]` in api_proxy/config.py, the SondeHub and SSDV tables in
exports/settings.py, each source's `[source]` keys in sources/); this module puts them together,
and no part imports it. config/ground.toml is an annotated example; docs/ground.md, "The
station's configuration file", describes every section.

Every `listen` flag is an override of one key (`FLAGS`): flags > file > defaults. `listen` leaves
a flag it was not given None (`unset_listen_defaults`), so a flag given with its default's value
still overrides the file; the defaults live here, in the sections. With no file, the flags alone
make the configuration, as they always did.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from stratoecho.config import ConfigError, Section, load_toml, read_toml

from .api_proxy.config import ProxySection
from .exports.settings import SondeHubSection, SsdvSection
from .frame_quota import MB, SOURCE_QUOTA_BYTES, TOTAL_QUOTA_BYTES, FrameQuota
from .link.keys import KEY_FLAGS, KeysSection
from .network.settings import NetworkSection
from .network.topics import topic_level
from .predict import DEFAULT_BURST_ALT_M, DEFAULT_DESCENT_RATE_M_S
from .sources.registry import HostPort, SourceSettings, source_from_flags, source_settings
from .web.settings import DashboardSection


class DatabaseSection(Section):
    path: Path | None = Field(None, description="the SQLite database (created if missing; safe to reuse); required")
    source_quota_mb: float = Field(SOURCE_QUOTA_BYTES / MB, ge=0, description="megabytes of frames kept from one "
                                   "source (a UDP sender's address, a serial device)")
    quota_total_mb: float = Field(TOTAL_QUOTA_BYTES / MB, ge=0, description="megabytes of frames kept from all")

    @model_validator(mode="after")
    def _total_holds_one(self) -> DatabaseSection:
        if self.quota_total_mb < self.source_quota_mb:
            raise ValueError(f"quota_total_mb {self.quota_total_mb:g} (--quota-total-mb) is below source_quota_mb "
                             f"{self.source_quota_mb:g} (--source-quota-mb): all sources together hold at least "
                             "one source's")
        return self

    def frame_quota(self) -> FrameQuota:
        """What the frames table keeps (groundstation/frame_quota.py)."""
        return FrameQuota(round(self.source_quota_mb * MB), round(self.quota_total_mb * MB))


class UplinkSection(Section):
    skip_past: int | None = Field(None, ge=0, description="after losing the counter state: the payload's last "
                                  "accepted counter (needs keys.callsign)")
    tag_len: int = Field(8, ge=4, le=32, description="bytes of HMAC tag on each command: the payload's uplink.tag_len")
    mtu: int = Field(255, ge=32, le=255, description="largest uplink frame: at most the payload's radio.mtu")


class UdpFeedSection(Section):
    address: HostPort | None = Field(None, description="HOST:PORT to send each new position to (chasemapper: "
                                     "127.0.0.1:55672)")
    broadcast: bool = False
    landing: bool = Field(False, description="also send the predicted landing as CALL-LANDING")
    burst_alt_m: float = Field(DEFAULT_BURST_ALT_M, gt=0, description="for the landing, until the burst is seen")
    descent_rate_m_s: float = Field(DEFAULT_DESCENT_RATE_M_S, gt=0, description="the parachute's, at the ground")


class ExportsSection(Section):
    """What the station shares as it hears it (groundstation/exports/)."""

    sondehub: SondeHubSection = Field(default_factory=SondeHubSection)
    ssdv: SsdvSection = Field(default_factory=SsdvSection)
    udp_feed: UdpFeedSection = Field(default_factory=UdpFeedSection)


class StationSection(Section):
    """This station: its name in the network's topics, and where it is (kept in the database for the
    dashboard's map, and shared with the network)."""

    name: str | None = Field(None, description="a topic level (unset: the host name)")
    position: list[float] | None = Field(None, min_length=2, max_length=3, description="[LAT, LON] or "
                                         "[LAT, LON, ALT] (unset: exports.sondehub.position)")

    @field_validator("name")
    @classmethod
    def _a_topic_level(cls, v: str | None) -> str | None:
        return v if v is None else topic_level(v, "station")


class OutputSection(Section):
    records: Literal["text", "json", "none"] = Field(
        "text", description="each new record on standard output as text, as one JSON object a line, or none "
        "(only the final summary)")
    stats: Path | None = Field(None, description="write counts here as JSON on exit")


class LimitsSection(Section):
    duration_s: float | None = Field(None, gt=0, description="stop after this many seconds")
    until_idle_s: float | None = Field(None, gt=0, description="stop once no frame came for this many seconds")


class GroundConfig(Section):
    source: SourceSettings | None = Field(None, description="[source] kind = one registered source, and its keys")
    database: DatabaseSection = Field(default_factory=DatabaseSection)
    keys: KeysSection = Field(default_factory=KeysSection)
    uplink: UplinkSection = Field(default_factory=UplinkSection)
    exports: ExportsSection = Field(default_factory=ExportsSection)
    station: StationSection = Field(default_factory=StationSection)
    network: NetworkSection = Field(default_factory=NetworkSection)
    proxy: ProxySection = Field(default_factory=ProxySection)
    output: OutputSection = Field(default_factory=OutputSection)
    limits: LimitsSection = Field(default_factory=LimitsSection)
    dashboard: DashboardSection = Field(default_factory=DashboardSection)

    @field_validator("source", mode="wrap")
    @classmethod
    def _source_of_its_kind(cls, v, handler):
        return handler(v) if v is None else source_settings(v)

    @model_validator(mode="after")
    def _runnable(self) -> GroundConfig:
        if self.uplink.skip_past is not None and not (self.keys.flight_key and self.keys.callsign):
            raise ValueError("--uplink-skip-past needs --flight-key and --callsign (whose counter moves; in the "
                             "file: uplink.skip_past needs keys.flight_key and keys.callsign)")
        if self.exports.udp_feed.landing and self.exports.udp_feed.address is None:
            raise ValueError("--udp-feed-landing goes with --udp-feed HOST:PORT (the chase-car map's port; in the "
                             "file: exports.udp_feed.landing goes with exports.udp_feed.address)")
        return self


# --------------------------------------------------------------------------- flags as overrides


def _ssdv_upload(call: str) -> dict:
    """--ssdv-upload alone ("") takes the SondeHub uploader's callsign."""
    return {"upload": True, **({"uploader": call.strip()} if call.strip() else {})}


# listen's flag (its dest) -> the key it overrides, and how its value becomes the key's (None: as it is).
FLAGS: dict[str, tuple[tuple[str, ...], Callable | None]] = {
    "db": (("database", "path"), None),
    "source_quota_mb": (("database", "source_quota_mb"), None),
    "quota_total_mb": (("database", "quota_total_mb"), None),
    **{dest: (("keys", key), convert) for dest, (key, convert) in KEY_FLAGS.items()},
    "uplink_skip_past": (("uplink", "skip_past"), None),
    "tag_len": (("uplink", "tag_len"), None),
    "uplink_mtu": (("uplink", "mtu"), None),
    "ssdv_upload": (("exports", "ssdv"), _ssdv_upload),
    "ssdv_url": (("exports", "ssdv", "url"), None),
    "udp_feed": (("exports", "udp_feed", "address"), None),
    "udp_broadcast": (("exports", "udp_feed", "broadcast"), None),
    "udp_feed_landing": (("exports", "udp_feed", "landing"), None),
    "burst_alt": (("exports", "udp_feed", "burst_alt_m"), None),
    "descent_rate": (("exports", "udp_feed", "descent_rate_m_s"), None),
    "station": (("station", "name"), None),
    "station_position": (("station", "position"), None),
    "mqtt": (("network", "broker"), None),
    **{f"mqtt_{key}": (("network", key), None) for key in ("prefix", "user", "password_file", "ca", "tls")},
    "api_proxy": (("proxy", "enabled"), None),
    "api_config": (("proxy", "config"), None),
    "api_timeout": (("proxy", "timeout_s"), None),
    **{f"api_{key}": (("proxy", key), None) for key in ("weather_url", "define_url", "news_url")},
    "json": (("output", "records"), lambda _: "json"),
    "quiet": (("output", "records"), lambda _: "none"),  # after --json: quiet prints nothing, as ever
    "stats": (("output", "stats"), None),
    "duration": (("limits", "duration_s"), None),
    "until_idle": (("limits", "until_idle_s"), None),
    **{f"sondehub_{key}": (("exports", "sondehub", "frequency_mhz" if key == "frequency" else key), None)
       for key in ("uploader", "url", "position", "radio", "antenna", "email", "mobile", "frequency", "modulation")},
}


def unset_listen_defaults(listen: argparse.ArgumentParser) -> None:
    """Leave every flag of `FLAGS` None when not given, on `listen` only (other commands share some
    of these flags and keep their defaults): the configuration holds the defaults, so a flag given
    is always an override, whatever its value."""
    listen.set_defaults(**{dest: None for dest in FLAGS if listen.get_default(dest) is not None})


def _put(data: dict, path: tuple[str, ...], value: object) -> None:
    for key in path[:-1]:
        data = data.setdefault(key, {})
    if isinstance(value, dict) and isinstance(data.get(path[-1]), dict):
        data[path[-1]].update(value)
    else:
        data[path[-1]] = value


def flag_overrides(args: argparse.Namespace, data: dict) -> dict:
    """The file's tables (`data`) with each flag given put over its key; ValueError naming a flag
    whose value will not do, or a source flag that needs another source."""
    for dest, (path, convert) in FLAGS.items():
        value = getattr(args, dest, None)
        if value is not None and value != []:
            _put(data, path, convert(value) if convert else value)
    source = source_from_flags(args, data.get("source"))
    if source is not None:
        data["source"] = source
    return data


def _plain(err: dict) -> str:
    """One problem with the flags: a check's own sentence (it names the flags), else the key's."""
    if err["type"] == "value_error":
        return str(err["ctx"]["error"])
    return f"{'.'.join(map(str, err['loc']))}: {err['msg']}"


def ground_config(args: argparse.Namespace) -> GroundConfig:
    """`listen`'s configuration: --config FILE (if given) with the flags over it. ConfigError naming
    the file (or "the command line") and each key that will not do, and what was expected."""
    from pydantic import ValidationError

    from stratoecho.config import describe_validation_error

    where = "the command line" if args.config is None else str(args.config)
    data = {} if args.config is None else read_toml(args.config)
    try:
        data = flag_overrides(args, data)
    except ValueError as e:  # a flag's own: said in its words, with the file it was set against
        raise ConfigError(str(e) if args.config is None else f"{where}: {e}") from e
    try:
        config = GroundConfig.model_validate(data)
    except ValidationError as e:
        if args.config is None:  # the flags alone: said as a usage error, in the flags' words
            raise ConfigError("; ".join(_plain(err) for err in e.errors())) from e
        raise ConfigError(describe_validation_error(where, e)) from e
    if config.source is None:
        raise ConfigError(f"{where}: no source: [source] kind = one of the sources, or a flag that picks one "
                          "(--udp, --serial, --replay, --gateway, --gateway-udp, --horus-udp, --lora)")
    if config.database.path is None:
        raise ConfigError(f"{where}: no database: [database] path, or --db FILE")
    return config


def load_ground_config(path: str | Path) -> GroundConfig:
    """A station's file alone (no flags), checked: what `listen --config FILE` starts from."""
    return load_toml(path, GroundConfig)


# --------------------------------------------------------------------------- serve, export, watch


def _home(config: GroundConfig, args: argparse.Namespace) -> list[float] | None:
    position = config.station.position or config.exports.sondehub.position
    return None if position is None else list(position)


def _uploader(config: GroundConfig, args: argparse.Namespace) -> str | None:
    """export's --uploader: for the pictures, the SSDV table's own receiver first."""
    ssdv = config.exports.ssdv.uploader if args.format == "ssdv" else None
    return ssdv or config.exports.sondehub.uploader


def _out(config: GroundConfig, args: argparse.Namespace) -> str | None:
    """export's --out for the uploads: the server the live uploader uses."""
    return {"sondehub": config.exports.sondehub.url, "ssdv": config.exports.ssdv.url}.get(args.format)


_CHASE = {"burst_alt": ("exports", "udp_feed", "burst_alt_m"),
          "descent_rate": ("exports", "udp_feed", "descent_rate_m_s")}

# The other commands' flags that a station's file stands in for, as FLAGS are for listen (flags >
# file > defaults): the flag's dest -> its key, or what the key's value is read from. A flag that
# repeats adds to the file's list.
FILE_KEYS: dict[str, dict[str, tuple[str, ...] | Callable]] = {
    "serve": {"db": ("database", "path"), "home": _home, **_CHASE,
              **{dest: ("dashboard", key) for dest, key in (
                  ("host", "host"), ("port", "port"), ("allow_host", "allow_hosts"), ("operator_file", "operator_file"),
                  ("tiles", "tiles"), ("tile_url", "tile_url"), ("session_hours", "session_hours"),
                  ("flight_db", "flight_dbs"), ("limit", "limits"))}},
    "export": {"db": ("database", "path"), "uploader": _uploader, "out": _out},
    "watch": {"db": ("database", "path"), "home": _home, **_CHASE},
}


def _key(config: GroundConfig, args: argparse.Namespace, key: tuple[str, ...] | Callable) -> object:
    if callable(key):
        return key(config, args)
    value: object = config
    for name in key:
        value = getattr(value, name)
    return list(value.items()) if isinstance(value, dict) else value


def station_file(command: argparse.ArgumentParser, name: str) -> None:
    """Give `name` (serve, export, watch) `--config FILE`: the station's file that `listen --config`
    reads, whose keys stand in for the flags not given (`FILE_KEYS`). The command's `func` then
    reads the file first; a file that will not do is said (the file, the key, what was expected)
    with exit status 2. Its flags' defaults stay the command's own."""
    keys = FILE_KEYS[name]
    defaults = {dest: command.get_default(dest) for dest in keys}
    command.set_defaults(**dict.fromkeys(keys))  # None: not given, so the file's key may stand in
    command.add_argument("--config", type=Path, metavar="FILE",
                         help="the station's configuration (config/ground.toml, as `listen --config` reads it): "
                              "its keys stand in for the flags not given (docs/ground.md, \"The station's "
                              "configuration file\")")
    run = command.get_default("func")

    def with_file(args: argparse.Namespace, *more, **kw) -> int:
        try:
            config = load_ground_config(args.config) if args.config is not None else None
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        for dest, key in keys.items():
            given = getattr(args, dest)
            from_file = None if config is None else _key(config, args, key)
            if isinstance(defaults[dest], list):  # repeated: the file's, then the flags'
                given = [*(from_file or []), *(given or [])]
            elif given is None:
                given = defaults[dest] if from_file is None else from_file
            setattr(args, dest, given)
        if args.db is None:
            print(f"error: no database: --db FILE{'' if config is None else f', or [database] path in {args.config}'}",
                  file=sys.stderr)
            return 2
        return run(args, *more, **kw)

    command.set_defaults(func=with_file)
