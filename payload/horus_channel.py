"""[radio.horus]: Horus Binary 4FSK on a channel of its own, beside the LoRa channels (docs/protocol.md,
"Horus Binary v3"); its own section so the radio's configuration stays one sitting long."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from stratoecho import bandplan
from stratoecho.config import Section


class HorusChannel(Section):
    """Horus Binary 4FSK on a channel of its own (docs/protocol.md, "Horus Binary v3"): after every
    `every`-th position sentence the SX127x keys the same position as a Horus packet at 100 baud,
    which horus-gui and horusdemodlib decode from any SSB receiver, and goes back to LoRa."""

    frequency_mhz: float = Field(gt=0, description="the Horus carrier (tone 0): listeners tune their SSB receiver "
                                 "about 1.5 kHz below it")
    format: Literal["v3", "v2"] = Field("v3", description="v3 (the callsign on the air, no payload id needed); v2 "
                                        "only with a payload id Project Horus gave out")
    payload_id: int | None = Field(None, ge=0, le=0xFFFF, description="v2: the payload id from Project Horus' list")
    every: int = Field(1, ge=1, description="key the Horus packet after every Nth position sentence")

    BANDWIDTH_HZ: ClassVar[float] = 1000.0  # four tones 244 Hz apart at 100 baud, with their sidebands

    @model_validator(mode="after")
    def _v2_needs_an_id(self):
        if self.format == "v2" and self.payload_id is None:
            raise ValueError("[radio.horus] format = \"v2\" needs the payload_id Project Horus gave out "
                             "(or fly v3, which needs none)")
        return self


def check_horus_channel(h: HorusChannel, radio) -> None:
    """ValueError when `radio` (a RadioSection) cannot key `h` where it asks: not an SX127x, out of
    the band plan, or over one of its LoRa channels."""
    if radio.kind != "sx127x":
        raise ValueError(f"[radio.horus]: a {radio.kind} radio cannot key 4FSK; the SX127x steps its synthesiser "
                         "for it (or leave [radio.horus] out)")
    if radio.band_plan not in bandplan.OWN_RULES:
        try:
            bandplan.check(bandplan.rule(radio.band_plan), h.frequency_mhz, h.BANDWIDTH_HZ, radio.erp_mw)
        except bandplan.BandPlanError as e:
            raise ValueError(f"[radio.horus]: {e}") from None
    for name, other in (("the radio's own channel", radio.lora_settings()), ("[radio.pictures]", radio.pictures_settings())):
        if other is None or not other.frequency_mhz:
            continue
        if abs(h.frequency_mhz - other.frequency_mhz) * 1e6 < (other.bandwidth_hz + h.BANDWIDTH_HZ) / 2:
            raise ValueError(f"[radio.horus] frequency_mhz {h.frequency_mhz:g} overlaps {name} at "
                             f"{other.frequency_mhz:g} MHz: give Horus a channel of its own")
