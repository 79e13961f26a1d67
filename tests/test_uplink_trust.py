"""Whom the ground signs for, and when (issue 41, attacks 2, 3 and 6), tried as an attacker would:
forged sentences under new callsigns and one whose 16-bit hash is the balloon's, an old
"unconfirmed" event played back after the operator changed the mode again, a cue the ground
missed played back later, directly and inside a relay envelope.

The frames an attacker plays back are the balloon's own (tagged with the flight key): a
recording. The ground is driven as `listen` drives it (`Ground`, from test_downlink_trust), with
a clock the test owns; the last test runs the real `listen` process over UDP, restarts it, and
plays the same attacks against it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from groundstation.link.decoder import FrameDecoder
from groundstation.link.windows import WindowAnswerer
from groundstation.store import Store
from payload.watchdog import boot_banner
from sim.bench.fly.processes import wait_listening
from stratoecho import wire
from stratoecho.wire import uplink
from stratoecho.wire.relay import encode_relayed
from stratoecho.wire.uplink_keys import new_key
from tests.fakes import AUTH, live_sentence, wait_for, write_flight_key
from tests.test_downlink_trust import BOOT, CALL, UPLINK_TO, Ground, position

PID = uplink.payload_hash(CALL)


def collider() -> str:
    """A callsign whose 16-bit hash is the balloon's: found in well under a second."""
    return next(c for c in (f"F{i}" for i in range(10**7)) if uplink.payload_hash(c) == PID)


def cue(seq: int, sent_s: int, listen_s: int = 20, boot: int = BOOT) -> bytes:
    return wire.encode_window(wire.Window(boot, seq, PID, sent_s, listen_s), AUTH)


def boot_event(callsign: str = CALL, seq: int = 1) -> list[bytes]:
    banner = boot_banner("0.1.0", ("Ada", "3f2a9c1b"), 812, BOOT, "nominal", callsign=callsign)
    return wire.fragment_record(wire.Record(wire.Kind.EVENT, BOOT, seq, 1_767_225_600, banner), auth=AUTH)


def unconfirmed(cmd: uplink.Command, seq: int) -> list[bytes]:
    e = uplink.unconfirmed_event(cmd, f"set mode {cmd.mode}", 1800)
    return wire.fragment_record(wire.Record(wire.Kind.EVENT, BOOT, seq, 1_767_225_600, e), auth=AUTH)


def sentence(callsign: str, seq: int) -> bytes:
    """A position sentence anyone can send: unsigned, under any callsign."""
    return wire.encode_sentence(wire.Telemetry(callsign, seq, "10:04:11", 52.2, 0.12, 12345, 9, -40.5, 180.2, 3890, BOOT))


def signed(seq: int, at_s: float, boot: int = BOOT) -> bytes:
    """The balloon's own position sentence, its GPS time `at_s`: it dates the first cue of a boot."""
    return live_sentence(boot, seq, CALL, at_s=at_s)


def on_clock(g: Ground, t: list[float]) -> Ground:
    g.link.now = lambda: t[0]
    return g


def restart(g: Ground, t: list[float], callsign: str | None = CALL) -> Ground:
    """The same station started again: its database and state file, nothing heard yet."""
    g.store.close()
    g.store = Store(g.db)
    g.link = WindowAnswerer(g.key_path, g.db, lambda f, peer: g.sent.append((f, peer)), callsign=callsign,
                        uplink_to=UPLINK_TO, store=g.store, now=lambda: t[0])
    g.decoder = FrameDecoder(auth=AUTH)
    return g


def queue_note(store: Store, text: str = "the river bends west") -> int:
    note = uplink.MemoryNote(text)
    return store.outbox.queue(int(note.command_id), note.pack(), "a note")


# --------------------------------------------------------------------------- attack 2


