"""`sim fly`: a whole bench flight — payload, channel and ground station as separate
processes talking over loopback UDP — ending with a flight report.

    payload --UDP--> channel (bursty loss, writes air.hex) --UDP--> ground station (SQLite)
    payload <--UDP-- channel (bursty loss, writes uplink.hex) <--UDP-- ground station (signed NACKs)

A flight key (uplink.key, mode 600, from the seed: `bench_key`) is shared by payload and ground: the payload
tags its records with it, and the ground reads only what the tag vouches for. Unless
--no-uplink, the ground also answers the payload's tagged window cues, sending signed
commands to the channel's uplink port (`--uplink-to`), and asks for what it missed.

The ground station's live output (musings as they complete, positions) is this
command's output; each process's log goes to a file in the output folder.

Flight time: unless --speedup is 1, the three processes run on the bench's lockstep
clock (`sim/timekeeper.py`, `stratoecho/clock.py`): this command owns flight time and
moves it only when every process has done what is due, so a flight's results depend on
its seed alone — `--speedup N` flies at most N times real time, `--speedup max` as fast
as the machine allows. At `--speedup 1` every process reads the system's monotonic clock.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import structlog

from groundstation.reading import GroundReader
from payload.config import load_config
from payload.radios import SPI_RADIOS
from stratoecho.wire import gateway_rules
from stratoecho.wire.uplink_keys import write_key_file

from .bench_hardware import Fault, bench_dir
from .flight_report import summarise, write_flight_report
from .loss import LossSpec
from .musing_report import musings_section
from .scenarios import Scenario, flight_for, scenario
from .supervisor import PAYLOAD_UNIT, Supervisor, UnitError, kill_group, parse_unit
from .timekeeper import Timekeeper, TimekeeperError

log = structlog.get_logger(__name__)
# Set (as `make test` does, tests/conftest.py), a flight whose air breaks a stock LoRa gateway's
# rules fails, report written; unset, the report says so (`gateway`) and `sim report` shows it.
GATEWAY_STRICT_ENV = "STRATOECHO_GATEWAY_STRICT"
SETTLE_S = 30.0  # flight seconds the channel and ground go on after the payload stops: held frames land
RSS_EVERY_S = 60.0  # flight seconds between samples of the payload's resident memory
MAX_REBOOTS = 3  # StartLimitAction=reboot this often in one flight: the payload cannot stay up, the flight fails

DEFAULT_PERSONA = Path("build/persona")
OUTPUTS = ("report.json", "air.hex", "air.times", "ground.db", "ground.db-wal", "ground.db-shm", "channel.json",
           "musings.txt", "payload.log", "channel.log", "ground.log", "uplink.hex", "uplink.key",
           "ground.json", "ground.db.uplink.json", "ground.db.uplink.json.lock", "world.json", "flight.svg")


class FlyError(Exception):
    """A bench flight that could not start or finish; the message names the process and its log."""


@dataclass
class FlyOptions:
    out: Path
    persona: Path | None = DEFAULT_PERSONA
    minutes: float | None = None
    speedup: float | None = 60.0  # None: as fast as the machine allows (lockstep); 1: real time
    loss: LossSpec = LossSpec()
    seed: int = 1
    overwrite: bool = False
    config: Path | None = None
    quiet: bool = False
    uplink: bool = True  # ground asks for lost fragments over the reverse path
    scenario: str = "nominal"  # sim/scenarios.py
    faults: list[str] = field(default_factory=list)  # more faults, beside the scenario's
    path_loss: bool = True  # distance and horizon on top of --loss (off: exactly --loss)
    api_proxy: bool = True  # the ground answers the persona's questions from real APIs (offline: says so)
    unit: Path | None = PAYLOAD_UNIT  # the systemd unit whose contract the payload flies under; None: unsupervised


def wait_listening(log_path: Path, proc: subprocess.Popen, what: str, timeout_s: float = 60.0,
                   skip: int = 0) -> int:
    """The UDP port `proc` bound, read from its `listening` log line (after the first `skip`
    of them: a restarted process appends to its log).

    Each process binds port 0 and says which port it got, so no two can race for one.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        seen = 0
        for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if entry.get("event") == "listening":
                seen += 1
                if seen <= skip:
                    continue
                address = entry.get("address") or entry.get("source", "").split()[-1]
                return int(address.rsplit(":", 1)[1])
        if proc.poll() is not None:
            raise FlyError(f"{what} exited with code {proc.returncode} before it was ready; see {log_path}")
        time.sleep(0.05)
    raise FlyError(f"{what} did not report a listening port within {timeout_s:.0f} s; see {log_path}")


