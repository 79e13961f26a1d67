"""The ground's API proxy: the payload's questions answered from an allow-list of real APIs.

The payload sends an API_REQUEST record (fields `api`, `query`; the record's seq is the
request id); the ground looks the answer up on the internet and queues a signed
API_ANSWER uplink command for the payload's next listen window::

    on_record(record, store)            (listener thread) new api_request, not answered before
      -> worker thread: answer(seq, api, query, boot=boot) -> uplink.ApiAnswer
      -> its own connection to the database: outbox.queue(API_ANSWER, answer.pack(), what,
                                                           answers=(boot, seq))

`answer` never raises. What the payload hears back (`uplink.ApiStatus`):

    api not on the allow-list                      REFUSED
    query that makes no sense for that api         BAD_REQUEST (also HTTP 400/422)
    HTTP 404, or an empty result                   NOT_FOUND
    HTTP 429                                       RATE_LIMITED
    HTTP 5xx, a reset connection (retried briefly  UPSTREAM_ERROR
      within the timeout), unreadable JSON/XML, other HTTP errors
    no answer within timeout_s                     TIMEOUT
    connection refused / DNS failure, and every    OFFLINE  (one API down while others
      allow-listed host unreachable                          answer: UPSTREAM_ERROR)

Answers are cleaned of control characters, clipped at a word boundary to what one
uplink frame carries at the configured MTU and tag length, cached per (api, normalised
query) for `cache_s` when they succeeded, and remembered per request: the same request
answered twice gets the same answer.

One class per backend (`WeatherApi`, `DefineApi`, `NewsApi`): each turns a query into a
URL and a response body into one short line. Base URLs come from a TOML file or flags
(`add_proxy_arguments`, `proxy_from_config`)::

    timeout_s = 8
    cache_s = 600
    [apis.weather]                      # a table per allowed api; without [apis]: all three
    url = "https://api.open-meteo.com/v1/forecast"
    [apis.define]
    url = "https://api.dictionaryapi.dev/api/v2/entries/en"
    [apis.news]
    url = "https://feeds.bbci.co.uk/news/world/rss.xml"
    headlines = 3
    # type = "weather" | "define" | "news": when the table's name is not one of these
"""

from __future__ import annotations

from .answer_text import answer_room, clip
from .backends import DefineApi, NewsApi, WeatherApi
from .config import ProxyConfigError, ProxySection, add_proxy_arguments, load_config, proxy_from_config
from .proxy import ApiProxy

__all__ = [
    "ApiProxy", "DefineApi", "NewsApi", "ProxyConfigError", "ProxySection", "WeatherApi", "add_proxy_arguments",
    "answer_room", "clip", "load_config", "proxy_from_config",
]