def test_forged_sentences_never_name_whom_the_uplink_signs_for(tmp_path):
    """Before: without --callsign, 300 forged sentences meant the real cue was never answered, and
    one sentence under a callsign of the same hash made the ground sign for it (the payload
    refused every frame) and mark the operator's command sent."""
    t = [1000.0]
    g = on_clock(Ground(tmp_path, callsign=None), t)
    queue_note(g.store)
    forged = [sentence(f"N{i}", i) for i in range(300)] + [sentence(collider(), 6)] * 50
    g.hear(*forged, cue(6, 180))
    assert g.sent == [] and len(g.store.outbox.pending()) == 1  # nobody named yet: nothing signed, nothing lost
    g.hear(*boot_event())  # the balloon's tagged boot event names it
    t[0] += 180
    g.hear(sentence(collider(), 12), signed(12, t[0]), cue(12, 360))
    assert any(isinstance(c, uplink.MemoryNote) for c in g.commands())  # verified under CALL, counters in order
    assert g.store.outbox.pending() == []


def test_after_a_restart_the_ground_signs_for_the_callsign_it_signed_for_before(tmp_path):
    t = [1000.0]
    g = on_clock(Ground(tmp_path, callsign=None), t)
    g.hear(*boot_event(), signed(6, t[0]), cue(6, 180))
    assert isinstance(g.commands()[0], uplink.LinkReport)
    again = restart(g, t, callsign=None)
    queue_note(again.store)
    t[0] += 180
    again.hear(sentence(collider(), 12), cue(12, 360))
    assert any(isinstance(c, uplink.MemoryNote) for c in again.commands())


def test_a_forged_boot_event_names_nobody(tmp_path):
    forger = wire.DownlinkAuth.from_flight_key(new_key())
    banner = boot_banner("0.1.0", ("Ada", None), 812, BOOT, "nominal", callsign=collider())
    g = Ground(tmp_path, callsign=None)
    g.hear(*wire.fragment_record(wire.Record(wire.Kind.EVENT, BOOT, 1, 1_767_225_600, banner), auth=forger),
           cue(6, 180))
    assert g.sent == [] and g.link.cues_refused == 1


# --------------------------------------------------------------------------- attack 3


def test_an_old_unconfirmed_event_played_back_does_not_roll_the_operator_back(tmp_path):
    """Before: after a ground restart, the real old "unconfirmed set mode" event made the ground
    sign the old mode again over the operator's newer one."""
    t = [1000.0]
    g = on_clock(Ground(tmp_path), t)
    low, survival = uplink.SetMode(1), uplink.SetMode(2)
    g.store.outbox.mark_sent(g.store.outbox.queue(int(low.command_id), low.pack(), "set mode low_power"))
    old_event = unconfirmed(low, 7)
    g.hear(*old_event, signed(6, t[0]), cue(6, 180))  # heard once: confirmed, as designed
    assert [c for c in g.commands() if isinstance(c, uplink.SetMode)] == [low]
    g.store.outbox.mark_sent(g.store.outbox.queue(int(survival.command_id), survival.pack(), "set mode survival"))
    again = restart(g, t)  # the decoder has forgotten everything
    sent_before = len(again.sent)
    t[0] += 180
    again.hear(*old_event, cue(12, 360))  # the recording again
    t[0] += 180
    again.hear(*unconfirmed(low, 9), cue(18, 540))  # or one the ground never heard: low is no longer the newest
    assert not any(isinstance(c, uplink.SetMode) for c in again.commands()[sent_before:])
    assert again.store.outbox.pending() == []


# --------------------------------------------------------------------------- attack 6


def test_a_missed_cue_played_back_later_opens_nothing_and_the_command_waits(tmp_path):
    """Before: a cue the ground never heard, played back minutes later, made it send the
    operator's queued command while the payload was not listening, and mark it sent."""
    t = [1000.0]
    g = on_clock(Ground(tmp_path), t)
    g.hear(signed(6, t[0]), cue(6, 180))  # heard: the clock offset of this boot is 820 s
    queue_note(g.store)
    t[0] += 600  # cue 12 went out at payload second 360, unheard; ten minutes on, it comes back
    g.hear(cue(12, 360))
    assert not any(isinstance(c, uplink.MemoryNote) for c in g.commands())
    assert len(g.store.outbox.pending()) == 1 and g.link.cues_refused == 1
    relayer = wire.DownlinkAuth.from_flight_key(new_key())
    g.decoder.relayers[uplink.payload_hash("NEAR1")] = relayer
    g.hear(encode_relayed(cue(18, 540), uplink.payload_hash("NEAR1"), 1, relayer))  # inside a relay envelope
    assert len(g.store.outbox.pending()) == 1 and g.link.cues_refused == 2
    g.hear(position(24), cue(24, 780))  # the balloon's next window, heard as it is sent: the note goes
    assert any(isinstance(c, uplink.MemoryNote) for c in g.commands())
    assert g.store.outbox.pending() == []


