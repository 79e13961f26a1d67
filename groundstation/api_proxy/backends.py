"""The allowed APIs: one class per backend (`WeatherApi`, `DefineApi`, `NewsApi`), each turning a
query into a URL and a response body into one short line, and the outcomes of one lookup
(`ApiFailure`: what the payload hears when it fails; `Transient`: worth another try)."""

from __future__ import annotations

import json
import math
import re
import urllib.parse
import xml.etree.ElementTree as ET
from abc import ABC, abstractmethod

from stratoecho.wire.uplink import ApiStatus

from .answer_text import clean

DEFAULT_WEATHER_URL = "https://api.open-meteo.com/v1/forecast"
DEFAULT_DEFINE_URL = "https://api.dictionaryapi.dev/api/v2/entries/en"
DEFAULT_NEWS_URL = "https://feeds.bbci.co.uk/news/world/rss.xml"


# --------------------------------------------------------------------------- outcomes of one lookup


class ApiFailure(Exception):
    """A lookup that ends in `status`; the message is for the log."""

    def __init__(self, status: ApiStatus, detail: str = ""):
        super().__init__(detail or status.name.lower())
        self.status = status


class Transient(Exception):
    """Worth one more try within the timeout: 5xx, a reset connection. Carries the failure
    to report if the tries run out."""

    def __init__(self, failure: ApiFailure):
        super().__init__(str(failure))
        self.failure = failure


def _bad(detail: str) -> ApiFailure:
    return ApiFailure(ApiStatus.BAD_REQUEST, detail)


def upstream_error(detail: str) -> ApiFailure:
    return ApiFailure(ApiStatus.UPSTREAM_ERROR, detail)


# --------------------------------------------------------------------------- backends


class ApiSpec(ABC):
    """One allowed API: how a query becomes a URL, and a response body one short line.
    `normalise` raises ApiFailure(BAD_REQUEST); `summarise` raises ApiFailure (NOT_FOUND for
    an empty result, UPSTREAM_ERROR for a body it cannot read)."""

    def __init__(self, url: str):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"API URL {url!r} is not an http(s) URL with a host")
        self.url = url

    @abstractmethod
    def normalise(self, query: str) -> str:
        """Each API says this its own way."""

    @abstractmethod
    def url_for(self, normalised: str) -> str:
        """Each API says this its own way."""

    @abstractmethod
    def summarise(self, body: bytes, normalised: str) -> str:
        """Each API says this its own way."""

    def host_port(self) -> tuple[str, int]:
        parts = urllib.parse.urlsplit(self.url)
        return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


def _json(body: bytes):
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise upstream_error(f"not JSON: {e}") from None


def _with_query(url: str, params: dict[str, str]) -> str:
    parts = urllib.parse.urlsplit(url)
    query = "&".join(filter(None, (parts.query, urllib.parse.urlencode(params, safe=","))))
    return urllib.parse.urlunsplit(parts._replace(query=query))


# WMO weather interpretation codes, as Open-Meteo reports them.
WMO_CODES = {
    0: "clear sky", 1: "mainly clear", 2: "partly cloudy", 3: "overcast", 45: "fog", 48: "rime fog",
    51: "light drizzle", 53: "drizzle", 55: "dense drizzle", 56: "freezing drizzle", 57: "freezing drizzle",
    61: "light rain", 63: "rain", 65: "heavy rain", 66: "freezing rain", 67: "freezing rain",
    71: "light snow", 73: "snow", 75: "heavy snow", 77: "snow grains",
    80: "light showers", 81: "showers", 82: "violent showers", 85: "snow showers", 86: "heavy snow showers",
    95: "thunderstorm", 96: "thunderstorm with hail", 99: "thunderstorm with heavy hail",
}


