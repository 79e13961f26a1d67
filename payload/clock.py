"""The payload's clock: `stratoecho.clock` (real time on a Pi, the bench's lockstep on a bench).

Everything in the daemon waits through a clock and its events, never `time.sleep`, so a stop
is immediate and a bench flight's flight time is owned by the bench."""

from stratoecho.clock import Clock, LockstepClock, flight_clock

__all__ = ["Clock", "LockstepClock", "flight_clock"]
