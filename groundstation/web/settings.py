"""The `[dashboard]` section of the station's configuration (groundstation/config.py): what
`serve --config FILE` reads beside `[database] path` and `[station] position`; each key has the
`serve` flag of the same meaning, which overrides it."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from stratoecho.config import Section

from .access import SESSION_S
from .hosts import check_name
from .limits import parse_limit
from .maps import check_tile_url


class DashboardSection(Section):
    host: str = Field("127.0.0.1", description="the address to listen on (--host; 0.0.0.0: the field network too)")
    port: int = Field(8080, ge=0, le=65535, description="the TCP port (--port; 0 picks a free one)")
    allow_hosts: list[str] = Field(default_factory=list, description="names the dashboard answers to besides "
                                   "its addresses (--allow-host, e.g. chase-laptop.local)")
    operator_file: Path | None = Field(None, description="the operator password file (--operator-file)")
    tiles: Path | None = Field(None, description="the region's PMTiles or MBTiles (--tiles)")
    tile_url: str | None = Field(None, description="a raster tile server's {z}/{x}/{y} template (--tile-url)")
    session_hours: float = Field(SESSION_S / 3600, gt=0, le=24 * 7, description="how long an operator login "
                                 "lasts (--session-hours)")
    flight_dbs: list[Path] = Field(default_factory=list, description="other flights' databases kept elsewhere "
                                   "(--flight-db)")
    limits: dict[str, int | float] = Field(default_factory=dict, description="caps and deadlines by name (--limit "
                                     "NAME=VALUE; docs/ground.md, \"Limits\")")

    @field_validator("allow_hosts")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        return [check_name(name) for name in v]

    @field_validator("tile_url")
    @classmethod
    def _template(cls, v: str | None) -> str | None:
        return v if v is None else check_tile_url(v)

    @field_validator("limits")
    @classmethod
    def _limits(cls, v: dict[str, int | float]) -> dict[str, int | float]:
        return dict(parse_limit(f"{name}={value}") for name, value in v.items())
