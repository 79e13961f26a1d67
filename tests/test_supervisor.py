"""The bench's service manager: the shipped unit read as systemd reads it, and its contract kept."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest

from sim.bench.run.supervisor import PAYLOAD_UNIT, Supervisor, UnitError, parse_timespan, parse_unit


def test_the_shipped_unit_is_read_as_systemd_reads_it():
    u = parse_unit(PAYLOAD_UNIT)
    assert (u.type, u.notify_access) == ("notify", "main")
    assert u.watchdog_s == 30.0
    assert (u.timeout_start_s, u.timeout_stop_s, u.timeout_abort_s) == (300.0, 20.0, 20.0)
    assert (u.restart, u.restart_s) == ("always", 5.0)
    assert (u.start_limit_interval_s, u.start_limit_burst, u.start_limit_action) == (900.0, 5, "reboot")
    assert (u.kill_mode, u.kill_signal, u.watchdog_signal) == ("mixed", signal.SIGTERM, signal.SIGABRT)
    assert u.environment["PYTHONFAULTHANDLER"] == "1" and u.environment["STRATOECHO_LOG_JSON"] == "1"


@pytest.mark.parametrize("text, seconds", [
    ("30s", 30.0), ("20", 20.0), ("15min", 900.0), ("1h 30min", 5400.0), ("5s500ms", 5.5), ("2 hours", 7200.0),
])
def test_time_spans(text, seconds):
    assert parse_timespan(text) == seconds


def test_a_bad_unit_names_file_line_and_key(tmp_path):
    unit = tmp_path / "x.service"
    unit.write_text("[Unit]\nDescription=x\n\n[Service]\nType=notify\nWatchdogSec=30 fortnights\n")
    with pytest.raises(UnitError, match=r"x\.service:6: WatchdogSec=.*unknown unit 'fortnights'"):
        parse_unit(unit)
    unit.write_text("[Service]\nKillSignal=SIGNOPE\n")
    with pytest.raises(UnitError, match=r"x\.service:2: KillSignal=.*not a signal name"):
        parse_unit(unit)


def notify(sup: Supervisor, *lines: str) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto("\n".join(lines).encode(), str(sup.path))


@pytest.fixture
def sup(tmp_path):
    s = Supervisor(parse_unit(PAYLOAD_UNIT), tmp_path / "notify")
    yield s
    s.close()


def test_environment_is_what_systemd_hands_the_service(sup):
    env = sup.env()
    assert env["NOTIFY_SOCKET"] == str(sup.path) and env["WATCHDOG_USEC"] == "30000000"
    assert env["PYTHONFAULTHANDLER"] == "1"


def test_watchdog_arms_at_ready_and_fires_without_pings(sup):
    sup.started(os.getpid(), 0.0)
    assert sup.due(299.0) is None and sup.next_deadline() == 300.0  # TimeoutStartSec
    notify(sup, "READY=1", "STATUS=flying")
    sup.receive(10.0)
    assert sup.state == "running" and sup.next_deadline() == 40.0
    for t in (25.0, 50.0, 75.0):
        notify(sup, "WATCHDOG=1")
        sup.receive(t)
        assert sup.due(t) is None
    assert sup.due(104.9) is None
    notify(sup, "STATUS=not feeding the watchdog: beacon overdue")
    sup.receive(104.9)
    assert sup.due(105.0) == ("signal", signal.SIGABRT)
    assert sup.stats.watchdog_timeouts == 1 and "beacon overdue" in sup.verdicts[-1].detail
    # TimeoutAbortSec (= TimeoutStopSec) later, what is left is killed.
    assert sup.due(124.9) is None and sup.due(125.0) == ("kill", signal.SIGKILL)
    assert sup.exited(-signal.SIGKILL, 125.5) is True  # Restart=always


def test_no_ready_within_the_start_timeout_is_a_failed_start(sup):
    sup.started(os.getpid(), 0.0)
    assert sup.due(300.0) == ("signal", signal.SIGTERM)
    assert sup.due(320.0) == ("kill", signal.SIGKILL) and sup.stats.start_timeouts == 1


def test_only_the_main_process_may_notify(sup):
    sup.started(os.getpid() + 1, 0.0)  # someone else is the main process: NotifyAccess=main
    notify(sup, "READY=1")
    sup.receive(1.0)
    assert sup.state == "starting" and sup.stats.foreign_notifications == 1


def test_a_stop_longer_than_timeout_stop_sec_is_killed(sup):
    sup.started(os.getpid(), 0.0)
    notify(sup, "READY=1")
    sup.receive(1.0)
    assert sup.stopping(100.0) == signal.SIGTERM
    assert sup.due(119.9) is None and sup.due(120.0) == ("kill", signal.SIGKILL)
    assert sup.stats.stop_timeouts == 1
    assert sup.exited(-signal.SIGKILL, 120.1) is False  # systemctl stop: no restart


def test_start_limit_burst_within_the_interval_calls_the_start_limit_action(sup):
    for t in (0.0, 60.0, 120.0, 180.0, 240.0):
        assert sup.may_start(t)
        sup.started(1, t)
        sup.exited(1, t + 1)
    assert not sup.may_start(300.0)  # the sixth start within 15 minutes
    assert sup.verdicts[-1].what == "start_limit" and "StartLimitAction=reboot" in sup.verdicts[-1].detail
    assert sup.may_start(900.0)  # the first start has left the window
    sup.rebooted()
    assert sup.may_start(301.0)


def test_a_real_process_feeding_the_watchdog(sup, tmp_path):
    """The payload's own notifier (stratoecho.systemd) in another process, as systemd sees it."""
    code = ("from stratoecho.systemd import SystemdNotifier as N; n = N(); "
            "assert n.watchdog_interval_s() == 30.0; n.ready(status='up'); n.watchdog()")
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, **sup.env()})
    sup.started(proc.pid, 0.0)
    assert proc.wait(timeout=60) == 0
    sup.receive(5.0)
    assert sup.state == "running" and sup.stats.watchdog_pings == 1 and sup.status == "up"
