"""The `[exports.sondehub]` and `[exports.ssdv]` sections of the station's configuration
(groundstation/config.py): what `station_from_config` and `ssdv_from_config` read; listen's
--sondehub-* and --ssdv-* flags override them."""

from __future__ import annotations

from pydantic import Field

from stratoecho.config import Section


class SondeHubSection(Section):
    uploader: str | None = Field(None, description="your callsign as the uploader: turns the upload on")
    url: str | None = Field(None, description="SondeHub's amateur telemetry endpoint (unset: the public one)")
    position: tuple[float, float, float] | None = Field(None, description="[LAT, LON, ALT] of the station: shown "
                                                         "on SondeHub's map")
    radio: str | None = None
    antenna: str | None = None
    email: str | None = Field(None, description="a contact for SondeHub's admins (not shown)")
    mobile: bool = Field(False, description="the station moves: drawn as a chase car")
    frequency_mhz: float | None = Field(None, gt=0, description="the receiver's frequency (unset: the HAT's)")
    modulation: str = "LoRa"


class SsdvSection(Section):
    upload: bool = Field(False, description="upload each SSDV picture packet heard to the SSDV server")
    uploader: str | None = Field(None, description="the receiver's callsign (unset: exports.sondehub.uploader)")
    url: str | None = Field(None, description="the SSDV server's packets endpoint (unset: the public one)")
