"""TOML configuration with validation that names the file, the key and what was expected.

Each part declares its configuration as pydantic models (`extra="forbid"`, so a
misspelt key is an error, not a silently ignored default) and loads it with
`load_toml(path, Model)`.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigError(Exception):
    """A configuration file that cannot be read or does not validate."""


class Section(BaseModel):
    """Base for configuration sections: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def describe_validation_error(source: str, err: ValidationError) -> str:
    lines = [f"{source}: {err.error_count()} problem(s) in the configuration:"]
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        got = e.get("input")
        got_text = "" if isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"  [{where}] {e['msg']}{got_text}")
    return "\n".join(lines)


def toml_tables(text: str, source: str = "<string>") -> dict:
    """The tables of a TOML text as written, unchecked: ConfigError naming `source` if it is not TOML."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        # tomllib's message already carries "(at line N, column M)".
        raise ConfigError(f"{source}: not valid TOML: {e}") from e


def read_toml(path: str | Path) -> dict:
    """The tables of a TOML file, unchecked: ConfigError naming the file it cannot read or parse."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: configuration file not found") from e
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read configuration: {e}") from e
    return toml_tables(text, str(path))


def validate(data: dict, model: type[M], source: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(describe_validation_error(source, e)) from e


def parse_toml(text: str, model: type[M], source: str = "<string>") -> M:
    return validate(toml_tables(text, source), model, source)


def load_toml(path: str | Path, model: type[M]) -> M:
    return validate(read_toml(path), model, str(path))


def parse_hostport(text: str, listen: bool = False) -> tuple[str, int]:
    """'HOST:PORT' or '[::1]:PORT' -> (host, port).

    Where we send, host and a port of 1..65535 are required. Where we listen
    (`listen=True`), ':PORT' means all interfaces and port 0 lets the system pick one.
    """
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]")
    low = 0 if listen else 1
    if not sep or not port_text.isdigit() or not low <= int(port_text) <= 65535 or not (host or listen):
        example = "127.0.0.1:7373, :7373 for all interfaces, or port 0 for any free port" if listen else "127.0.0.1:7373"
        raise ValueError(f"{text!r} is not HOST:PORT (for example {example})")
    return host or "0.0.0.0", int(port_text)


def user_cache_dir() -> Path:
    """Where stratoecho keeps what it can make again (the base map's place index, bases dequantized
    from a GGUF): $XDG_CACHE_HOME/stratoecho, else ~/.cache/stratoecho."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache") / "stratoecho"
