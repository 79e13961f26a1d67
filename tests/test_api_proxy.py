"""The ground's API proxy against a real HTTP server on loopback serving fake upstream documents."""

from __future__ import annotations

import json
import socket
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from groundstation.api_proxy import (
    ApiProxy,
    DefineApi,
    NewsApi,
    ProxyConfigError,
    ProxySection,
    WeatherApi,
    answer_room,
    clip,
    load_config,
    proxy_from_config,
)
from groundstation.store import Store
from stratoecho import wire
from stratoecho.wire import uplink
from stratoecho.wire.uplink import ApiAnswer, ApiStatus, CommandId

WEATHER = {
    "latitude": 51.5, "longitude": -0.1,
    "current_units": {"temperature_2m": "°C", "wind_speed_10m": "km/h"},
    "current": {"time": "2025-06-01T12:00", "temperature_2m": 17.4, "wind_speed_10m": 12.6, "weather_code": 3},
}
BALLOON = [{"word": "balloon", "meanings": [
    {"partOfSpeech": "noun", "definitions": [{"definition": "An inflatable\x1b[31m bag of thin material."}]},
    {"partOfSpeech": "verb", "definitions": [{"definition": "To swell out."}]}]}]
RSS = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>World</title>
<item><title>First headline\u202e\u0085 here</title></item>
<item><title><![CDATA[Second & headline]]></title></item>
<item><title>Third headline</title></item>
<item><title>Fourth headline</title></item>
</channel></rss>"""
LONG_RSS = "<rss><channel>" + "".join(
    f"<item><title>{'Extraordinarily verbose headline number %d about stratospheric weather' % i}</title></item>"
    for i in range(10)) + "</channel></rss>"


class Upstream(BaseHTTPRequestHandler):
    """Routes by the first path element: what the fake internet does for that path."""

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        srv = self.server
        path = urlsplit(self.path).path
        with srv.lock:
            srv.hits[path] += 1
            n = srv.hits[path]
            srv.queries.append(self.path)
        mode = path.split("/")[1]
        if mode == "slow":
            srv.release.wait(10)
            return self._send(200, json.dumps(WEATHER))
        if mode == "flaky" and n <= 2:
            return self._send(500, "oops")
        if mode == "reset" and n == 1:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)  # no response at all
            return
        if mode == "broken":
            return self._send(503, "down")
        if mode == "limited":
            return self._send(429, "slow down")
        if mode == "garbage":
            return self._send(200, "{not json")
        if path.endswith("/forecast"):
            return self._send(200, json.dumps(WEATHER))
        if path.endswith("/balloon"):
            return self._send(200, json.dumps(BALLOON))
        if path.endswith("/empty"):
            return self._send(200, "[]")
        if path.endswith("/news.xml"):
            return self._send(200, RSS, "application/rss+xml")
        if path.endswith("/long.xml"):
            return self._send(200, LONG_RSS, "application/rss+xml")
        return self._send(404, json.dumps({"title": "No Definitions Found"}))

    def _send(self, code, body, ctype="application/json"):
        data = body.encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def upstream():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    srv.daemon_threads = True
    srv.hits, srv.queries, srv.lock, srv.release = Counter(), [], threading.Lock(), threading.Event()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    srv.base = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        yield srv
    finally:
        srv.release.set()
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def dead_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed on return: nothing listens there


def apis(base, prefix=""):
    return {"weather": WeatherApi(f"{base}{prefix}/v1/forecast"), "define": DefineApi(f"{base}{prefix}/entries/en"),
            "news": NewsApi(f"{base}{prefix}/news.xml")}


def proxy(specs, **kw):
    kw.setdefault("retry_wait_s", 0.01)
    kw.setdefault("timeout_s", 5)
    return ApiProxy(specs, use_env_proxy=False, **kw)


# --------------------------------------------------------------------------- answers


def test_weather_summarised_in_one_sentence(upstream):
    a = proxy(apis(upstream.base)).answer(7, "weather", "51.47,-0.12")
    assert a == ApiAnswer(7, ApiStatus.OK, "Weather at 51.5,-0.1: overcast, 17 °C, wind 13 km/h.")
    q = parse_qs(urlsplit(upstream.queries[0]).query)
    assert q["latitude"] == ["51.5"] and q["longitude"] == ["-0.1"]
    assert q["current"] == ["temperature_2m,wind_speed_10m,weather_code"]


def test_define_first_definition_cleaned(upstream):
    a = proxy(apis(upstream.base)).answer(3, "define", " Balloon ")
    assert a.status == ApiStatus.OK
    assert a.text == "balloon (noun): An inflatable bag of thin material."
    assert upstream.queries == ["/entries/en/balloon"]


def test_news_first_headlines(upstream):
    a = proxy(apis(upstream.base)).answer(4, "news", "headlines")
    assert a.status == ApiStatus.OK
    assert a.text == "Headlines: First headline here; Second & headline; Third headline."


@pytest.mark.parametrize("api,query", [
    ("weather", "somewhere"), ("weather", "91.0,0.0"), ("weather", "nan,1"), ("define", "two words"),
    ("define", "x" * 41), ("define", ""), ("news", "y" * 500)])
def test_malformed_query_is_bad_request_without_asking(upstream, api, query):
    assert proxy(apis(upstream.base)).answer(1, api, query).status == ApiStatus.BAD_REQUEST
    assert not upstream.hits


def test_api_off_the_allow_list_is_refused(upstream):
    p = proxy({"define": DefineApi(f"{upstream.base}/entries/en")})
    assert p.answer(1, "weather", "51.5,0.0") == ApiAnswer(1, ApiStatus.REFUSED, "")
    assert p.answer(2, "shell", "rm -rf /").status == ApiStatus.REFUSED
    assert not upstream.hits


def test_not_found_and_empty_result(upstream):
    p = proxy(apis(upstream.base))
    assert p.answer(1, "define", "zyzzyvaqq").status == ApiStatus.NOT_FOUND  # HTTP 404
    assert p.answer(2, "define", "empty").status == ApiStatus.NOT_FOUND  # 200 with no entries


def test_rate_limited(upstream):
    assert proxy(apis(upstream.base, "/limited")).answer(1, "news", "headlines").status == ApiStatus.RATE_LIMITED


def test_server_error_retried_then_answered(upstream):
    p = proxy(apis(upstream.base, "/flaky"), retry_attempts=3)
    assert p.answer(1, "weather", "10,20").status == ApiStatus.OK
    assert upstream.hits["/flaky/v1/forecast"] == 3


def test_server_error_that_persists_is_upstream_error(upstream):
    p = proxy(apis(upstream.base, "/broken"), retry_attempts=3)
    assert p.answer(1, "weather", "10,20").status == ApiStatus.UPSTREAM_ERROR
    assert upstream.hits["/broken/v1/forecast"] == 3


def test_retry_can_be_switched_off(upstream):
    p = proxy(apis(upstream.base, "/flaky"), retry_attempts=1)
    assert p.answer(1, "weather", "10,20").status == ApiStatus.UPSTREAM_ERROR
    assert upstream.hits["/flaky/v1/forecast"] == 1


def test_reset_connection_retried(upstream):
    p = proxy(apis(upstream.base, "/reset"), retry_attempts=2)
    assert p.answer(1, "define", "balloon").status == ApiStatus.OK
    assert upstream.hits["/reset/entries/en/balloon"] == 2


def test_garbage_is_upstream_error(upstream):
    p = proxy({**apis(upstream.base, "/garbage"), "news": NewsApi(f"{upstream.base}/garbage/feed")})
    assert p.answer(1, "weather", "1,2").status == ApiStatus.UPSTREAM_ERROR
    assert p.answer(2, "define", "balloon").status == ApiStatus.UPSTREAM_ERROR
    assert p.answer(3, "news", "headlines").status == ApiStatus.UPSTREAM_ERROR  # "{not json" is no XML


def test_slow_api_times_out(upstream):
    p = proxy(apis(upstream.base, "/slow"), timeout_s=0.3)
    assert p.answer(1, "weather", "1,2") == ApiAnswer(1, ApiStatus.TIMEOUT, "")


def test_nothing_reachable_is_offline(dead_port):
    p = proxy(apis(f"http://127.0.0.1:{dead_port}"))
    assert p.answer(1, "define", "balloon").status == ApiStatus.OFFLINE
    assert p.answer(2, "weather", "1,2").status == ApiStatus.OFFLINE


def test_one_api_down_while_others_answer_is_upstream_error(upstream, dead_port):
    p = proxy({**apis(upstream.base), "weather": WeatherApi(f"http://127.0.0.1:{dead_port}/v1/forecast")})
    assert p.answer(1, "weather", "1,2").status == ApiStatus.UPSTREAM_ERROR


def test_offline_check_is_asked_on_refused_connections(dead_port):
    asked = []
    p = proxy(apis(f"http://127.0.0.1:{dead_port}"), offline_check=lambda: asked.append(1) or False)
    assert p.answer(1, "news", "headlines").status == ApiStatus.UPSTREAM_ERROR
    assert asked == [1]


# --------------------------------------------------------------------------- size, cache, idempotence


@pytest.mark.parametrize("mtu,tag_len", [(255, 8), (64, 8), (58, 16)])
def test_answer_clipped_at_a_word_to_fit_the_uplink(upstream, mtu, tag_len):
    p = proxy({"news": NewsApi(f"{upstream.base}/long.xml", headlines=10)}, mtu=mtu, tag_len=tag_len)
    a = p.answer(9, "news", "headlines")
    assert a.status == ApiStatus.OK and a.text.endswith("…")
    assert len(a.text.encode("utf-8")) <= answer_room(tag_len, mtu)
    whole_words = {"Headlines"} | set(LONG_RSS.replace("<", " ").replace(">", " ").split())
    assert a.text.startswith("Headlines: Extraordinarily")
    assert all(w.rstrip(";.:") in whole_words for w in a.text[:-1].split())  # no word cut in half
    frame = uplink.sign(bytes(range(32)), 1, "STRATO1", a, tag_len=tag_len, mtu=mtu)
    assert len(frame) <= mtu
    assert uplink.verify(bytes(range(32)), frame, "STRATO1", 0, tag_len=tag_len, mtu=mtu).command == a


def test_clip_counts_utf8_bytes_and_never_splits_a_character():
    text = "température " * 30
    out = clip(text, 50)
    assert len(out.encode("utf-8")) <= 50 and out.endswith("…")
    assert set(out[:-1].split()) == {"température"}
    assert clip("short", 50) == "short"


def test_successful_answers_cached_per_normalised_query(upstream):
    now = [1000.0]
    p = proxy(apis(upstream.base), cache_s=600, clock=lambda: now[0])
    first = p.answer(1, "weather", "51.47,-0.12")
    assert p.answer(2, "weather", "51.5,-0.1").text == first.text  # same place at 0.1°
    assert p.answer(3, "define", "balloon").status == ApiStatus.OK
    assert p.answer(4, "define", "BALLOON").status == ApiStatus.OK
    assert upstream.hits == {"/v1/forecast": 1, "/entries/en/balloon": 1}
    now[0] += 601
    p.answer(5, "weather", "51.5,-0.1")
    assert upstream.hits["/v1/forecast"] == 2


def test_failures_are_not_cached(upstream):
    p = proxy(apis(upstream.base, "/flaky"), retry_attempts=1)
    assert p.answer(1, "news", "headlines").status == ApiStatus.UPSTREAM_ERROR
    assert p.answer(2, "news", "headlines").status == ApiStatus.UPSTREAM_ERROR
    assert p.answer(3, "news", "headlines").status == ApiStatus.OK
    assert upstream.hits["/flaky/news.xml"] == 3


def test_same_request_answered_twice_gives_the_same_answer(upstream):
    p = proxy(apis(upstream.base, "/flaky"), retry_attempts=1, cache_s=0)
    first = p.answer(11, "define", "balloon", boot=2)
    assert first.status == ApiStatus.UPSTREAM_ERROR
    assert p.answer(11, "define", "balloon", boot=2) == first  # not asked again, not a different answer
    assert upstream.hits["/flaky/entries/en/balloon"] == 1
    p.answer(11, "define", "balloon", boot=3)  # another boot's request 11 is another request: asked
    assert upstream.hits["/flaky/entries/en/balloon"] == 2
    assert p.answer(11, "define", "balloon", boot=4).status == ApiStatus.OK


# --------------------------------------------------------------------------- from the listener


def request(boot, seq, api, query):
    return wire.Record(wire.Kind.API_REQUEST, boot, seq, 1_750_000_000, {"api": api, "query": query})


def answers_in(store):
    return [(row["what"], ApiAnswer.unpack(row["args"])) for row in store.outbox.pending(limit=100)
            if row["command"] == CommandId.API_ANSWER]


def test_on_record_queues_exactly_one_answer_per_request(upstream, tmp_path):
    db = tmp_path / "flight.db"
    with Store(db) as store:
        p = proxy(apis(upstream.base))
        try:
            rec = request(1, 5, "define", "balloon")
            assert p.on_record(rec, store) is True
            assert p.on_record(rec, store) is False  # heard again
            assert p.on_record(request(1, 6, "weather", "51.5,-0.1"), store) is True
            assert p.on_record(request(1, 7, "horoscope", "leo"), store) is True
            assert p.on_record(wire.Record(wire.Kind.MUSING, 1, 5, 1_750_000_000, "hi"), store) is False
            position = wire.Telemetry("S", 5, "12:00:00", 52.0, 0.1, 900, 8, 12.0, 990.0, 3900, 1)
            assert p.on_record(position, store) is False
        finally:
            p.close(timeout_s=30)  # after answering every request taken
        got = answers_in(store)
    assert sorted(got) == sorted([
        ("api answer to request 1/5: ok", ApiAnswer(5, ApiStatus.OK, "balloon (noun): An inflatable bag of thin material.")),
        ("api answer to request 1/6: ok", ApiAnswer(6, ApiStatus.OK, "Weather at 51.5,-0.1: overcast, 17 °C, wind 13 km/h.")),
        ("api answer to request 1/7: refused", ApiAnswer(7, ApiStatus.REFUSED, "")),
    ])
    assert p.stats()["api_answers_queued"] == 3


def test_on_record_after_restart_finds_earlier_answers_in_the_outbox(upstream, tmp_path):
    db = tmp_path / "flight.db"
    with Store(db) as store:
        first = proxy(apis(upstream.base))
        assert first.on_record(request(2, 1, "news", "headlines"), store)
        first.close(timeout_s=30)
    with Store(db) as store:  # a new ground process
        assert store.outbox.answered_requests() == {(2, 1)}
        # Found by its columns, not its words: a line reworded by a later version still counts.
        store.outbox.queue(CommandId.API_ANSWER, ApiAnswer(9, ApiStatus.OK, "x").pack(), "reworded", answers=(2, 9))
        again = proxy(apis(upstream.base))
        try:
            assert again.on_record(request(2, 1, "news", "headlines"), store) is False
            assert again.on_record(request(2, 9, "news", "headlines"), store) is False
            assert again.on_record(request(3, 1, "news", "headlines"), store) is True  # new boot, same seq
        finally:
            again.close(timeout_s=30)
        whats = [w for w, _ in answers_in(store)]
        assert store.outbox.answered_requests() == {(2, 1), (2, 9), (3, 1)}
    assert sorted(whats) == ["api answer to request 2/1: ok", "api answer to request 3/1: ok", "reworded"]
    assert upstream.hits["/news.xml"] == 2  # each process asked once; the repeat was not asked at all


# --------------------------------------------------------------------------- configuration


def test_config_file_and_flags_choose_urls_and_allow_list(tmp_path, upstream):
    cfg = tmp_path / "proxy.toml"
    cfg.write_text(f"""