def bench_key(seed: int) -> bytes:
    """The bench flight's key: from its seed, so the same seed flies the same frames, tags and all.
    Anyone can compute it — it is for the bench, never for a flight (keygen makes those)."""
    return hashlib.sha256(b"stratoecho bench flight key\0" + str(seed).encode()).digest()


def free_udp_port() -> int:
    """A UDP port free on loopback now, for the channel to bind (another program could take it
    first; then the channel says so and the flight stops)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen, what: str, timeout_s: float = 20.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("kill", process=what)
            proc.kill()
            proc.wait()
    return proc.returncode


def prepare_out(opts: FlyOptions) -> None:
    opts.out.mkdir(parents=True, exist_ok=True)
    # The payload's data folder and the bench's own beside it (its /proc, /sys and battery).
    folders = [opts.out / "payload", bench_dir(opts.out / "payload")]
    existing = [n for n in OUTPUTS if (opts.out / n).exists()] + [f"{d.name}/" for d in folders if d.exists()]
    if existing and not opts.overwrite:
        raise FlyError(f"{opts.out} already holds a flight ({', '.join(existing)}); pass --overwrite or choose another --out")
    for n in OUTPUTS:
        (opts.out / n).unlink(missing_ok=True)
    for d in folders:
        if d.exists():
            import shutil

            shutil.rmtree(d)


def ground_counts(db: Path) -> dict:
    """What the ground got, for report.json and musings.txt (zeros where it heard nothing)."""
    if not db.exists():
        return {"frames": 0, "telemetry": 0, "musings": 0, "events": 0, "transcript": []}
    with GroundReader.open(db) as ground:
        counts = ground.counts()
        return {
            "frames": counts.frames_good,
            "telemetry": counts.telemetry,
            "musings": counts.of("musing"),
            "events": counts.of("event"),
            "max_alt": ground.max_altitude() or 0,
            "transcript": [(m.created, m.text) for m in ground.records("musing")],
        }


def flight_time_s(world_clock: Path) -> float:
    """Flight seconds since launch, from the world clock file the payload writes at launch (0 before)."""
    try:
        w = json.loads(world_clock.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return 0.0
    return (time.time() - w["epoch_unix"]) * w["speedup"]


class Flyer:
    """Starts the three processes, runs the scenario's reboots and restarts in flight time,
    restarts a payload that browned out, and stops everything at the end."""

    def __init__(self, opts: FlyOptions, sc: Scenario, flight_s: float):
        self.opts, self.sc, self.flight_s = opts, sc, flight_s
        try:
            contract = parse_unit(opts.unit) if opts.unit is not None else None
        except UnitError as e:
            raise FlyError(str(e)) from e
        self.out = opts.out
        self.env = dict(os.environ, STRATOECHO_LOG_JSON="1", PYTHONUNBUFFERED="1")
        self.world_clock = self.out / "world.json"
        self.key = self.out / "uplink.key"
        self.logs = {n: open(self.out / f"{n}.log", "a") for n in ("ground", "channel", "payload")}
        self.procs: dict[str, subprocess.Popen] = {}
        self.ground_port = 0
        self.uplink_port = free_udp_port()  # where the ground sends uplink: the channel binds it
        self.payload_boots = 0
        self.unplanned_reboots = 0
        self.actions: list[tuple[float, str]] = sorted(
            [(t, "reboot") for t in sc.reboots] + [(t, "ground") for t in sc.ground_restarts]
            + [(t, "service") for t in sc.service_restarts])
        self.done_actions: list[dict] = []
        # The lockstep's timekeeper (None at --speedup 1). Its socket lives in a short temporary
        # folder: a Unix socket's path must stay under 108 bytes, an --out folder need not.
        import tempfile

        self._sock_dir = Path(tempfile.mkdtemp(prefix="stratoecho-clock-"))
        self.tk: Timekeeper | None = None
        if opts.speedup != 1:
            self.tk = Timekeeper(self._sock_dir / "sock", opts.speedup, on_advance=self._progress)
            self.env.update(self.tk.env())
        # systemd's part, as the shipped unit declares it (sim/supervisor.py): READY, the watchdog,
        # restarts, start limits, stop timeouts. Its clock is flight time on the lockstep.
        self.sup = Supervisor(contract, self._sock_dir / "notify") if contract is not None else None
        self._sup_acted = False  # the supervisor signalled this payload (its SIGKILL is not a brown-out)
        self._sup_scheduled: set[float] = set()
        self._restarting = False  # a service restart (systemctl restart) is under way
        self._prev_now = 0.0
        self._rss_at = -RSS_EVERY_S
        self.rss: list[tuple[float, int, int]] = []  # (flight s, payload boot, VmRSS kB)
        self.reboots = 0  # StartLimitAction=reboot
        self._wall_actions: list = []  # (monotonic due, action) at --speedup 1
        self._bar = None
        self._bar_at = 0.0
        self._cut = False  # the payload is down on purpose: a power cut, or systemd's RestartSec

    # -- processes ---------------------------------------------------------------------

    def start_ground(self) -> None:
        py = sys.executable
        seen = self._listening_lines("ground")
        self.procs["ground"] = subprocess.Popen(
            [py, "-m", "groundstation", "listen", "--udp", f"127.0.0.1:{self.ground_port}", "--db",
             str(self.out / "ground.db"), "--stats", str(self.out / "ground.json")]
            + ["--flight-key", str(self.key)]
            + (["--uplink-to", f"127.0.0.1:{self.uplink_port}"] if self.opts.uplink else [])
            + (["--api-proxy"] if self.opts.uplink and self.opts.api_proxy else [])
            + ["--station", "home"]
            + (["--quiet"] if self.opts.quiet else []),
            stdout=None if not self.opts.quiet else subprocess.DEVNULL, stderr=self.logs["ground"], env=self.env,
        )
        self._admit("ground", "ground station")
        self.ground_port = wait_listening(self.out / "ground.log", self.procs["ground"], "ground station", skip=seen)

    def _listening_lines(self, name: str) -> int:
        """How many `listening` lines the log holds already (a restarted process appends its own)."""
        path = self.out / f"{name}.log"
        return path.read_text(errors="replace").count('"listening"') if path.exists() else 0

    def start_channel(self) -> int:
        opts = self.opts
        cmd = [sys.executable, "-m", "sim", "channel", "--listen", "127.0.0.1:0", "--forward",
               f"127.0.0.1:{self.ground_port}", "--loss", f"{opts.loss.mean_loss}:burst={opts.loss.burst}",
               "--seed", str(opts.seed), "--air-hex", str(self.out / "air.hex"), "--stats",
               str(self.out / "channel.json"), "--uplink-hex", str(self.out / "uplink.hex"),
               "--uplink-port", str(self.uplink_port),
               "--world-clock", str(self.world_clock), "--scenario", self.sc.name, "--speedup", str(opts.speedup or 60)]
        radio = load_config(opts.config).radio  # the channel keys time on air and sensitivity to the payload's mode
        cmd += ["--lora", f"{radio.spreading_factor}/{radio.bandwidth_hz:g}/{radio.coding_rate}"]
        if radio.kind in SPI_RADIOS:
            cmd += ["--frames-at-end"]  # the simulated chip hands a packet to the air when it has gone
        for a, b in self.sc.outages:
            cmd += ["--outage", f"{a:g}:{b:g}"]
        cmd += list(self.sc.channel_args)
        if not opts.path_loss:
            cmd += ["--no-path-loss"]
        self.procs["channel"] = subprocess.Popen(cmd, stdout=self.logs["channel"], stderr=self.logs["channel"],
                                                 env=self.env)
        self._admit("channel", "channel")
        return wait_listening(self.out / "channel.log", self.procs["channel"], "channel")

    def start_payload(self, channel_port: int) -> None:
        opts = self.opts
        cmd = [sys.executable, "-m", "payload", "run", "--sim", "--udp", f"127.0.0.1:{channel_port}",
               "--data", str(self.out / "payload"), "--speedup", str(opts.speedup or 60), "--seed", str(opts.seed),
               "--minutes", str(self.flight_s / 60), "--world-clock", str(self.world_clock),
               "--scenario", self.sc.name]
        cmd += ["--persona", str(opts.persona)] if opts.persona else ["--no-persona"]
        cmd += ["--sim-config", str(opts.config)] if opts.config else []
        cmd += ["--flight-key", str(self.key)] + ([] if opts.uplink else ["--no-uplink"])
        for f in (*self.sc.faults, *opts.faults):
            cmd += ["--fault", f]
        self.payload_boots += 1
        env = dict(self.env, **(self.sup.env() if self.sup is not None else {}))
        # Its own process group: KillMode's SIGKILL (and a power cut) takes the persona worker too.
        self.procs["payload"] = subprocess.Popen(cmd, stdout=self.logs["payload"], stderr=self.logs["payload"],
                                                 env=env, start_new_session=True)
        self._sup_acted = self._cut = False
        if self.sup is not None:
            self.sup.started(self.procs["payload"].pid, self._sup_now())
        self._admit("payload", "payload")
        if self.tk is not None:
            self._supervise(self.tk.now)

    def _admit(self, name: str, what: str) -> None:
        """On the lockstep: nothing moves until the process has started and waits for flight time."""
        if self.tk is None:
            return
        try:
            self.tk.admit(self.procs[name], what)
        except TimekeeperError as e:
            raise FlyError(f"{e}; see {self.out / (name + '.log')}") from e

    def keep_stats(self) -> None:
        """A payload about to be restarted starts its statistics afresh: keep this boot's."""
        stats = self.out / "payload" / "stats.json"
        if stats.exists():
            os.replace(stats, self.out / "payload" / f"stats.boot{self.payload_boots}.json")

    # -- the flight --------------------------------------------------------------------

    # -- the service manager -------------------------------------------------------------

    def _sup_now(self) -> float:
        return self.tk.now if self.tk is not None else time.monotonic()

    def _supervise(self, now: float) -> None:
        """Do what the unit's contract says is due at `now` (a signal, SIGKILL), and ask to be
        called again at the next deadline (on the lockstep, time stops there)."""
        sup, proc = self.sup, self.procs.get("payload")
        if sup is None or proc is None:
            return
        sup.receive(now)
        if proc.poll() is None and (act := sup.due(now)) is not None:
            kind, sig = act
            self._sup_acted = True
            if kind == "kill":
                kill_group(proc.pid, sig)
            else:
                proc.send_signal(sig)
        deadline = sup.next_deadline()
        if self.tk is not None and deadline is not None and deadline not in self._sup_scheduled:
            self._sup_scheduled.add(deadline)
            self.tk.at(deadline, lambda: self._supervise(self.tk.now))

    def _sample_rss(self, now: float) -> None:
        proc = self.procs.get("payload")
        if proc is None or now - self._rss_at < RSS_EVERY_S:
            return
        self._rss_at = now
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
        except OSError:
            return
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                self.rss.append((round(now, 1), self.payload_boots, int(line.split()[1])))

    def _later(self, delay_s: float, action) -> None:
        """Run `action` `delay_s` seconds of the supervisor's clock from now (flight time on the
        lockstep, the system's clock at --speedup 1)."""
        if self.tk is not None:
            self.tk.at(self.tk.now + delay_s, action)
        else:
            self._wall_actions.append((time.monotonic() + delay_s, action))

    def _run_wall_actions(self) -> None:
        due = [a for a in self._wall_actions if a[0] <= time.monotonic()]
        self._wall_actions = [a for a in self._wall_actions if a[0] > time.monotonic()]
        for _, action in due:
            action()

    def on_exit(self, rc: int, now: float, channel_port: int) -> bool:
        """The payload's process ended with `rc` at flight second `now`: True when the flight is
        over; otherwise what follows (a restart, a reboot) is under way."""
        over = (rc == 0 or now >= self.flight_s) and not self._restarting
        # A SIGKILL nobody sent is the bench world cutting the power: a reboot, not a unit restart.
        power_cut = rc == -signal.SIGKILL and not self._sup_acted and not over and not self._restarting
        again = (self.sup.exited(rc, self._sup_now(), final=over or power_cut)
                 if self.sup is not None else False)
        if self._restarting:  # systemctl restart: stopped, now started again
            self._restarting = False
            self.keep_stats()
            self.start_payload(channel_port)
            return False
        if over:
            return True
        if power_cut and self.unplanned_reboots < 3:
            # The bench world cut the power (a brown-out): the Pi comes back at once.
            self.unplanned_reboots += 1
            self.done_actions.append({"t_s": round(now), "action": "brown-out reboot"})
            if self.sup is not None:
                self.sup.rebooted()
            self.keep_stats()
            self.start_payload(channel_port)
            return False
        if not again:
            raise FlyError(f"payload exited with code {rc} at flight second {now:.0f}; see {self.out / 'payload.log'}")
        # Restart=: systemd starts it again after RestartSec, if the start limit allows.
        self.keep_stats()
        self._cut = True
        self._later(self.sup.unit.restart_s, lambda: self._restart_unit(channel_port))
        return False

    def _restart_unit(self, channel_port: int) -> None:
        now = self._sup_now()
        if self.sup.may_start(now):
            self.start_payload(channel_port)
            return
        action = self.sup.unit.start_limit_action
        if not action.startswith("reboot") or self.reboots >= MAX_REBOOTS:
            raise FlyError(f"the payload unit hit its start limit at flight second {now:.0f} "
                           f"(StartLimitAction={action}, {self.reboots} reboots so far): it stays down; "
                           f"see {self.out / 'payload.log'} and the verdicts in report.json")
        self.reboots += 1
        self.sup.rebooted()
        t = self.tk.now if self.tk is not None else flight_time_s(self.world_clock)
        self.done_actions.append({"t_s": round(t), "action": "start limit: reboot", "down_s": self.sc.reboot_s})
        self._later(self.sc.reboot_s, lambda: self.start_payload(channel_port))

    def _progress(self, now: float) -> None:
        if self.sup is not None:
            self.sup.receive(self._prev_now)  # sent while time stood at the previous instant
            self._supervise(now)
        self._prev_now = now
        self._sample_rss(now)
        if self._bar is not None and time.monotonic() - self._bar_at > 0.2:
            self._bar.n = min(round(now / 60, 1), self._bar.total)
            self._bar.refresh()
            self._bar_at = time.monotonic()

    def run_lockstep(self, channel_port: int) -> float:
        """Fly on the lockstep until the payload ends its flight; the wall seconds it took."""
        from tqdm import tqdm

        tk, opts = self.tk, self.opts
        started = time.monotonic()
        for t, action in self.actions:
            tk.at(t, lambda t=t, action=action: self.do_lockstep(action, t, channel_port))
        show = opts.quiet and sys.stderr.isatty()
        with tqdm(total=round(self.flight_s / 60, 1), unit="flight min", disable=not show, file=sys.stderr,
                  leave=False) as self._bar:
            try:
                while True:
                    payload = self.procs["payload"]
                    if self._cut:  # down on purpose: time goes on until the payload is started again
                        tk.run(until=lambda payload=payload: self.procs["payload"] is not payload)
                        self._cut = False
                        continue
                    tk.run(until=lambda payload=payload: payload.poll() is not None or self._cut,
                           while_present="payload")
                    if self._cut:
                        continue
                    rc = payload.wait()
                    kill_group(payload.pid, signal.SIGKILL)  # the unit is down: what it left behind goes too
                    if self.sup is not None:
                        self.sup.receive(tk.now)
                    if self.on_exit(rc, tk.now, channel_port):
                        break
                # Frames held back or delayed by the channel are still on their way: let them land.
                tk.run(until=lambda: False, until_s=tk.now + SETTLE_S)
            except TimekeeperError as e:
                raise FlyError(str(e)) from e
            finally:
                self._bar = None
        return time.monotonic() - started

    def do_lockstep(self, action: str, t: float, channel_port: int) -> None:
        """A scenario's action at flight second `t`, run while nothing else moves."""
        if action == "reboot":
            log.info("power_cut", flight_s=round(t))
            p = self.procs["payload"]
            self._cut = True
            kill_group(p.pid, signal.SIGKILL)  # no warning, no flush: a power cut takes every process
            p.wait()
            if self.sup is not None:
                self.sup.receive(t)
                self.sup.exited(p.returncode, t)
                self.sup.rebooted()
            self.keep_stats()
            self.tk.at(t + self.sc.reboot_s, lambda: self.start_payload(channel_port))
            self.done_actions.append({"t_s": round(t), "action": "power cut and reboot", "down_s": self.sc.reboot_s})
        elif action == "service":
            # `systemctl restart`: SIGTERM (KillSignal=), TimeoutStopSec= to stop, then started again.
            p = self.procs["payload"]
            log.info("service_restart", flight_s=round(t))
            if self.sup is not None:
                self.sup.receive(t)
                p.send_signal(self.sup.stopping(t))
                self._supervise(t)
            else:
                p.send_signal(signal.SIGTERM)
            self._restarting = True
            self.done_actions.append({"t_s": round(t), "action": "service restart"})
        elif action == "ground":
            log.info("ground_restart", flight_s=round(t))
            self.stop_lockstep("ground")
            self.tk.at(t + self.sc.ground_down_s, self.start_ground)  # the same port: the channel keeps forwarding there
            self.done_actions.append({"t_s": round(t), "action": "ground station restart",
                                      "down_s": self.sc.ground_down_s})

    def stop_lockstep(self, name: str, timeout_s: float = 60.0) -> int | None:
        """SIGTERM a process on the lockstep and give it turns, without moving time, until it exits."""
        proc = self.procs.get(name)
        if proc is None or proc.poll() is not None:
            return None if proc is None else proc.returncode
        proc.send_signal(signal.SIGTERM)
        if not self.tk.settle(lambda: proc.poll() is not None, timeout_s):
            log.warning("kill", process=name)
            proc.kill()
        return proc.wait()

    def run(self, channel_port: int) -> float:
        """Fly until the payload ends its flight; the wall seconds it took."""
        from tqdm import tqdm

        opts = self.opts
        started = time.monotonic()
        budget = self.flight_s / opts.speedup + 300 / opts.speedup + 120 + 30 * len(self.actions)
        total = round(self.flight_s / 60, 1)
        show = opts.quiet and sys.stderr.isatty()  # in a log file a redrawn bar is a wall of text
        with tqdm(total=total, unit="flight min", disable=not show, file=sys.stderr, leave=False) as bar:
            while True:
                self._supervise(time.monotonic())
                self._run_wall_actions()  # RestartSec, a reboot's boot time
                payload = self.procs["payload"]
                t = flight_time_s(self.world_clock)
                self._sample_rss(t)
                rc = None if self._cut else payload.poll()
                if rc is not None:
                    kill_group(payload.pid, signal.SIGKILL)  # the unit is down: what it left behind goes too
                    if self.sup is not None:
                        self.sup.receive(time.monotonic())
                    if self.on_exit(rc, t, channel_port):
                        return time.monotonic() - started
                    continue
                if self.actions and t >= self.actions[0][0]:
                    _, action = self.actions.pop(0)
                    self.do(action, t, channel_port)
                if time.monotonic() - started > budget:
                    rc = stop(payload, "payload")
                    raise FlyError(f"payload still running after {budget:.0f} s; stopped (code {rc})")
                bar.n = min(round(t / 60, 1), total)
                bar.refresh()
                time.sleep(0.1)

    def wait_flight_s(self, until_s: float) -> None:
        while flight_time_s(self.world_clock) < until_s:
            time.sleep(0.02)

    def do(self, action: str, t: float, channel_port: int) -> None:
        if action == "reboot":
            log.info("power_cut", flight_s=round(t))
            p = self.procs["payload"]
            kill_group(p.pid, signal.SIGKILL)  # no warning, no flush: a power cut takes every process
            p.wait()
            if self.sup is not None:
                self.sup.exited(p.returncode, time.monotonic())
                self.sup.rebooted()
            self.keep_stats()
            self.wait_flight_s(t + self.sc.reboot_s)
            self.start_payload(channel_port)
            self.done_actions.append({"t_s": round(t), "action": "power cut and reboot",
                                      "down_s": self.sc.reboot_s})
        elif action == "ground":
            log.info("ground_restart", flight_s=round(t))
            stop(self.procs["ground"], "ground station")
            self.wait_flight_s(t + self.sc.ground_down_s)
            self.start_ground()  # the same port: the channel keeps forwarding there
            self.done_actions.append({"t_s": round(t), "action": "ground station restart",
                                      "down_s": self.sc.ground_down_s})
        elif action == "service":
            p = self.procs["payload"]
            log.info("service_restart", flight_s=round(t))
            p.send_signal(self.sup.stopping(time.monotonic()) if self.sup is not None else signal.SIGTERM)
            self._restarting = True
            self.done_actions.append({"t_s": round(t), "action": "service restart"})

    def stop_all(self) -> None:
        if self.tk is not None:
            for name in ("payload", "channel", "ground"):
                try:
                    self.stop_lockstep(name, timeout_s=20.0)
                except TimekeeperError:
                    pass  # killed below
        for name in ("payload", "channel", "ground"):
            if name in self.procs:
                stop(self.procs[name], name)
        if self.tk is not None:
            self.tk.close()
        if self.sup is not None:
            self.sup.close()
        import shutil

        shutil.rmtree(self._sock_dir, ignore_errors=True)
        for f in self.logs.values():
            f.close()