class WeatherApi(ApiSpec):
    """Open-Meteo's current weather at "lat,lon" (rounded to 0.1° again: no finer than it needs)."""

    def normalise(self, query: str) -> str:
        try:
            lat_s, lon_s = query.split(",")
            lat, lon = float(lat_s), float(lon_s)
        except ValueError:
            raise _bad(f"weather query {query!r} is not 'lat,lon'") from None
        if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
            raise _bad(f"weather position {query!r} is off the globe")
        return f"{lat:.1f},{lon:.1f}".replace("-0.0", "0.0")

    def url_for(self, normalised: str) -> str:
        lat, lon = normalised.split(",")
        return _with_query(self.url, {"latitude": lat, "longitude": lon,
                                      "current": "temperature_2m,wind_speed_10m,weather_code"})

    def summarise(self, body: bytes, normalised: str) -> str:
        doc = _json(body)
        current = doc.get("current") if isinstance(doc, dict) else None
        if not isinstance(current, dict):
            raise upstream_error("no 'current' object")
        units = doc.get("current_units") if isinstance(doc.get("current_units"), dict) else {}
        parts = []
        code = current.get("weather_code")
        if isinstance(code, (int, float)) and not isinstance(code, bool):
            parts.append(WMO_CODES.get(int(code), f"weather code {int(code)}"))
        temp, wind = current.get("temperature_2m"), current.get("wind_speed_10m")
        if isinstance(temp, (int, float)) and not isinstance(temp, bool):
            parts.append(f"{temp:.0f} {units.get('temperature_2m', '°C')}")
        if isinstance(wind, (int, float)) and not isinstance(wind, bool):
            parts.append(f"wind {wind:.0f} {units.get('wind_speed_10m', 'km/h')}")
        if not parts:
            raise upstream_error("current weather without temperature, wind or code")
        return f"Weather at {normalised}: " + ", ".join(parts) + "."


_WORD = re.compile(r"[^\W\d_]+(?:[-'][^\W\d_]+)*")


class DefineApi(ApiSpec):
    """The Free Dictionary API: the first definition of one word."""

    def normalise(self, query: str) -> str:
        word = query.strip().lower()
        if not 1 <= len(word) <= 40 or not _WORD.fullmatch(word):
            raise _bad(f"define query {query!r} is not one word")
        return word

    def url_for(self, normalised: str) -> str:
        return self.url.rstrip("/") + "/" + urllib.parse.quote(normalised)

    def summarise(self, body: bytes, normalised: str) -> str:
        doc = _json(body)
        if not isinstance(doc, list):
            raise upstream_error("dictionary answer is not a list of entries")
        for entry in doc:
            for meaning in (entry.get("meanings") or []) if isinstance(entry, dict) else []:
                if not isinstance(meaning, dict):
                    continue
                for d in meaning.get("definitions") or []:
                    text = d.get("definition") if isinstance(d, dict) else None
                    if isinstance(text, str) and text.strip():
                        pos = meaning.get("partOfSpeech")
                        word = entry.get("word") if isinstance(entry.get("word"), str) else normalised
                        return f"{word} ({pos}): {text}" if isinstance(pos, str) and pos else f"{word}: {text}"
        raise ApiFailure(ApiStatus.NOT_FOUND, f"no definition of {normalised!r}")


_ATOM = "{http://www.w3.org/2005/Atom}"


class NewsApi(ApiSpec):
    """The first headlines of an RSS (or Atom) feed; every query means "headlines"."""

    def __init__(self, url: str, headlines: int = 3):
        super().__init__(url)
        if isinstance(headlines, bool) or not isinstance(headlines, int) or headlines < 1:
            raise ValueError(f"headlines must be a whole number >= 1, got {headlines!r}")
        self.headlines = headlines

    def normalise(self, query: str) -> str:
        return "headlines"

    def url_for(self, normalised: str) -> str:
        return self.url

    def summarise(self, body: bytes, normalised: str) -> str:
        if b"<!ENTITY" in body:  # entity expansion is for attacks, never for a news feed
            raise upstream_error("feed declares entities")
        try:
            root = ET.fromstring(body)
        except ET.ParseError as e:
            raise upstream_error(f"feed is not XML: {e}") from None
        titles = [el.text for el in (*root.iterfind("./channel/item/title"), *root.iterfind("./item/title"),
                                     *root.iterfind(f"./{_ATOM}entry/{_ATOM}title"))]
        titles = [clean(t) for t in titles if t and clean(t)]
        if root.tag not in ("rss", f"{_ATOM}feed") and not titles and not root.tag.endswith("RDF"):
            raise upstream_error(f"feed root <{root.tag}> is neither RSS nor Atom")
        if not titles:
            raise ApiFailure(ApiStatus.NOT_FOUND, "feed has no items")
        return "Headlines: " + "; ".join(titles[:self.headlines]) + "."


BACKENDS: dict[str, type[ApiSpec]] = {"weather": WeatherApi, "define": DefineApi, "news": NewsApi}