timeout_s = 3
cache_s = 60
[apis.define]
url = "{upstream.base}/entries/en"
[apis.headlines]
type = "news"
url = "{upstream.base}/nowhere.xml"
headlines = 1
""", encoding="utf-8")
    assert proxy_from_config(ProxySection(), 8, 255) is None
    p = proxy_from_config(ProxySection(enabled=True, config=cfg, news_url="http://unused.invalid/x"), 8, 64)
    assert set(p.apis) == {"define", "headlines"} and p.timeout_s == 3 and p.cache_s == 60
    assert p.room == answer_room(8, 64)
    assert p.answer(1, "weather", "1,2").status == ApiStatus.REFUSED  # not listed in the file
    assert p.answer(2, "define", "balloon").status == ApiStatus.OK
    assert p.answer(3, "headlines", "x").status == ApiStatus.NOT_FOUND  # 404 from the file's URL


def test_defaults_are_the_public_apis():
    cfg = load_config(None, news_url="https://example.org/feed.rss")
    assert {n: s.url for n, s in cfg["apis"].items()} == {
        "weather": "https://api.open-meteo.com/v1/forecast",
        "define": "https://api.dictionaryapi.dev/api/v2/entries/en",
        "news": "https://example.org/feed.rss"}


@pytest.mark.parametrize("text", [
    "timeout = 3", "[apis.weather]\nurl = \"ftp://x/y\"", "[apis.tarot]\nurl = \"http://x/\"",
    "[apis.define]\nheadlines = 2", "cache_s = -1", "not toml ["])
def test_bad_config_is_a_clear_error(tmp_path, text):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text, encoding="utf-8")
    with pytest.raises(ProxyConfigError, match="bad.toml"):
        load_config(cfg)
