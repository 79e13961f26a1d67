"""The payload's battery, solar panel and insulated box: a stateful model the caller steps.

    model = PowerModel(PowerPlan())
    s = model.step(10.0, outside_temp_c=w.temp_c, air_density=w.air_density_kg_m3,
                   sun_elev_deg=w.sun_elev_deg, sunlit=w.sunlit, load_w=2.5, heater_on=False)
    s.battery_v, s.soc, s.box_temp_c, s.browned_out

Battery: one Li-ion cell (or cells in parallel), 3.0-4.2 V. The load is drawn through a
regulator as constant power, so current rises as the voltage falls; under load the cell
reads OCV - I*R. In the cold the internal resistance rises (doubling every
`resistance_doubling_c` below 25 degC) and less of the charge can be got out (half of it at
-20 degC, docs/figures.md). The cold does not destroy charge: the state of charge reported is the
fraction of what the cell can deliver at its present temperature, so it comes back as the
cell warms.

Heat, two nodes: the box (its air, the Pi, the radio, the inner foam) and the battery.
All electrical power ends up as heat: the Pi's load in the box, the heater on the battery
it is wrapped around, the battery's own I^2*R loss in the battery. The box loses heat to
the outside air through the insulation wall in series with the outside film; forced
convection in that film weakens as sqrt(density) in thin air, radiation does not, so the
box cools more slowly at altitude. The battery exchanges heat only with the box.

No randomness: the same steps give the same states. `to_dict`/`from_dict` carry the
battery across a payload reboot on the bench.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import asdict, dataclass, field

SEA_LEVEL_DENSITY_KG_M3 = 1.225
SOLAR_CONSTANT_W_M2 = 1361.0  # above the weather: a balloon's panel sees nearly all of it
_MAX_SUBSTEP_S = 5.0  # well under the battery's thermal time constant (~5 min): Euler stays stable

# Open-circuit voltage of a Li-ion (NMC) cell against state of charge: flat in the middle,
# steep at both ends.
_OCV_SOC = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
_OCV_V = (3.00, 3.30, 3.45, 3.58, 3.65, 3.71, 3.76, 3.82, 3.90, 3.98, 4.07, 4.20)


def ocv_v(soc: float) -> float:
    """Open-circuit voltage of one cell at state of charge soc (0-1), by the table above."""
    soc = min(max(soc, 0.0), 1.0)
    i = min(bisect_right(_OCV_SOC, soc) - 1, len(_OCV_SOC) - 2)
    s0, s1 = _OCV_SOC[i], _OCV_SOC[i + 1]
    return _OCV_V[i] + (_OCV_V[i + 1] - _OCV_V[i]) * (soc - s0) / (s1 - s0)


@dataclass(frozen=True)
class PowerPlan:
    # battery: Li-ion 1S, e.g. two 18650s in parallel
    capacity_wh: float = 20.0  # at 20 degC and warmer
    nominal_v: float = 3.7  # turns Wh into Ah
    cold_capacity_fraction: float = 0.5  # usable at -20 degC; linear from 1.0 at 20 degC, on down to 0
    internal_resistance_ohm: float = 0.05  # at 25 degC: cells, protection board, wiring
    resistance_doubling_c: float = 17.0  # degC of cooling below 25 degC that double the resistance
    brownout_v: float = 3.0  # under load: the regulator drops out and the Pi resets
    charge_min_temp_c: float = 0.0  # the charger refuses to charge a colder cell (plating)
    # solar panel, flat on the lid: output follows sin(elevation)
    solar_area_m2: float = 0.0  # 0: no panel
    solar_efficiency: float = 0.2
    # heat
    wall_resistance_k_w: float = 10.0  # through the foam: ~35 mm of polystyrene over ~0.1 m2
    film_conductance_sea_level_w_k: float = 2.0  # outside convection at sea-level density
    radiation_conductance_w_k: float = 0.3  # outside surface radiating, any density
    box_heat_capacity_j_k: float = 400.0  # Pi, radio, camera, inner foam
    battery_heat_capacity_j_k: float = 90.0  # ~95 g of cells
    battery_to_box_k_w: float = 3.0
    heater_w: float = 2.0  # a resistive pad around the battery

    @property
    def solar_peak_w(self) -> float:
        return self.solar_area_m2 * self.solar_efficiency * SOLAR_CONSTANT_W_M2

    @property
    def capacity_ah(self) -> float:
        return self.capacity_wh / self.nominal_v

    def capacity_fraction(self, battery_temp_c: float) -> float:
        """Share of the rated capacity the cell can deliver at this temperature."""
        if battery_temp_c >= 20.0:
            return 1.0
        lost_per_c = (1.0 - self.cold_capacity_fraction) / 40.0
        return max(0.0, 1.0 - lost_per_c * (20.0 - battery_temp_c))

    def resistance_ohm(self, battery_temp_c: float) -> float:
        cooler = max(0.0, 25.0 - battery_temp_c)
        return self.internal_resistance_ohm * 2.0 ** (cooler / self.resistance_doubling_c)

    def box_to_air_w_k(self, air_density: float) -> float:
        """Thermal conductance from the box to the outside air (W/K): wall and film in series."""
        film = self.film_conductance_sea_level_w_k * math.sqrt(max(air_density, 0.0) / SEA_LEVEL_DENSITY_KG_M3)
        film += self.radiation_conductance_w_k
        return 1.0 / (self.wall_resistance_k_w + 1.0 / film)


@dataclass(frozen=True)
class PowerState:
    battery_v: float  # at the terminals, under load
    ocv_v: float
    current_a: float  # out of the battery; negative while the panel charges it
    soc: float  # 0-1 of what the battery can deliver at its present temperature
    capacity_wh: float  # effective now, at the battery's temperature
    battery_temp_c: float
    box_temp_c: float
    solar_w: float
    load_w: float  # what the Pi drew (0 while browned out)
    heater_w: float
    energy_used_wh: float  # consumed by load and heater since the battery was fitted
    browned_out: bool  # the battery could not hold brownout_v under this load


@dataclass
class PowerModel:
    plan: PowerPlan = field(default_factory=PowerPlan)
    box_temp_c: float = 15.0  # where the payload was switched on
    battery_temp_c: float = 15.0
    used_ah: float = 0.0  # charge drawn from the cell, net of charging
    energy_used_wh: float = 0.0
    state: PowerState | None = None  # the last step's result

    def __post_init__(self) -> None:
        if self.state is None:
            self.state = self._at_rest()

    def _at_rest(self) -> PowerState:
        p = self.plan
        cap_ah = p.capacity_ah * p.capacity_fraction(self.battery_temp_c)
        soc = self._soc(cap_ah)
        v = ocv_v(soc)
        return PowerState(v, v, 0.0, soc, cap_ah * p.nominal_v, self.battery_temp_c, self.box_temp_c,
                          0.0, 0.0, 0.0, self.energy_used_wh, False)

    def _soc(self, cap_ah: float) -> float:
        if cap_ah <= 0.0:
            return 0.0
        return min(max(1.0 - self.used_ah / cap_ah, 0.0), 1.0)

    def step(
        self,
        dt_s: float,
        *,
        outside_temp_c: float,
        air_density: float,
        sun_elev_deg: float,
        sunlit: bool,
        load_w: float,
        heater_on: bool,
    ) -> PowerState:
        """Advance dt_s seconds with these conditions held; return the state at the end."""
        if dt_s < 0:
            raise ValueError(f"dt_s must not be negative, got {dt_s}")
        if load_w < 0:
            raise ValueError(f"load_w must not be negative, got {load_w}")
        p = self.plan
        solar = p.solar_peak_w * max(0.0, math.sin(math.radians(sun_elev_deg))) if sunlit else 0.0
        heater = p.heater_w if heater_on else 0.0
        g_air = p.box_to_air_w_k(air_density)
        n = max(1, math.ceil(dt_s / _MAX_SUBSTEP_S))
        h = dt_s / n
        for _ in range(n):
            state = self._substep(h, outside_temp_c, g_air, solar, load_w, heater)
        self.state = state
        return state

    def _substep(self, h: float, outside_c: float, g_air: float, solar: float, load: float,
                 heater: float) -> PowerState:
        p = self.plan
        cap_ah = p.capacity_ah * p.capacity_fraction(self.battery_temp_c)
        soc = self._soc(cap_ah)
        ocv = ocv_v(soc)
        r = p.resistance_ohm(self.battery_temp_c)

        # Net power the battery must give (positive) or may take (negative) at its terminals.
        net = load + heater - solar
        if net < 0 and (self.battery_temp_c < p.charge_min_temp_c or soc >= 1.0):
            net = 0.0  # the charger will not charge: surplus sunshine is wasted
        empty = soc <= 0.0 and net > 0
        # Constant power through a regulator: V*I = P with V = OCV - I*R. Beyond OCV^2/(4R)
        # no current can deliver it: the voltage collapses.
        disc = ocv * ocv - 4.0 * r * net
        if empty:
            current, v = 0.0, 0.0  # the protection board has cut the cell off
        elif disc >= 0:
            current = (ocv - math.sqrt(disc)) / (2.0 * r)
            v = ocv - current * r
        else:
            current, v = ocv / (2.0 * r), ocv / 2.0
        browned = net > 0 and v < p.brownout_v
        if browned:
            # The Pi is resetting and its heater switch drops with it: nothing is served
            # and the cell rests; battery_v keeps the collapse that caused it.
            load = heater = current = 0.0
        self.used_ah += current * h / 3600.0
        self.used_ah = max(self.used_ah, 0.0)
        self.energy_used_wh += (load + heater) * h / 3600.0

        # Heat flows (W) into each node; forward Euler on a step kept short.
        to_box = (self.battery_temp_c - self.box_temp_c) / p.battery_to_box_k_w
        to_air = (self.box_temp_c - outside_c) * g_air
        battery_heat = current * current * r + heater - to_box
        box_heat = load + to_box - to_air
        self.battery_temp_c += battery_heat * h / p.battery_heat_capacity_j_k
        self.box_temp_c += box_heat * h / p.box_heat_capacity_j_k

        return PowerState(
            battery_v=v,
            ocv_v=ocv,
            current_a=current,
            soc=soc,
            capacity_wh=cap_ah * p.nominal_v,
            battery_temp_c=self.battery_temp_c,
            box_temp_c=self.box_temp_c,
            solar_w=solar,
            load_w=load,
            heater_w=heater,
            energy_used_wh=self.energy_used_wh,
            browned_out=browned,
        )

    # ---------------------------------------------------------------- persistence

    def to_dict(self) -> dict:
        """Plain JSON-able data: plan, temperatures, charge drawn and the last state."""
        return {
            "plan": asdict(self.plan),
            "box_temp_c": self.box_temp_c,
            "battery_temp_c": self.battery_temp_c,
            "used_ah": self.used_ah,
            "energy_used_wh": self.energy_used_wh,
            "state": asdict(self.state),
        }

    @classmethod
    def from_dict(cls, d: dict) -> PowerModel:
        return cls(
            plan=PowerPlan(**d["plan"]),
            box_temp_c=float(d["box_temp_c"]),
            battery_temp_c=float(d["battery_temp_c"]),
            used_ah=float(d["used_ah"]),
            energy_used_wh=float(d["energy_used_wh"]),
            state=PowerState(**d["state"]),
        )
