"""The frame sources `listen` can open, one entry each in one table (`SOURCES`).

The assembly knows no source by name: it opens the one the station's configuration names
(`[source] kind = NAME` in the file, or that source's flag). To add a source, write it (iterable
of `Received`/None, `errors`, `close()`, and `send`/`peer` if it can transmit: see
groundstation/sources/__init__.py) and register a `SourceKind`: in kinds.py beside the others for
one that ships, or `register_source(...)` from elsewhere before the command line is parsed
(tests/test_ground_sources_registry.py adds one that way).

    name        `[source] kind = NAME`
    settings    its keys in `[source]`: a `SourceSettings` model (unknown keys are errors)
    open        the source, open, from its settings and the `SourceContext`; SourceError if it
                cannot be opened
    add_flags   its flags on `listen`'s parser: the one that picks it goes in `where` (one
                source a station); optional
    from_flags  the keys its flags give (with "kind" when its own flag picked it), None when
                none was given; ValueError for a flag that needs this source when another is
                configured (`configured`: the kind the file names). Optional
"""

from __future__ import annotations

import argparse
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, PlainSerializer

from stratoecho.config import Section, parse_hostport


def _hostport(listen: bool) -> Callable[[object], object]:
    def parse(value: object) -> object:
        if isinstance(value, str):  # the file's "HOST:PORT"; a flag gives the pair already
            return parse_hostport(str(value), listen=listen)
        return value
    return parse


def _as_text(value: tuple[str, int]) -> str:
    return f"{value[0]}:{value[1]}"


# "HOST:PORT" in the file, (host, port) in the code: where the station sends, and where it listens
# (":PORT" all interfaces, port 0 any free one).
HostPort = Annotated[tuple[str, int], BeforeValidator(_hostport(False)), PlainSerializer(_as_text)]
ListenAddress = Annotated[tuple[str, int], BeforeValidator(_hostport(True)), PlainSerializer(_as_text)]


class SourceSettings(Section):
    """A source's keys in `[source]`; each kind's model adds its own."""

    kind: str

    def where(self) -> str:
        """What the station is listening on, for the log and systemd's status line."""
        return self.kind

    def uplink_peer(self, source: Any) -> tuple | None:
        """Where the uplink goes through this source (its own radio, or a bridge it names), or
        None: a source that only hears (a replay, another receiver's output) never answers."""
        return None

    def tuned_mhz(self) -> float | None:
        """The frequency this source's own radio is tuned to (a HAT), for the exports; None: not ours to know."""
        return None

    ends: ClassVar[bool] = False  # a finite source (a replay): the station stops at its end


@dataclass(frozen=True)
class SourceContext:
    """What a source may need of the station: its clock (real time, or the bench's lockstep under
    `sim fly`; a source handed none keeps real time) and the stop event it waits on."""

    clock: Any | None = None
    stop: threading.Event | None = None


@dataclass(frozen=True)
class SourceKind:
    """One `[source] kind`; the fields are described in the module docstring."""

    name: str
    settings: type[SourceSettings]
    open: Callable[[Any, SourceContext], Any]
    add_flags: Callable[[argparse._MutuallyExclusiveGroup, argparse.ArgumentParser], None] | None = None
    from_flags: Callable[[argparse.Namespace, str | None], dict | None] | None = None


SOURCES: dict[str, SourceKind] = {}  # in the order --help lists their flags


def register_source(kind: SourceKind) -> SourceKind:
    """Add `kind` to the table `listen` opens from; a parser built afterwards offers its flags.
    ValueError for a name already taken, one that is not a plain lower-case word, or settings
    whose `kind` does not say the name."""
    if kind.name in SOURCES:
        raise ValueError(f"frame source {kind.name!r} is registered already")
    if not re.fullmatch(r"[a-z][a-z0-9_]*", kind.name):
        raise ValueError(f"frame source name {kind.name!r}: lower-case letters, digits and _ only")
    if not issubclass(kind.settings, SourceSettings):
        raise ValueError(f"frame source {kind.name!r}: its settings must be a SourceSettings model")
    if kind.settings.model_fields["kind"].default != kind.name:  # a file's kind must find its own model
        raise ValueError(f"frame source {kind.name!r}: its settings' kind defaults to "
                         f"{kind.settings.model_fields['kind'].default!r}, not {kind.name!r}")
    SOURCES[kind.name] = kind
    return kind


def source_settings(data: object) -> SourceSettings:
    """`[source]` validated by the model of the kind it names; ValueError naming the kinds there are."""
    if isinstance(data, SourceSettings):
        return data
    if not isinstance(data, dict):
        raise ValueError("expected a table: [source] with kind = one of " + ", ".join(map(repr, SOURCES)))
    kind = data.get("kind")
    if kind not in SOURCES:
        raise ValueError(f"kind {kind!r} is no frame source; expected one of " + ", ".join(map(repr, SOURCES)))
    return SOURCES[kind].settings.model_validate(data)


def add_source_flags(listen: argparse.ArgumentParser) -> None:
    """Every registered source's flags on `listen`; the ones that pick a source exclude each other."""
    where = listen.add_mutually_exclusive_group()
    for kind in SOURCES.values():
        if kind.add_flags is not None:
            kind.add_flags(where, listen)


def source_from_flags(args: argparse.Namespace, configured: dict | None) -> dict | None:
    """`[source]` as the flags leave it: the configured one (`configured`, from the file) with
    its own flags over it, or the source a flag picked (over the file's keys when it is the
    same kind). ValueError for a flag of a source that is not the one configured."""
    picked, own = None, {}
    kind_named = (configured or {}).get("kind")  # the file's source, whose own flags may adjust it
    for kind in SOURCES.values():
        keys = kind.from_flags(args, kind_named) if kind.from_flags is not None else None
        if keys is None:
            continue
        if "kind" in keys:
            picked = keys
        elif kind.name == kind_named:
            own = keys
    if picked is None:
        return {**configured, **own} if configured else None
    if own and picked["kind"] != kind_named:
        raise ValueError(f"{', '.join(own)}: settings of the {kind_named} source the file names, "
                         f"given with a {picked['kind']} source")
    if configured and picked["kind"] == kind_named:
        return {**configured, **picked}
    return picked