def test_a_cue_is_answered_while_its_window_is_open_and_the_clock_offset_survives_a_restart(tmp_path):
    t = [1000.0]
    g = on_clock(Ground(tmp_path), t)
    g.hear(signed(6, t[0]), cue(6, 180, listen_s=20))
    t[0] += 180 + 19  # heard 19 s late: its 20 s window is still open
    g.hear(cue(12, 360, listen_s=20))
    assert g.link.cues_refused == 0
    again = restart(g, t)
    t[0] += 180 + 20  # the restarted ground still knows the offset: 20 s late is a shut window
    again.hear(cue(18, 540, listen_s=20))
    assert again.link.cues_refused == 1


def test_a_new_boot_starts_its_own_clock_offset(tmp_path):
    t = [1000.0]
    g = on_clock(Ground(tmp_path), t)
    g.hear(signed(6, t[0]), cue(6, 180))
    t[0] += 5000  # the payload rebooted: its clock starts again
    g.hear(signed(6, t[0], boot=BOOT + 1), cue(6, 30, boot=BOOT + 1))
    assert g.link.cues_refused == 0


def test_the_first_cue_of_a_boot_played_back_late_opens_nothing(tmp_path):
    """Before: the first cue of a boot set the boot's clock offset and was taken as it came, so a
    recording of it, played back ten minutes later to a ground that had not heard it, opened a
    window: the operator's command went out to a payload not listening, and was marked sent. The
    first cue is dated now by the time the balloon signed in the position sentence it follows."""
    t = [1_767_225_600.0]
    g = on_clock(Ground(tmp_path), t)
    queue_note(g.store)
    recorded = [signed(6, t[0]), cue(6, 180, listen_s=20)]  # heard by a recorder, not by this ground
    t[0] += 600
    g.hear(*recorded)
    assert g.sent == [] and g.link.cues_refused == 1 and len(g.store.outbox.pending()) == 1
    g.hear(position(12), cue(12, 780, listen_s=20))  # an unsigned sentence dates nothing: conservatively, no answer
    assert g.sent == [] and g.link.cues_refused == 2
    g.hear(signed(18, t[0] - 10), cue(18, 960, listen_s=20))  # the live window: its sentence made 10 s ago
    assert any(isinstance(c, uplink.MemoryNote) for c in g.commands())
    assert g.store.outbox.pending() == [] and g.link.cues_refused == 2


def test_the_first_cue_is_answered_within_its_window_and_the_slack_for_airtime_and_clocks(tmp_path):
    from groundstation.link.uplink import FIRST_CUE_SLACK_S

    def ground(name: str) -> Ground:
        (tmp_path / name).mkdir()
        return on_clock(Ground(tmp_path / name), t)

    t = [1_767_225_600.0]  # 2026-01-01T00:00:00Z
    late = ground("late")
    late.hear(signed(6, t[0] - 20 - FIRST_CUE_SLACK_S - 1), cue(6, 180, listen_s=20))
    assert late.sent == [] and late.link.cues_refused == 1
    in_time = ground("in_time")
    in_time.hear(signed(6, t[0] - 20 - FIRST_CUE_SLACK_S + 1), cue(6, 180, listen_s=20))
    assert isinstance(in_time.commands()[0], uplink.LinkReport) and in_time.link.cues_refused == 0
    t[0] += 10  # heard at 00:00:10, its sentence stamped 23:59:55 the day before: 15 s, not a day
    midnight = ground("midnight")
    midnight.hear(signed(6, t[0] - 15), cue(6, 180, listen_s=20))
    assert isinstance(midnight.commands()[0], uplink.LinkReport) and midnight.link.cues_refused == 0


# --------------------------------------------------------------------------- the real process