def fly(opts: FlyOptions) -> dict:
    if opts.persona is not None and not (opts.persona / "persona.toml").is_file():
        raise FlyError(
            f"no persona bundle at {opts.persona} (persona.toml missing): run `make persona` to build the "
            "sample persona, pass --persona BUNDLE, or --no-persona to fly without one"
        )
    try:
        sc = scenario(opts.scenario)
        for f in opts.faults:
            Fault.parse(f)
    except ValueError as e:
        raise FlyError(str(e)) from e
    prepare_out(opts)
    flight = flight_for(sc.name, opts.seed)
    minutes = opts.minutes or sc.minutes
    flight_s = minutes * 60 if minutes else flight.duration_s + 300
    write_key_file(opts.out / "uplink.key", force=True, key=bench_key(opts.seed))  # mode 600; both ends read it
    flyer = Flyer(opts, sc, flight_s)
    try:
        flyer.start_ground()
        channel_port = flyer.start_channel()
        if opts.speedup is None:
            pace = "as fast as this machine allows"
        else:
            wall = flight_s / opts.speedup
            pace = (f"{'at most ' if opts.speedup != 1 else ''}{opts.speedup:g}x "
                    f"(~{f'{wall:.0f} s' if wall < 90 else f'{wall / 60:.1f} min'})")
        print(
            f"sim fly: {sc.name}: {flight_s / 60:.0f} flight minutes, {pace}, "
            + (f"burst at {flight.burst_alt_m / 1000:.1f} km, " if hasattr(flight, "burst_alt_m") else "")
            + f"loss {opts.loss.mean_loss:.0%} in bursts of {opts.loss.burst:g}; logs in {opts.out}/",
            file=sys.stderr, flush=True,
        )
        flyer.start_payload(channel_port)
        if flyer.tk is not None:
            wall_s = flyer.run_lockstep(channel_port)
            flyer.stop_lockstep("channel")
            flyer.stop_lockstep("ground")
        else:
            wall_s = flyer.run(channel_port)
            time.sleep(0.5)  # the last frames are still in flight through the channel
            stop(flyer.procs["channel"], "channel")
            stop(flyer.procs["ground"], "ground station")
        clock_stats = asdict(flyer.tk.stats) if flyer.tk is not None else None
    finally:
        flyer.stop_all()
    report = write_report(opts, wall_s, flight_s, sc, flyer, clock_stats)
    gateway = report["gateway"]
    if gateway["violations"] and os.environ.get(GATEWAY_STRICT_ENV):
        raise FlyError(f"{gateway['violations']} lines on air break a stock LoRa gateway's rules "
                       f"({opts.out / 'report.json'}): " + "; ".join(gateway["first"][:3]))
    return report


