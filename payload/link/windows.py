"""Listening, half duplex: the uplink's windows after position sentences, and a relaying
payload's ear between its own frames.

After every `uplink.window_every`-th position sentence the radio sends the window cue
(`wire.Window`, tagged, with when it ends on air and how long the radio listens) and listens for
`uplink.window_s`. Signed frames go to `on_uplink` (the daemon's command gate: a RESEND becomes
the transmitter's `request_repair`, which rebuilds the asked-for fragments from the stored
record); other payloads' frames go to the relay. The ground's link reports, counted against the
frames sent up to each cue, feed the loss estimate that sizes parity; while they come, the
ground answers and repair works (`ground_answering`), and a ground long silent means the
payload is out of contact (`out_of_contact`).

Between its frames a relaying payload keeps listening (`idle`) in turns of `RELAY_LISTEN_S`.
Both listen with the radio's `hear`: a LoRa chip stays in RX continuous between the turns.
"""

from __future__ import annotations

import threading

import structlog

from stratoecho import wire
from stratoecho.wire import fec

from .airtime import Airtime
from .frames import LinkParts, LinkStats

log = structlog.get_logger(__name__)

# Windows without an accepted link report before the payload stops counting on repair
# (20 minutes at the defaults): at 50 % loss each way a window's report arrives about one
# time in four, so a shorter memory would often fall back to full parity for nothing.
FEEDBACK_WINDOWS = 20
# Windows without a word from a ground that has answered before, after which the payload
# holds its records and sends only the beacon until the ground is heard again: out of
# contact (a blackout, an orbit between passes) records sent are records lost, and kept
# they go out by priority when the next pass begins. Ten minutes at the defaults: at 50 %
# loss each way ten silent windows in a row happen about one time in twenty.
CONTACT_LOST_WINDOWS = 10
# A relaying payload listens between its own frames in turns this long (flight seconds): a sentence
# queued meanwhile waits at most this for the radio, well inside the beacon's slot.
RELAY_LISTEN_S = 1.0


