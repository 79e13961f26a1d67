"""Every radio implements the whole `Radio` port (payload/parts/radio.py): the link calls `send`,
`receive`, `hear`, `ready` and `close` and reads `receives` on whatever radio it was given, and
never asks whether one has them (docs/architecture.md: ports are never probed)."""

from __future__ import annotations

import inspect
from typing import get_type_hints

import pytest

import stratoecho.lora_chips  # noqa: F401 (each chip registers its profile on import)
from payload.parts.radio import Radio, RadioUnavailable
from payload.parts.radios import RADIOS, ReopeningRadio
from sim.bench.run.link import SimRadio
from stratoecho.lora_chips.profiles import chip_names, chip_profile

PORT_METHODS = sorted(name for name, member in vars(Radio).items()
                      if inspect.isfunction(member) and not name.startswith("_"))
PORT_FIELDS = sorted(Radio.__annotations__)


def registered_radios() -> dict[str, type]:
    """The payload's radios by `radio.kind` (each opener's return type), every registered chip's
    driver, the wrapper the payload flies them in, and the bench's simulated radio."""
    radios = {kind: get_type_hints(opener)["return"] for kind, opener in RADIOS.items()}
    radios.update({name: chip_profile(name).driver for name in chip_names()})
    radios["reopening"] = ReopeningRadio
    radios["bench"] = SimRadio
    return radios


def test_the_port_declares_what_the_link_calls():
    assert PORT_METHODS == ["close", "hear", "ready", "receive", "send"]
    assert PORT_FIELDS == ["receives"]


@pytest.mark.parametrize("kind", sorted(registered_radios()))
def test_every_registered_radio_implements_the_whole_port(kind):
    cls = registered_radios()[kind]
    assert inspect.isclass(cls), f"{kind}: {cls!r} is not a radio class"
    for name in PORT_FIELDS:
        assert hasattr(cls, name) or name in getattr(cls, "__annotations__", {}), f"{kind} lacks {name}"
    for name in PORT_METHODS:
        method = getattr(cls, name, None)
        assert callable(method), f"{cls.__name__} lacks {name}()"
        # Each parameter the port requires is taken, by the port's name for it.
        wanted = [p.name for p in inspect.signature(getattr(Radio, name)).parameters.values()
                  if p.name != "self" and p.default is inspect.Parameter.empty]
        taken = list(inspect.signature(method).parameters)
        assert all(p in taken for p in wanted), f"{cls.__name__}.{name}{inspect.signature(method)} lacks {wanted}"


class _Counting:
    """A radio that counts how it was listened with."""

    receives = True

    def __init__(self) -> None:
        self.heard, self.received = 0, 0

    def receive(self, timeout_s: float) -> list[bytes]:
        self.received += 1
        return []

    def hear(self, timeout_s: float) -> list[bytes]:
        self.heard += 1
        return [b"heard"]

    def close(self) -> None:
        """Nothing held."""


class _Seconds:
    def __init__(self) -> None:
        self.t, self.waited = 0.0, []

    def elapsed_s(self) -> float:
        return self.t

    def wait(self, seconds: float, stop=None) -> bool:
        self.waited.append(seconds)
        return False

    def event(self):
        import threading

        return threading.Event()


def test_the_reopening_radio_listens_with_its_radios_own_hear_and_says_when_it_is_not_ready():
    inner = _Counting()
    radio = ReopeningRadio(lambda: inner, _Seconds(), opened=inner)
    radio.ready()  # up: nothing to say
    assert radio.hear(1.0) == [b"heard"] and (inner.heard, inner.received) == (1, 0)
    radio.close()
    with pytest.raises(RadioUnavailable, match="closed"):
        radio.ready()
