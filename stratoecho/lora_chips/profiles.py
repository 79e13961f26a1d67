"""The LoRa chips a Pi drives on its SPI bus, one profile each: the chip's driver, the settings
that driver takes beyond those every chip has, and the output powers it gives.

A chip's module (sx127x.py, sx126x.py) declares its profile next to its driver and registers it
when imported (this package's `__init__` imports each). Everything else looks a chip up here by
its name: the payload's `[radio]` (its `kind` and the chip's own keys) and radio factory, the
ground's `listen --lora CHIP` and its flags, the bench's simulators (sim/chips/simulated.py). So a new chip
is its driver, its profile and its simulator, and nothing else (docs/architecture.md, "Adding a
LoRa chip").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError
from pydantic_core import InitErrorDetails

# What a chip option holds.
PIN = "pin"  # a GPIO: a BCM number (25) or a gpiozero name (GPIO25, BOARD22); unset: not wired
SWITCH = "switch"  # yes or no
NUMBER = "number"  # a number, one of the option's `choices`; unset: the chip's feature not used

_ANNOTATIONS = {PIN: int | str | None, SWITCH: bool, NUMBER: float | None}


@dataclass(frozen=True)
class ChipOption:
    """One setting of a chip's driver beyond those every chip on SPI has (the bus, the chip select,
    RESET, the output power). Its name is the payload's `[radio]` key, the driver's keyword and,
    dashed, the ground's `listen --lora` flag."""

    name: str
    help: str  # what it is, for the flag's help and the key's description (the chip's name goes first)
    kind: str = PIN
    default: Any = None
    choices: tuple = ()  # NUMBER: the values the chip takes
    metavar: str = "GPIO"
    required: str = ""  # why the chip cannot work without it; empty: optional
    check: Callable[[Any], None] | None = None  # ValueError, in the chip's words, for a value given it cannot take

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def annotation(self):
        """The type its `[radio]` key is validated as."""
        return _ANNOTATIONS[self.kind]


@dataclass(frozen=True)
class ChipProfile:
    """A LoRa chip on SPI as the rest of the project needs to know it."""

    name: str  # the payload's radio.kind and the ground's --lora CHIP: "sx127x"
    label: str  # how the chip is named in logs and errors: "SX127x"
    driver: Callable  # driver(spi, settings, *, clock, name, reset_pin, pin_factory, tx_power_dbm, **options)
    parts: str  # which parts and boards it is, for --lora's help
    tx_power_dbm: tuple[int, int]  # the output powers it gives (dBm), the most it can take
    power_help: str  # its powers, for --tx-power-dbm's help
    check_power: Callable[[int, Mapping[str, Any]], None]  # RadioError for a power the driver refuses with these options
    options: tuple[ChipOption, ...] = ()
    irq_pin: str | None = None  # the option wiring the line that signals RxDone/TxDone (unset: the driver polls)

    @property
    def required_keys(self) -> tuple[str, ...]:
        """The payload's `[radio]` keys a chip of this kind needs: the carrier, and its required options."""
        return ("frequency_mhz", *(o.name for o in self.options if o.required))

    def option(self, name: str) -> ChipOption | None:
        return next((o for o in self.options if o.name == name), None)


# The registered chips by name, in the order they were registered.
PROFILES: dict[str, ChipProfile] = {}


def register_chip(profile: ChipProfile) -> ChipProfile:
    """Make a chip known by its name; a second, different profile under a name already taken
    is a ValueError (two modules claiming one chip)."""
    known = PROFILES.get(profile.name)
    if known is not None and known != profile:
        raise ValueError(f"LoRa chip {profile.name!r} is registered already")
    PROFILES[profile.name] = profile
    return profile


def chip_names() -> tuple[str, ...]:
    return tuple(PROFILES)


def is_chip(name: str) -> bool:
    return name in PROFILES


def chip_profile(name: str) -> ChipProfile:
    """The chip registered as `name`; a ValueError naming the registered ones if none is."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"no LoRa chip {name!r}: one of {', '.join(chip_names())}") from None


def chip_options() -> dict[str, tuple[ChipOption, tuple[str, ...]]]:
    """Every registered chip's options by name, each with the chips that take it (two chips may
    share one, as pin names on a datasheet; the first declaration is the one used)."""
    found: dict[str, tuple[ChipOption, tuple[str, ...]]] = {}
    for profile in PROFILES.values():
        for option in profile.options:
            first, chips = found.get(option.name, (option, ()))
            found[option.name] = (first, (*chips, profile.name))
    return found


def option_values(given: Mapping[str, Any], declared: Mapping[str, Any]) -> dict[str, Any]:
    """The payload's `[radio]` values for every registered chip's options: as `given` (checked
    against the option's kind) or its default. `declared`: the section's own keys; a key that is
    neither one of them nor a chip's option is an error, as in any other section. Pydantic's
    ValidationError, naming each key, for what is wrong."""
    values, errors = {}, []
    options = chip_options()
    for key in given:
        if key not in declared and key not in options:
            errors.append(InitErrorDetails(type="extra_forbidden", loc=(key,), input=given[key]))
    for name, (option, _chips) in options.items():
        if name not in given:
            values[name] = option.default
            continue
        try:
            values[name] = TypeAdapter(option.annotation).validate_python(given[name])
        except ValidationError as e:
            errors += [InitErrorDetails(type=d["type"], loc=(name, *d["loc"]), input=d["input"], ctx=d.get("ctx", {}))
                       for d in e.errors()]
    if errors:
        raise ValidationError.from_exception_data("RadioSection", errors)
    return values