def _listen(tmp_path: Path, key_path: Path, bridge_port: int, log_name: str) -> tuple[subprocess.Popen, int, Path]:
    log_path = tmp_path / log_name
    proc = subprocess.Popen(
        [sys.executable, "-m", "groundstation", "listen", "--udp", "127.0.0.1:0", "--db", str(tmp_path / "g.db"),
         "--flight-key", str(key_path), "--uplink-to", f"127.0.0.1:{bridge_port}", "--quiet"],
        stdout=subprocess.DEVNULL, stderr=log_path.open("w"), env={**os.environ, "STRATOECHO_LOG_JSON": "1"})
    return proc, wait_listening(log_path, proc, "listen"), log_path


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0


def _events(log_path: Path, name: str) -> list[dict]:
    out = []
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if entry.get("event") == name:
            out.append(entry)
    return out


def test_the_attacks_against_a_real_listen_process_across_a_restart(tmp_path):
    """`listen` as the shipped unit runs it, but without --callsign (the docs' old examples): forged
    sentences name nobody, the tagged boot event does; after a restart a missed cue played back
    late and an old unconfirmed event played back change nothing; the balloon's next cue works."""
    key_path = tmp_path / "uplink.key"
    key = write_flight_key(key_path)
    bridge = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # the LoRa bridge: where uplink goes
    air = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    bridge.bind(("127.0.0.1", 0))
    bridge.settimeout(60)
    store = Store(tmp_path / "g.db")
    low, survival = uplink.SetMode(1), uplink.SetMode(2)
    store.outbox.mark_sent(store.outbox.queue(int(low.command_id), low.pack(), "set mode low_power"))
    store.outbox.mark_sent(store.outbox.queue(int(survival.command_id), survival.pack(), "set mode survival"))
    store.close()
    proc, port, log1 = _listen(tmp_path, key_path, bridge.getsockname()[1], "g1.log")
    try:
        now = int(time.time())
        # 100 forged sentences in one burst: a UDP socket's buffer holds ~250 datagrams
        for f in [sentence(f"N{i}", i) for i in range(100)] + [sentence(collider(), 6)] + [cue(6, now - 5, 255)]:
            air.sendto(f, ("127.0.0.1", port))
        wait_for(lambda: _events(log1, "window cue not answered"))
        assert "callsign unknown" in _events(log1, "window cue not answered")[0]["why"]
        for f in boot_event() + [signed(12, now), cue(12, now, 255)]:
            air.sendto(f, ("127.0.0.1", port))
        first, _ = bridge.recvfrom(4096)
        assert uplink.verify(key, first, CALL, 0).command == uplink.LinkReport(BOOT, 12, 1 + len(boot_event()) + 2)
    finally:
        _stop(proc)
    proc, port, log2 = _listen(tmp_path, key_path, bridge.getsockname()[1], "g2.log")
    try:
        with Store(tmp_path / "g.db") as s:
            queue_note(s)
            s.commit()
        now = int(time.time())
        for f in unconfirmed(low, 7) + [cue(18, now - 600, 20)]:  # an old event; a missed cue, late
            air.sendto(f, ("127.0.0.1", port))
        wait_for(lambda: any("past its" in e["why"] for e in _events(log2, "window cue not answered")))
        wait_for(lambda: _events(log2, "confirmation not queued"))
        assert _events(log2, "confirmation not queued")[0]["why"] == "a newer one was queued here since"
        with Store(tmp_path / "g.db") as s:
            assert [r["what"] for r in s.outbox.pending()] == ["a note"]  # neither sent nor marked
        air.sendto(cue(24, now, 255), ("127.0.0.1", port))  # the balloon's next window, as it is sent
        commands, last = [], 0
        while not any(isinstance(c, uplink.MemoryNote) for c in commands):
            got, _ = bridge.recvfrom(4096)
            v = uplink.verify(key, got, CALL, last)  # the callsign remembered across the restart
            commands.append(v.command)
            last = v.counter
        assert not any(isinstance(c, uplink.SetMode) for c in commands)
    finally:
        _stop(proc)
        bridge.close()
        air.close()


def test_the_shipped_ground_unit_names_the_callsign_it_signs_for():
    from tests.test_systemd_units import ground_unit_config

    keys = ground_unit_config().keys  # the configuration file the unit's ExecStart names
    assert keys.callsign == "STRATO1" and str(keys.flight_key) == "/etc/stratoecho/uplink.key"
