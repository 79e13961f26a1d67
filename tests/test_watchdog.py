"""payload/watchdog.py against a real datagram socket standing in for systemd.

systemd reads sd_notify messages from an AF_UNIX datagram socket whose address it puts
in $NOTIFY_SOCKET; `systemd_socket` binds one (a path, or a name in Linux's abstract
namespace) and these tests read what the payload sent, byte for byte.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
import uuid

import pytest
from structlog.testing import capture_logs

from payload.policy.modes import Mode
from payload.watchdog import DEFAULT_INTERVAL_S, Liveness, RestartLimiter, SystemdNotifier, Watchdog, boot_banner
from tests.fakes import FakeClock


class SystemdSocket:
    """The receiving end of $NOTIFY_SOCKET."""

    def __init__(self, sock: socket.socket, env_value: str):
        self.sock, self.env_value = sock, env_value

    def messages(self, timeout_s: float = 2.0) -> list[str]:
        """Every datagram waiting now (the first one waited for up to `timeout_s`)."""
        out = []
        self.sock.settimeout(timeout_s)
        while True:
            try:
                out.append(self.sock.recv(4096).decode("utf-8"))
            except (TimeoutError, BlockingIOError):
                return out
            self.sock.setblocking(False)  # then only what is already queued

    def nothing_more(self) -> bool:
        return self.messages(timeout_s=0.1) == []


@pytest.fixture(params=["path", "abstract"])
def systemd_socket(request, monkeypatch):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        # A short directory of its own: AF_UNIX paths are limited to 107 bytes.
        directory = tempfile.mkdtemp(prefix="sdn-", dir="/tmp")
        address = os.path.join(directory, "notify")
        sock.bind(address)
        env_value = address
    else:
        name = f"stratoecho-test-{uuid.uuid4().hex}"
        sock.bind("\0" + name)
        env_value = "@" + name
    monkeypatch.setenv("NOTIFY_SOCKET", env_value)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    try:
        yield SystemdSocket(sock, env_value)
    finally:
        sock.close()
        if request.param == "path":
            os.unlink(env_value)
            os.rmdir(os.path.dirname(env_value))


# --------------------------------------------------------------------------- notifier


def test_notifier_speaks_sd_notify(systemd_socket):
    n = SystemdNotifier()
    assert n.enabled
    assert n.ready(status="flying, boot 3")
    assert systemd_socket.messages() == ["READY=1\nSTATUS=flying, boot 3"]
    assert n.watchdog() and systemd_socket.messages() == ["WATCHDOG=1"]
    assert n.status("gps lost\nretrying") and systemd_socket.messages() == ["STATUS=gps lost retrying"]
    assert n.stopping() and systemd_socket.messages() == ["STOPPING=1"]
    n.close()


def test_notifier_without_notify_socket_does_nothing(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = SystemdNotifier()
    assert not n.enabled
    assert (n.ready(), n.watchdog(), n.status("x"), n.stopping()) == (False, False, False, False)
    assert n._sock is None  # not even a socket opened on the bench


def test_notifier_that_cannot_send_logs_once_and_never_raises(tmp_path):
    n = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    with capture_logs() as logs:
        assert n.watchdog() is False
        assert n.watchdog() is False
    assert [e["event"] for e in logs] == ["sd_notify_failed"]


def test_notifier_does_not_hang_when_systemd_stops_reading(systemd_socket):
    n = SystemdNotifier(send_timeout_s=0.05)
    sent = []
    while len(sent) < 300 and (not sent or sent[-1]):  # far more than the kernel queues unread
        sent.append(n.watchdog())
    assert sent[0] is True and sent[-1] is False  # the queue filled; the sender gave up, did not block
    assert systemd_socket.messages()[0] == "WATCHDOG=1"


def test_notifier_ignores_an_address_it_cannot_use():
    with capture_logs() as logs:
        n = SystemdNotifier({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not n.enabled and n.watchdog() is False
    assert logs[0]["event"] == "notify_socket_unsupported"


@pytest.mark.parametrize("env, expected", [
    ({"WATCHDOG_USEC": "30000000"}, 30.0),
    ({"WATCHDOG_USEC": "2500000", "WATCHDOG_PID": str(os.getpid())}, 2.5),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),  # meant for a parent
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "me"}, None),
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "-5"}, None),
    ({"WATCHDOG_USEC": "30s"}, None),
    ({"WATCHDOG_USEC": ""}, None),
    ({}, None),
])
def test_watchdog_interval_from_environment(env, expected):
    assert SystemdNotifier(env).watchdog_interval_s() == expected


# --------------------------------------------------------------------------- liveness


def test_liveness_overdue_and_ping():
    clock = FakeClock()
    live = Liveness(clock)
    live.register("beacon", 90)
    live.register("think", 900)
    clock.advance(90)
    assert live.overdue() == []  # registration counts as a ping; limit inclusive
    clock.advance(1)
    assert live.overdue() == ["beacon"]
    live.ping("beacon")
    assert not live.overdue()
    clock.advance(1000)
    assert live.overdue() == ["beacon", "think"]
    assert live.overdue(now=clock.t - 1000) == []  # an explicit `now` is used as given


def test_liveness_reregistering_changes_the_allowance_not_the_clock():
    clock = FakeClock()
    live = Liveness(clock)
    live.register("beacon", 30)
    clock.advance(40)
    live.register("beacon", 60)  # the uplink stretched the period
    assert not live.overdue()
    clock.advance(21)
    assert live.overdue() == ["beacon"]  # silent 61 s since its last sign of life


def test_liveness_rejects_unknown_keys_and_bad_allowances():
    live = Liveness(FakeClock())
    with pytest.raises(KeyError, match="beacn"):
        live.ping("beacn")
    with pytest.raises(ValueError):
        live.register("beacon", 0)


def test_paused_key_never_starves_and_resumes_with_a_fresh_allowance():
    clock = FakeClock()
    live = Liveness(clock)
    live.register("think", 100)
    live.pause("think")  # low power: the language model is shed
    clock.advance(10_000)
    assert not live.overdue()
    live.resume("think")
    assert not live.overdue()  # not hung for the hours it was shed
    clock.advance(101)
    assert live.overdue() == ["think"]


def test_unregistered_key_is_forgotten():
    clock = FakeClock()
    live = Liveness(clock)
    live.register("camera", 10)
    live.unregister("camera")
    clock.advance(100)
    assert not live.overdue() and live.keys() == []
    live.pause("camera")  # pausing what is not there does not bring it back
    assert live.keys() == []


# --------------------------------------------------------------------------- watchdog


def test_watchdog_feeds_only_while_every_key_is_current(systemd_socket):
    clock = FakeClock()
    live = Liveness(clock)
    live.register("beacon", 90)
    live.register("radio", 60)
    dog = Watchdog(live, SystemdNotifier(), clock, interval_s=30)

    assert dog.tick() is True
    assert systemd_socket.messages() == ["WATCHDOG=1"]

    clock.advance(61)
    live.ping("beacon")  # the radio thread is stuck; the beacon is not
    with capture_logs() as logs:
        assert dog.tick() is False
        clock.advance(15)
        assert dog.tick() is False  # same episode: no second log, no second STATUS
    assert systemd_socket.messages() == ["STATUS=not feeding the watchdog: radio overdue"]
    assert systemd_socket.nothing_more()  # and above all no WATCHDOG=1
    assert [(e["event"], e["overdue"]) for e in logs] == [("watchdog_starved", ["radio"])]
    assert dog.starving == ["radio"] and dog.episodes == 1

    live.ping("radio")
    with capture_logs() as logs:
        assert dog.tick() is True
    assert systemd_socket.messages() == ["STATUS=all tasks current", "WATCHDOG=1"]
    assert [e["event"] for e in logs] == ["watchdog_fed_again"]
    assert dog.starving == []


def test_watchdog_reports_again_when_another_key_goes_overdue(systemd_socket):
    clock = FakeClock()
    live = Liveness(clock)
    live.register("beacon", 90)
    live.register("radio", 60)
    dog = Watchdog(live, SystemdNotifier(), clock, interval_s=30)
    clock.advance(61)
    dog.tick()
    clock.advance(30)
    with capture_logs() as logs:
        dog.tick()
    assert systemd_socket.messages() == ["STATUS=not feeding the watchdog: radio overdue",
                                         "STATUS=not feeding the watchdog: beacon, radio overdue"]
    assert logs[0]["overdue"] == ["beacon", "radio"] and dog.episodes == 1


def test_shed_task_does_not_starve_the_watchdog(systemd_socket):
    clock = FakeClock()
    live = Liveness(clock)
    live.register("beacon", 90)
    live.register("think", 900)
    dog = Watchdog(live, SystemdNotifier(), clock, interval_s=30)
    live.pause("think")
    fed = 0
    for _ in range(100):  # almost an hour in low power: the beacon keeps pinging, think is silent
        clock.advance(30)
        live.ping("beacon")
        assert dog.tick()
        fed += systemd_socket.messages() == ["WATCHDOG=1"]  # read as systemd would, each time
    assert fed == 100


def test_watchdog_interval_comes_from_systemd(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "12000000")
    assert Watchdog(Liveness(), SystemdNotifier()).interval_s == 12.0
    monkeypatch.delenv("WATCHDOG_USEC")
    assert Watchdog(Liveness(), SystemdNotifier()).interval_s == DEFAULT_INTERVAL_S
    assert Watchdog(Liveness(), SystemdNotifier(), interval_s=4).interval_s == 4


def test_watchdog_without_systemd_still_judges(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    clock = FakeClock()
    live = Liveness(clock)
    live.register("beacon", 10)
    dog = Watchdog(live, SystemdNotifier(), clock)
    assert dog.tick() is True
    clock.advance(11)
    with capture_logs() as logs:
        assert dog.tick() is False  # the bench log shows what would have restarted the daemon
    assert logs[0]["event"] == "watchdog_starved" and logs[0]["restart_in_s"] is None


def test_hung_thread_stops_the_feed_thread(systemd_socket):
    """Real threads, real time: two workers ping in loops, one then blocks; the feed
    thread started with `start` stops sending WATCHDOG=1 and names the hung one."""
    live = Liveness()
    stop, hang = threading.Event(), threading.Event()

    def worker(key: str, hangs: bool) -> None:
        while not stop.is_set():
            if hangs and hang.is_set():
                stop.wait()  # stands for a serial read that never returns
            live.ping(key)
            stop.wait(0.01)

    live.register("beacon", 3.0)  # generous: a loaded test machine must not make it blip
    live.register("radio", 0.5)
    threads = [threading.Thread(target=worker, args=(k, k == "radio"), daemon=True) for k in ("beacon", "radio")]
    for t in threads:
        t.start()
    feeder = Watchdog(live, SystemdNotifier(), interval_s=0.2).start(stop)
    try:
        assert systemd_socket.messages(timeout_s=5)[:1] == ["WATCHDOG=1"]
        hang.set()
        deadline = time.monotonic() + 30
        seen: list[str] = []
        while "STATUS=not feeding the watchdog: radio overdue" not in seen and time.monotonic() < deadline:
            seen += systemd_socket.messages(timeout_s=1)
        assert "STATUS=not feeding the watchdog: radio overdue" in seen
        assert systemd_socket.messages(timeout_s=0.5) == []  # starved: nothing more is sent
    finally:
        stop.set()
        feeder.join(timeout=5)
        for t in threads:
            t.join(timeout=5)
    assert not feeder.is_alive()


# --------------------------------------------------------------------------- restart limiter


def test_restart_limiter_window():
    clock = FakeClock(0.0)
    limit = RestartLimiter(max_restarts=3, window_s=600, clock=clock)
    allowed = []
    for _ in range(3):  # restarts at t = 0, 10, 20
        allowed.append(limit.allow())
        clock.advance(10)
    assert allowed == [True, True, True]
    with capture_logs() as logs:
        assert limit.allow() is False
        clock.advance(569)  # t = 599
        assert limit.allow() is False  # left down: the payload flies without musings
    assert [e["event"] for e in logs] == ["restarts_exhausted"]  # once, on the transition
    assert limit.refused == 2 and limit.retry_in_s() == pytest.approx(1)
    clock.advance(1)  # the t=0 restart leaves the window: one more, not three
    assert limit.allow() is True
    assert limit.allow() is False
    clock.advance(20)  # t = 620: the t=10 and t=20 ones have left too
    assert [limit.allow(), limit.allow(), limit.allow()] == [True, True, False]


def test_restart_limiter_slides():
    clock = FakeClock(0.0)
    limit = RestartLimiter(max_restarts=2, window_s=100, clock=clock)
    assert limit.allow()
    clock.advance(60)
    assert limit.allow()
    clock.advance(50)  # t=110: the first is out, the second (t=60) still in
    assert limit.allow() is True
    assert limit.allow() is False
    assert limit.retry_in_s() == pytest.approx(50)  # the t=60 restart leaves at t=160
    clock.advance(50)
    assert limit.retry_in_s() == 0 and limit.allow()


def test_restart_limiter_edges():
    assert RestartLimiter(0, 60, FakeClock()).allow() is False  # never restart
    with pytest.raises(ValueError):
        RestartLimiter(3, 0, FakeClock())
    with pytest.raises(ValueError):
        RestartLimiter(-1, 60, FakeClock())


# --------------------------------------------------------------------------- boot banner


def test_boot_banner_is_short_and_says_who_flies():
    e = boot_banner("0.1.0", ("Ada Lindqvist", "3f2a9c1b" + "0" * 56), 812.7, 12, Mode.NOMINAL)
    assert e.text == "boot 12 v0.1.0 nominal persona Ada_Lindqvist#3f2a9c1b free 812MB"
    assert (e.name, e.fields["persona"], e.fields["model"], e.fields["free_mb"]) == ("boot", "Ada_Lindqvist", "3f2a9c1b", 812)
    assert boot_banner("0.1.0", None, 5, 13, "low_power", unplanned=True, phase="float").text == (
        "boot 13 v0.1.0 low_power no persona free 5MB; unplanned reboot, starting in low_power, phase float")


def test_boot_banner_without_persona_or_free_space():
    assert boot_banner("0.1.0", None, None, 1, "survival").text == "boot 1 v0.1.0 survival no persona free ?"


def test_boot_banner_cannot_be_made_long_or_multiline():
    text = boot_banner("0.1.0", ("A very long persona name\nwith a newline", "ab" * 32), 131_072, 4_294_967_295,
                       Mode.LOW_POWER).text
    assert "\n" not in text and len(text) <= 80
    assert "persona A_very_long_pers#abababab" in text
