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
clock (`sim/bench/run/timekeeper.py`, `sim/bench/run/lockstep.py`): this command owns flight time and
moves it only when every process has done what is due, so a flight's results depend on
its seed alone — `--speedup N` flies at most N times real time, `--speedup max` as fast
as the machine allows. At `--speedup 1` every process reads the system's monotonic clock.
"""

from .flight import fly
from .options import FlyError, FlyOptions
from .report import ground_counts

__all__ = ["FlyError", "FlyOptions", "fly", "ground_counts"]
