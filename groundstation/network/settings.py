"""`[network]` of the station's configuration (groundstation/config.py): the broker a station
publishes every frame it hears to, and how it signs in there; listen's --mqtt* flags override
it. `publisher_from_config` makes the station's publisher from it."""

from __future__ import annotations

from pydantic import Field, field_validator

from stratoecho.config import Section

from ..sources.registry import HostPort
from .publisher import StationPublisher
from .topics import DEFAULT_PREFIX, BrokerAuth, check_prefix


class NetworkSection(Section):
    broker: HostPort | None = Field(None, description="MQTT broker to publish every frame heard to")
    prefix: str = Field(DEFAULT_PREFIX, description="first topic level(s); must match the aggregator's")
    user: str | None = None
    password_file: str | None = Field(None, description="the broker password's file (its first line)")
    ca: str | None = Field(None, description="the certificate authority that signed the broker's (implies tls)")
    tls: bool = False

    @field_validator("prefix")
    @classmethod
    def _a_topic_prefix(cls, v: str) -> str:
        return check_prefix(v)  # ValueError naming what a prefix may hold

    def broker_auth(self) -> BrokerAuth | None:
        """How the station signs in (None: as anyone); ValueError naming the file that will not do."""
        if self.user is None and self.password_file is None and self.ca is None and not self.tls:
            return None
        return BrokerAuth.from_files(self.user, self.password_file, self.ca, self.tls)


def publisher_from_config(network: NetworkSection, station: str, callsign: str | None,
                          position: tuple[float, float, float] | None) -> StationPublisher | None:
    """The publisher `[network]` asks for (None without a broker), as station `station` for flight
    `callsign` (None: unknown until heard), at `position` if given; ValueError from `broker_auth`."""
    if network.broker is None:
        return None
    return StationPublisher(*network.broker, station, callsign, network.prefix, auth=network.broker_auth(),
                            position=position)
