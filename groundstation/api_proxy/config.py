"""Which APIs the proxy answers and where it asks them: a TOML file (`--api-config`, its format
in the package's docstring) and `listen`'s flags, made into an `ApiProxy`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Literal

from pydantic import Field

from stratoecho.config import ConfigError, Section, load_toml

from .backends import BACKENDS, DEFAULT_DEFINE_URL, DEFAULT_NEWS_URL, DEFAULT_WEATHER_URL, ApiSpec, NewsApi
from .proxy import ApiProxy


class ProxyConfigError(ValueError):
    """A proxy configuration file or flag that cannot be used; the message says which and why."""


class ApiTable(Section):
    """One ``[apis.NAME]`` table: the backend that answers NAME and where it asks."""

    type: Literal["weather", "define", "news"] | None = Field(None, description="the backend (default: NAME)")
    url: str | None = Field(None, description="the endpoint (default: the backend's public one)")
    headlines: int | None = Field(None, ge=1, description="news: headlines in one answer (default 3)")


def _all_apis() -> dict[str, ApiTable]:
    return {name: ApiTable() for name in BACKENDS}


class ProxyFile(Section):
    """The file `--api-config` names. Only the APIs listed under [apis] are answered."""

    timeout_s: float | None = Field(None, ge=0, strict=True, description="longest one lookup may take, retries included")
    cache_s: float | None = Field(None, ge=0, strict=True, description="how long an answer is reused")
    apis: dict[str, ApiTable] = Field(default_factory=_all_apis)


def load_config(path: str | Path | None, *, weather_url: str | None = None, define_url: str | None = None,
                news_url: str | None = None) -> dict:
    """ApiProxy keyword arguments (with `apis`) from a TOML file (None: defaults), then flags."""
    try:
        doc = load_toml(path, ProxyFile) if path is not None else ProxyFile()
    except ConfigError as e:
        raise ProxyConfigError(f"API proxy config {e}") from e
    defaults = {"weather": DEFAULT_WEATHER_URL, "define": DEFAULT_DEFINE_URL, "news": DEFAULT_NEWS_URL}
    overrides = {"weather": weather_url, "define": define_url, "news": news_url}
    apis: dict[str, ApiSpec] = {}
    for name, table in doc.apis.items():
        kind = table.type or name
        if kind not in BACKENDS:
            raise ProxyConfigError(f"API proxy config {path}: apis.{name} has no type among "
                                   f"{', '.join(BACKENDS)} (set type = ...)")
        if table.headlines is not None and kind != "news":
            raise ProxyConfigError(f"API proxy config {path}: apis.{name}: headlines is for news only")
        url = overrides.get(name) or table.url or defaults[kind]
        try:
            apis[name] = NewsApi(url, table.headlines or 3) if kind == "news" else BACKENDS[kind](url)
        except ValueError as e:
            raise ProxyConfigError(f"API proxy config {path}: apis.{name}: {e}") from e
    out: dict = {"apis": apis}
    for key in ("timeout_s", "cache_s"):
        if getattr(doc, key) is not None:
            out[key] = float(getattr(doc, key))
    return out


class ProxySection(Section):
    enabled: bool = Field(False, description="answer the payload's API requests (needs keys.flight_key)")
    config: Path | None = Field(None, description="the API table (TOML: timeout_s, cache_s, [apis.NAME])")
    timeout_s: float | None = Field(None, gt=0)
    weather_url: str | None = None
    define_url: str | None = None
    news_url: str | None = None


def add_proxy_arguments(parser: argparse.ArgumentParser) -> None:
    """`--api-proxy` and its options, on the `listen` parser."""
    group = parser.add_argument_group(
        "API proxy (with --flight-key)",
        "With --api-proxy the ground answers the payload's API requests (weather, define, news) "
        "from real HTTP APIs and queues each answer as a signed API_ANSWER for the payload's next "
        "listen window. Default sources: Open-Meteo, the Free Dictionary API, BBC world news RSS.")
    group.add_argument("--api-proxy", action="store_true", help="answer the payload's API requests")
    group.add_argument("--api-config", type=Path, metavar="FILE",
                       help="TOML file: timeout_s, cache_s and an [apis.NAME] table (url, type, headlines) "
                            "per allowed API; only the APIs listed there are answered")
    group.add_argument("--api-timeout", type=float, metavar="SECONDS",
                       help="longest one lookup may take, retries included (default 8)")
    group.add_argument("--api-weather-url", metavar="URL", help="Open-Meteo forecast endpoint")
    group.add_argument("--api-define-url", metavar="URL", help="Free Dictionary API base (…/entries/en)")
    group.add_argument("--api-news-url", metavar="URL", help="RSS or Atom feed for the news")


def proxy_from_config(proxy: ProxySection, tag_len: int, mtu: int) -> ApiProxy | None:
    """The ApiProxy `[proxy]` (listen's --api-* flags) asks for, or None unless enabled; its answers
    are cut to the uplink's tag (`tag_len`) and frame size (`mtu`). ProxyConfigError (a ValueError) for a bad file, URL
    or timeout: a start-up error."""
    if not proxy.enabled:
        return None
    kwargs = load_config(proxy.config, weather_url=proxy.weather_url, define_url=proxy.define_url,
                         news_url=proxy.news_url)
    if proxy.timeout_s is not None:
        kwargs["timeout_s"] = proxy.timeout_s
    try:
        return ApiProxy(kwargs.pop("apis"), tag_len=tag_len, mtu=mtu, **kwargs)
    except ValueError as e:
        raise ProxyConfigError(str(e)) from e
