"""What the bench runs: the processes and rigs a flight or a measurement stands on.

`supervisor` (systemd's side of the payload's unit), `timekeeper` and `lockstep` (flight time and
the clock that follows it), `relay` (the channel process between payload and ground stations),
`link` (payload and ground code over a lossy link in virtual time), `powercut` (a card that loses
power under the store), `pi_check` (the payload under qemu on the Pi's own architecture), and
`flood` (the one flood driver: every flood bench in measure/ builds its flood and counts; this sends,
paces, holds and reports)."""
