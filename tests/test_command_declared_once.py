"""A command is declared once, end to end (issue 43): a command no flight has, `Flare`, is
declared here in ONE place (its class with its operator form, as stratoecho/wire/commands.py
declares the real ones) and given ONE handler (an entry in payload/uplink/handler.py's table),
and nothing else is told of it. It is then listed by GET /api/commands, drawn as a form on the
dashboard in a real Chromium, queued, signed by the listener in the payload's listen window,
let through by the payload's gate and handled."""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import ClassVar

import pytest

from groundstation.link.windows import WindowAnswerer
from groundstation.store import Store as GroundStore
from payload.assembly import build_onboard
from payload.clock import Clock
from payload.config import PayloadConfig, UplinkSection
from payload.uplink import handler as payload_handler
from sim.world.flight import SimSensors
from stratoecho.wire import uplink
from stratoecho.wire.commands import Command, OperatorForm, Whole, register_command
from stratoecho.wire.uplink_keys import new_key, write_key_file
from tests.fakes import RecordingRadio
from tests.test_dashboard import (  # noqa: F401 - fixtures
    CHROMIUM,
    browser,
    choose_command,
    dashboard,
    get_json,
    ground_db,
    open_page,
    outbox_rows,
    post_command,
    wait,
)

KEY = new_key()


class Spare(enum.IntEnum):
    FLARE = 15  # an id no command has


@dataclass(frozen=True)
class Flare(Command):
    """Light the recovery flare for `seconds`: declared here only."""

    seconds: int
    command_id: ClassVar[Spare] = Spare.FLARE
    form: ClassVar[OperatorForm] = OperatorForm(
        "flare", "Lights the recovery flare.", (Whole("seconds", "burn for", 1, 30, "s", 5),), "flare for {seconds} s")
    _fmt: ClassVar[struct.Struct] = struct.Struct(">B")

    def __post_init__(self) -> None:
        self._check_form()

    def pack(self) -> bytes:
        return self._fmt.pack(self.seconds)

    @classmethod
    def unpack(cls, data: bytes) -> Flare:
        return cls(*cls._fmt.unpack(data))


@pytest.fixture
def lit(monkeypatch) -> list:
    """The two edits a new command needs, and no third: its declaration, and its handler."""
    handled: list = []
    register_command(Flare)
    monkeypatch.setitem(payload_handler.TABLE, Spare.FLARE, payload_handler.Acts(lambda h, cmd: handled.append(cmd)))
    try:
        yield handled
    finally:
        del uplink.COMMANDS[Spare.FLARE]


def test_the_declaration_is_listed_and_queued_with_its_bounds(lit, dashboard, ground_db):  # noqa: F811
    listed = {c["command"]: c for c in get_json(dashboard, "/api/commands")}
    assert listed["flare"]["label"] == "flare" and not listed["flare"]["risky"]
    (seconds,) = listed["flare"]["fields"]
    assert (seconds["type"], seconds["min"], seconds["max"], seconds["unit"], seconds["default"]) == (
        "integer", 1, 30, "s", 5)
    status, answer = post_command(dashboard, {"command": "flare", "seconds": 31})  # the declared bound
    assert status == 400 and "1..30" in answer["error"]
    status, answer = post_command(dashboard, {"command": "flare", "seconds": 12})
    assert status == 201 and answer["what"] == "flare for 12 s"
    assert outbox_rows(ground_db) == [(Spare.FLARE, b"\x0c", "flare for 12 s", None)]


def test_a_queued_declaration_is_signed_received_and_handled(lit, dashboard, ground_db, tmp_path):  # noqa: F811
    assert post_command(dashboard, {"command": "flare", "seconds": 7})[0] == 201
    key_file = tmp_path / "uplink.key"
    write_key_file(key_file, key=KEY)
    clock = Clock(speedup=1.0)
    cfg = PayloadConfig(uplink=UplinkSection(key_file=str(key_file)))
    daemon = build_onboard(cfg, SimSensors(clock), RecordingRadio(), clock, None, tmp_path / "data")
    sent: list[bytes] = []
    with GroundStore(ground_db) as store:
        link = WindowAnswerer(key_file, ground_db, lambda frame, peer: sent.append(frame), cfg.callsign, store=store)
        link.window(("127.0.0.1", 1), {})  # the payload's listen window: the listener signs what is queued
        try:
            for frame in sent:
                daemon.parts.commands.on_frame(frame)
            assert lit == [Flare(7)]
            assert daemon.parts.commands.stats.commands == {"flare": 1}
        finally:
            daemon.parts.store.close()
    assert outbox_rows(ground_db)[0][3] is not None  # marked sent


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} "
                    "(Debian's chromium and chromedriver packages; make test installs them)")
def test_the_dashboard_draws_the_declaration_as_a_form(lit, browser, dashboard, ground_db):  # noqa: F811
    open_page(browser, dashboard)
    choose_command(browser, "flare")
    field = browser.find_element("id", "cmd-flare-seconds")
    assert (field.get_attribute("min"), field.get_attribute("max"), field.get_attribute("value")) == ("1", "30", "5")
    assert "s" in field.find_element("xpath", "..").text  # its unit
    field.clear()
    field.send_keys("9")
    browser.find_element("id", "cmd-send").click()
    wait(browser, lambda d: d.find_element("id", "cmd-status").text == "queued #1: flare for 9 s",
         "the flare was not queued from its form")
    assert outbox_rows(ground_db) == [(Spare.FLARE, b"\x09", "flare for 9 s", None)]


def test_a_declaration_that_clashes_is_refused():
    @dataclass(frozen=True)
    class Ping2(Command):  # the id of a command there is
        command_id: ClassVar[uplink.CommandId] = uplink.CommandId.PING

    with pytest.raises(ValueError, match="command id 1 is Ping's already"):
        register_command(Ping2)

    class Named(enum.IntEnum):
        PING = 14

    @dataclass(frozen=True)
    class Echo(Command):  # another command's name
        command_id: ClassVar[Named] = Named.PING

    with pytest.raises(ValueError, match="named ping is on the allow-list already"):
        register_command(Echo)

    @dataclass(frozen=True)
    class Stray(Command):  # a form naming a field it does not hold
        seconds: int
        command_id: ClassVar[Spare] = Spare.FLARE
        form: ClassVar[OperatorForm] = OperatorForm("stray", "", (Whole("minutes", "m", 1, 2),), "{minutes}")

    with pytest.raises(ValueError, match="form names minutes, which it does not hold"):
        register_command(Stray)

    class Wide(enum.IntEnum):
        SIXTEENTH = 16

    @dataclass(frozen=True)
    class TooFar(Command):
        command_id: ClassVar[Wide] = Wide.SIXTEENTH

    with pytest.raises(ValueError, match=r"in 1\.\.15"):
        register_command(TooFar)
    assert set(uplink.COMMANDS) == set(uplink.CommandId)  # none of them went on the list