def world_figures(path: Path) -> dict:
    """The battery as the bench world left it: what the flight really cost."""
    try:
        w = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in w.items() if not isinstance(v, dict)}


def merged_stats(payload_dir: Path) -> dict:
    """The payload's statistics summed over its boots (each boot starts its own at zero)."""
    files = sorted(payload_dir.glob("stats.boot*.json"), key=lambda p: int(p.stem.split("boot")[1]))
    files += [payload_dir / "stats.json"]
    boots = [json.loads(f.read_text()) for f in files if f.exists()]
    if not boots:
        raise FlyError(f"the payload wrote no statistics in {payload_dir}; see its log")

    def add(a, b):
        if isinstance(a, dict) and isinstance(b, dict):
            return {k: add(a.get(k, 0), b.get(k, 0)) if k in a and k in b else a.get(k, b.get(k)) for k in {*a, *b}}
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
            return a + b
        return b

    merged = boots[0]
    for b in boots[1:]:
        merged = add(merged, b)
    last = boots[-1]
    merged["flight_s"] = last["flight_s"]  # a time, not a count
    merged["queue_depth"] = last["queue_depth"]
    merged["daemon"]["boot"] = last["daemon"]["boot"]
    merged["boots"] = len(boots)
    return merged


def gateway_section(air_hex: Path, shown: int = 10) -> dict:
    """Every line the payload put on air against a stock LoRa gateway's rules
    (`wire.gateway_rules`): how many lines, the longest, and the first violations."""
    frames = [bytes.fromhex(h) for h in air_hex.read_text().split()] if air_hex.exists() else []
    lines = [f for f in frames if f[:2] == b"$$"]
    found = gateway_rules.check_air(frames)
    if found:
        log.error("gateway_rules_broken", count=len(found), first=str(found[0]))
    return {"lines": len(lines), "longest": max(map(len, lines), default=0), "violations": len(found),
            "first": [str(v) for v in found[:shown]]}