class Windows:
    """The listen windows and what is heard in them. Opened by `listen_after`; `loss` is the
    estimate the link reports feed (the hand's), `stats` counted under `lock`."""

    def __init__(self, parts: LinkParts, stats: LinkStats, lock: threading.Lock, airtime: Airtime,
                 loss: fec.LossEstimator, auth: wire.DownlinkAuth | None):
        self.radio, self.clock, self.stop, self.wake, self.relay = (
            parts.radio, parts.clock, parts.stop, parts.wake, parts.relay)
        self.stats, self.lock, self.airtime, self.loss, self.auth = stats, lock, airtime, loss, auth
        self.uplink_cfg = None  # set with on_uplink to open listen windows
        self.on_uplink = None  # callable(frame) -> None
        self.pid = 0  # uplink.payload_hash of the callsign, carried by the window cue
        self._sent_at_window: dict[int, int] = {}  # sentence id -> frames sent up to it (this boot)
        self._reported: tuple[int, int] | None = None  # (frames sent, frames heard) at the last report
        self.report_window: int | None = None  # the window of the last accepted report

    def listen_after(self, uplink_cfg, on_uplink, pid: int = 0) -> None:
        """Open a listen window after every `uplink_cfg.window_every`-th sentence; frames go to
        `on_uplink`. `pid` (`uplink.payload_hash` of the callsign) goes in the window cue."""
        self.uplink_cfg, self.on_uplink, self.pid = uplink_cfg, on_uplink, pid

    def due_after(self, seq: int) -> bool:
        """A window follows position sentence `seq`."""
        return self.uplink_cfg is not None and seq % self.uplink_cfg.window_every == 0

    def ground_answering(self) -> bool:
        """A link report was accepted in the last `FEEDBACK_WINDOWS` windows: repair works."""
        return self.report_window is not None and self.stats.windows - self.report_window < FEEDBACK_WINDOWS

    def out_of_contact(self) -> bool:
        """A ground that has answered before has been silent for CONTACT_LOST_WINDOWS windows.
        Never true without an uplink, or before the ground was first heard: a receive-only
        ground must still get everything."""
        return (self.uplink_cfg is not None and self.report_window is not None
                and self.stats.windows - self.report_window >= CONTACT_LOST_WINDOWS)

    def on_link_report(self, last_seq: int, frames_heard: int) -> bool:
        """The ground heard `frames_heard` of our frames up to sentence `last_seq`: feed the
        difference since the previous report to the loss estimate that sizes parity."""
        sent = self._sent_at_window.get(last_seq)
        if sent is None:
            return False  # a window of another boot, or too old to compare
        if self._reported is not None:
            d_sent, d_heard = sent - self._reported[0], frames_heard - self._reported[1]
            if d_sent <= 0 or not 0 <= d_heard <= d_sent:
                self._reported = (sent, frames_heard)  # out of order or the ground restarted
                return False
            self.loss.observe_counts(d_sent, d_heard)
        elif 0 <= frames_heard <= sent and sent:
            self.loss.observe_counts(sent, frames_heard)
        self._reported = (sent, frames_heard)
        self.report_window = self.stats.windows
        log.info("link_report", heard=frames_heard, sent=sent, loss=round(self.loss.loss, 3))
        return True

    def _cue(self, boot: int, seq: int, heard_at_s: float = 0.0) -> bytes:
        """The window cue, which the ground answers only until `listen_s` after `heard_at_s`."""
        listen_s = min(max(int(self.uplink_cfg.window_s), 1), wire.downlink.MAX_LISTEN_S)
        return wire.encode_window(wire.Window(boot, seq, self.pid, int(heard_at_s), listen_s), self.auth)

    def listen(self, boot: int, seq: int, room_s: float) -> None:
        """The window cue after sentence `seq` of `boot`, then `window_s` listening; skipped when the
        law holds the cue back or the window would not end within the `room_s` the turn has left."""
        if self.on_uplink is None or not self.radio.receives or self.auth is None:
            return  # no key, or a transmit-only radio: nothing to listen with
        air = self.airtime.seconds(self._cue(boot, seq))
        if self.airtime.sentence_wait_s(air) > 0:
            self.stats.windows_skipped += 1  # the law first: no cue, so no window (the ground would not answer)
            log.info("window_skipped", why="duty cycle", seq=seq)
            return
        if air + self.uplink_cfg.window_s > room_s:
            self.stats.windows_skipped += 1  # listening on would key the next sentence late (the plan says so)
            log.info("window_skipped", why="turn", seq=seq, room_s=round(room_s, 1))
            return
        self.airtime.spend(air, True)
        keyed = self.clock.elapsed_s()
        self.radio.send(cue := self._cue(boot, seq, heard_at_s=keyed + air))  # the ground hears it as it ends
        with self.lock:
            self.stats.cues_sent += 1
            self.stats.keyed(cue, air)
        # The ground's link report counts what it heard up to this cue, the cue included.
        self._sent_at_window[seq] = self.stats.frames_sent
        while len(self._sent_at_window) > 64:  # only recent windows can be reported on
            self._sent_at_window.pop(next(iter(self._sent_at_window)))
        if self.clock.wait(air - (self.clock.elapsed_s() - keyed), self.stop):
            return
        self.stats.windows += 1
        self._hear_window(self.uplink_cfg.window_s)

    def _hear_window(self, left: float) -> None:
        # The radio listens for the whole window (`hear`: a chip stays in RX continuous): the ground
        # answers with several frames back to back (a link report, a RESEND, an ACK), and one that
        # began while the chip was between two receives would be lost.
        end = self.clock.elapsed_s() + left
        while True:  # at least one receive, however fast the bench clock runs
            for frame in self.radio.hear(left):
                self.stats.uplink_frames += 1
                if self.relay is not None and not _is_uplink(frame):
                    self.relay.hear(frame, self.clock.elapsed_s())  # another payload's: perhaps ours to send on
                else:
                    self.on_uplink(frame)
            left = end - self.clock.elapsed_s()
            if left <= 0 or self.stop.is_set():
                return

    def idle(self, pause_s: float) -> None:
        """The radio has nothing to send for `pause_s`: a relaying payload keeps its receiver on
        (other balloons are heard whenever we are not keyed, not only in our windows) in turns of
        `RELAY_LISTEN_S`, looking between turns whether a producer queued something; any other
        payload sleeps until woken."""
        if self.relay is None or not self.radio.receives:
            self.wake.wait(timeout=pause_s)
            return
        end = self.clock.elapsed_s() + pause_s
        while not (self.wake.is_set() or self.stop.is_set()):
            left = end - self.clock.elapsed_s()
            if left <= 0:
                return
            for frame in self.radio.hear(min(left, RELAY_LISTEN_S)):
                self.stats.relay_heard += 1
                if _is_uplink(frame):
                    if self.on_uplink is not None:
                        self.on_uplink(frame)  # the gate checks it as in a window: signed, fresh, ours
                else:
                    self.relay.hear(frame, self.clock.elapsed_s())


def _is_uplink(frame: bytes) -> bool:
    """A ground station's command (`wire.classify`): the gate's, never the relay's."""
    return wire.classify(frame).kind is wire.FrameKind.UPLINK
