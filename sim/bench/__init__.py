"""The bench, sorted by what each part does:

- `run/`      what runs something: systemd's side of the unit (supervisor), the timekeeper and its
              lockstep clock, the channel process (relay), the repair protocol in virtual time (link),
              power cuts under the store, the payload on the Pi's architecture (pi_check), and the one
              flood driver every flood bench uses (flood);
- `fly/`      `sim fly`: a whole flight of payload, channel and ground station, and its report.json;
- `report/`   what a flight's report reads back from its output: the flight engineer's view, the air
              against its plan, the beacons as heard, the musings, their claims and their substance;
- `measure/`  `make bench`'s figures (benchmarks.py prints the table) and each measurement behind
              them, and `sim soak`'s day aloft with its verdict;
- `fuzz/`     `make fuzz`: every parser that takes bytes from outside, fed hostile input.

A folder imports only those above it in this order of need: `run/` and `report/` import no other
folder, `fly/` imports both, `measure/` any of them; none imports `measure/` (pyproject.toml's
acyclic-siblings contract keeps it so)."""
