"""The payload's clock: `stratoecho.clock` (real time on a Pi, the bench's lockstep on a bench,
found through the bench's entry point so that flight code never imports the bench).

Everything in the daemon waits through a clock and its events, never `time.sleep`, so a stop
is immediate and a bench flight's flight time is owned by the bench."""

from stratoecho.clock import Clock, flight_clock

__all__ = ["Clock", "flight_clock"]