def write_report(opts: FlyOptions, wall_s: float, flight_s: float, sc: Scenario | None = None,
                 flyer: Flyer | None = None, clock_stats: dict | None = None) -> dict:
    out = opts.out
    stats = merged_stats(out / "payload")
    channel = json.loads((out / "channel.json").read_text())
    # Written by the ground station at exit; absent if it was killed rather than stopped.
    ground_stats = json.loads(g.read_text()) if (g := out / "ground.json").exists() else {}
    ground = ground_counts(out / "ground.db")
    link, daemon = stats["link"], stats["daemon"]
    report = {
        "musings": {
            "generated": daemon["musings_generated"],
            "queued": daemon["musings_queued"],
            "dropped_by_guard": daemon["musings_dropped_by_guard"],
            "sent": link["sent_by_stream"].get("musing", 0),
            "delivered": ground["musings"],
        },
        "telemetry": {
            "generated": daemon["telemetry_queued"],
            "sent": link["sent_by_stream"].get("telemetry", 0),
            "received": ground["telemetry"],
        },
        "events": {"sent": link["sent_by_stream"].get("event", 0), "received": ground["events"]},
        "frames": {
            "sent": link["frames_sent"],
            "on_air": channel["frames_in"],
            "dropped_by_channel": channel["frames_dropped"],
            "received": ground["frames"],
        },
        "repair": {
            "nacks_sent": ground_stats.get("nacks_sent", 0),
            "items_requested": ground_stats.get("items_requested", 0),
        },
        "uplink": {"sent": channel.get("uplink_in", 0), "received": channel.get("uplink_forwarded", 0)},
        "airtime_s": round(link["airtime_s"], 2),
        "energy_wh": round(stats["energy_wh"], 3),
        "max_alt_m": ground.get("max_alt", 0),
        "flight_s": round(stats["flight_s"], 1),
        "wall_s": round(wall_s, 1),
        "speedup": "max" if opts.speedup is None else opts.speedup,
        "achieved_speedup": round(stats["flight_s"] / wall_s, 1) if wall_s > 0 else None,
        "clock": "lockstep" if clock_stats is not None else "monotonic",
        "bench_clock": clock_stats or {},
        "loss_spec": {"mean": opts.loss.mean_loss, "burst": opts.loss.burst},
        "seed": opts.seed,
        "persona": str(opts.persona) if opts.persona else None,
        "tokens": daemon["tokens"],
        "persona_failures": daemon["persona_failures"],
        "queue_left": stats["queue_depth"],
        "scenario": sc.name if sc else "nominal",
        "payload_boots": stats["boots"],
        "actions": flyer.done_actions if flyer else [],
        "unit": flyer.sup.report() if flyer and flyer.sup else None,
        "payload_rss_kb": flyer.rss if flyer else [],
        "world": world_figures(bench_dir(out / "payload") / "world.json"),
    }
    report.update(summarise(out / "ground.db", stats, channel))
    # Whether they were worth reading: every musing the payload made, measured against what its
    # prompt told it, and the first ones as they came (docs/bench.md, "Musings worth reading").
    report["musings"].update(musings_section(out, persona=opts.persona is not None))
    report["gateway"] = gateway_section(out / "air.hex")
    write_flight_report(out)
    tmp = out / "report.json.tmp"
    tmp.write_text(json.dumps(report, indent=2))
    os.replace(tmp, out / "report.json")
    (out / "musings.txt").write_text(
        "".join(f"{created}  {text}\n" for created, text in ground["transcript"]), encoding="utf-8"
    )
    return report
