"""The flight's processes in flight: `Flyer` starts the payload, channel and ground station,
runs the scenario's reboots and restarts in flight time (on the lockstep or at real time)
under the unit's service manager, and stops everything at the end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import structlog

from payload.config import load_config
from stratoecho.lora_chips.profiles import is_chip

from ...world.scenarios import Scenario
from ..run.supervisor import Supervisor, UnitError, kill_group, parse_unit
from ..run.timekeeper import Timekeeper, TimekeeperError
from .fleet import Member
from .options import FlyError, FlyOptions
from .processes import free_udp_port, listening_entry, stop, wait_listening

log = structlog.get_logger(__name__)

SETTLE_S = 30.0  # flight seconds the channel and ground go on after the payload stops: held frames land
RSS_EVERY_S = 60.0  # flight seconds between samples of the payload's resident memory
DRAIN_WAIT_S = 330.0  # flight seconds the other balloons get to drain their queues and stop (payload --drain-s + 30)
MAX_REBOOTS = 3  # StartLimitAction=reboot this often in one flight: the payload cannot stay up, the flight fails


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

    def __init__(self, opts: FlyOptions, sc: Scenario, flight_s: float, members: list[Member] = ()):
        self.opts, self.sc, self.flight_s = opts, sc, flight_s
        self.members = list(members)  # the scenario's balloons (fleet.py); [] for a flight of one
        try:
            contract = parse_unit(opts.unit) if opts.unit is not None else None
        except UnitError as e:
            raise FlyError(str(e)) from e
        self.out = opts.out
        self.env = dict(os.environ, STRATOECHO_LOG_JSON="1", PYTHONUNBUFFERED="1")
        self.world_clock = self.out / "world.json"
        self.key = self.out / "uplink.key"
        self.logs = {n: open(self.out / f"{n}.log", "a")
                     for n in ("ground", "channel", "payload", *(m.name for m in self.members[1:]))}
        self.procs: dict[str, subprocess.Popen] = {}
        self.ground_port = 0
        self.uplink_port = free_udp_port()  # where the ground sends uplink: the channel binds it
        self.payload_boots = 0
        self.balloon_ports: list[int] = []  # the channel's port for each balloon (fleet)
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
            self.tk = Timekeeper(self._sock_dir / "sock", opts.speedup, on_advance=self._progress,
                                 turn_timeout_s=opts.hang_after_s)
            self.env.update(self.tk.env())
        # systemd's part, as the shipped unit declares it (sim/bench/run/supervisor.py): READY, the watchdog,
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
            [py, "-m", "groundstation", "listen", "--config", str(self.write_ground_config())],
            stdout=None if not self.opts.quiet else subprocess.DEVNULL, stderr=self.logs["ground"], env=self.env,
        )
        self._admit("ground", "ground station")
        self.ground_port = wait_listening(self.out / "ground.log", self.procs["ground"], "ground station", skip=seen)

    def write_ground_config(self) -> Path:
        """The bench's ground station as a station's file (docs/ground.md, "The station's
        configuration file"), which `listen --config` runs as a real station's: it signs for its own
        flight's callsign, named as the shipped configuration names it, and follows the other
        balloons by their downlink keys (docs/network.md, 'The ground follows several flights')."""
        q = json.dumps  # a TOML basic string is a JSON string
        callsign = self.members[0].callsign if self.members else load_config(self.opts.config).callsign
        lines = ["[source]", 'kind = "udp"', f"address = {q(f'127.0.0.1:{self.ground_port}')}"]
        if self.opts.uplink:
            lines.append(f"uplink_to = {q(f'127.0.0.1:{self.uplink_port}')}")
        lines += ["[database]", f"path = {q(str(self.out / 'ground.db'))}",
                  "[keys]", f"flight_key = {q(str(self.key))}", f"callsign = {q(callsign)}",
                  "[keys.follow]", *(f"{m.callsign} = {q(str(m.downlink))}" for m in self.members[1:]),
                  "[station]", 'name = "home"',
                  "[proxy]", f"enabled = {str(bool(self.opts.uplink and self.opts.api_proxy)).lower()}",
                  "[output]", f"stats = {q(str(self.out / 'ground.json'))}",
                  f"records = {q('none' if self.opts.quiet else 'text')}"]
        path = self.out / "ground.toml"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

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
        if is_chip(radio.kind):
            cmd += ["--frames-at-end"]  # the simulated chip hands a packet to the air when it has gone
        for a, b in self.sc.outages:
            cmd += ["--outage", f"{a:g}:{b:g}"]
        cmd += list(self.sc.channel_args)
        if not opts.path_loss:
            cmd += ["--no-path-loss"]
        self.procs["channel"] = subprocess.Popen(cmd, stdout=self.logs["channel"], stderr=self.logs["channel"],
                                                 env=self.env)
        self._admit("channel", "channel")
        port = wait_listening(self.out / "channel.log", self.procs["channel"], "channel")
        if self.members:  # one port per balloon, in order (sim channel's fleet mode)
            addresses = listening_entry(self.out / "channel.log").get("balloons") or []
            if len(addresses) != len(self.members):
                raise FlyError(f"the channel listens for {len(addresses)} balloons, the scenario flies "
                               f"{len(self.members)}; see {self.out / 'channel.log'}")
            self.balloon_ports = [int(a.rsplit(":", 1)[1]) for a in addresses]
        return port

    def start_payload(self, channel_port: int) -> None:
        opts = self.opts
        cmd = [sys.executable, "-m", "payload", "run", "--sim", "--udp", f"127.0.0.1:{channel_port}",
               "--data", str(self.out / "payload"), "--speedup", str(opts.speedup or 60), "--seed", str(opts.seed),
               "--minutes", str(self.flight_s / 60), "--world-clock", str(self.world_clock),
               "--scenario", self.sc.name]
        cmd += ["--persona", str(opts.persona)] if opts.persona else ["--no-persona"]
        config = self.members[0].config if self.members else opts.config
        cmd += ["--sim-config", str(config)] if config else []
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

    def start_balloons(self, ports: list[int]) -> None:
        """The scenario's other balloons (fleet.py), each on its own channel port, unsupervised."""
        opts = self.opts
        for m, port in zip(self.members[1:], ports[1:]):
            cmd = [sys.executable, "-m", "payload", "run", "--sim", "--udp", f"127.0.0.1:{port}",
                   "--data", str(self.out / m.name), "--speedup", str(opts.speedup or 60), "--seed", str(m.seed),
                   "--balloon", str(m.index), "--minutes", str(self.flight_s / 60),
                   "--world-clock", str(self.out / f"world-{m.callsign}.json"), "--scenario", self.sc.name,
                   "--sim-config", str(m.config), "--flight-key", str(m.key)]
            cmd += ["--persona", str(opts.persona)] if opts.persona else ["--no-persona"]
            env = dict(self.env, STRATOECHO_BENCH_NAME=m.name)  # its own name on the lockstep
            self.procs[m.name] = subprocess.Popen(cmd, stdout=self.logs[m.name], stderr=self.logs[m.name],
                                                  env=env, start_new_session=True)
            self._admit(m.name, f"balloon {m.callsign}")

    def land_balloons(self) -> None:
        """The other balloons end their flights as the first did: each drains its queue first (the
        payload's --drain-s), so time runs on until they have, then anything left is stopped."""
        others = [self.procs[m.name] for m in self.members[1:] if m.name in self.procs]
        if self.tk is not None:
            try:
                self.tk.run(until=lambda: all(p.poll() is not None for p in others), until_s=self.tk.now + DRAIN_WAIT_S)
            except TimekeeperError as e:
                raise FlyError(str(e)) from e
            for p in others:  # off the lockstep once it said goodbye; its interpreter still has to exit
                self.tk.settle(lambda p=p: p.poll() is not None, timeout_s=30.0)
            for m in self.members[1:]:
                self.stop_lockstep(m.name)
        else:
            deadline = time.monotonic() + DRAIN_WAIT_S / (self.opts.speedup or 60)
            while any(p.poll() is None for p in others) and time.monotonic() < deadline:
                time.sleep(0.1)
            for m in self.members[1:]:
                stop(self.procs[m.name], m.name)

    def balloon_exits(self) -> dict[str, int | None]:
        """Each other balloon's exit code once the flight is over (None: it had to be killed)."""
        return {m.callsign: self.procs[m.name].returncode for m in self.members[1:] if m.name in self.procs}

    def _admit(self, name: str, what: str) -> None:
        """On the lockstep: nothing moves until the process has started and waits for flight time."""
        if self.tk is None:
            return
        try:
            self.tk.admit(self.procs[name], what)
        except TimekeeperError as e:
            log_path = self.out / (name + ".log")
            raise FlyError(f"{e}; see {log_path}{_said(log_path)}") from e

    def keep_stats(self) -> None:
        """A payload about to be restarted starts its statistics afresh: keep this boot's."""
        stats = self.out / "payload" / "stats.json"
        if stats.exists():
            os.replace(stats, self.out / "payload" / f"stats.boot{self.payload_boots}.json")

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

    # -- the flight --------------------------------------------------------------------

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
            for name in ("payload", *(m.name for m in self.members[1:]), "channel", "ground"):
                try:
                    self.stop_lockstep(name, timeout_s=20.0)
                except TimekeeperError:
                    pass  # killed below
        for name in ("payload", *(m.name for m in self.members[1:]), "channel", "ground"):
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


def _said(log_path: Path) -> str:
    """What a process that would not start said of why (its last `error:` line), to show with ours."""
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    why = next((line for line in reversed(lines) if line.startswith("error:")), None)
    return f"\n{why}" if why else ""
