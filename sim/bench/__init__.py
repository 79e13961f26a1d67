"""Flying and measuring: `sim fly` and the processes it runs (timekeeper and lockstep clock,
systemd's side, soak, power cuts), the flight and musing reports, and `make bench`'s figures."""
