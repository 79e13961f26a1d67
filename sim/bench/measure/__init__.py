"""Measurements: `make bench`'s figures (`benchmarks` prints the table; each measurement behind it
returns `(figure, value, unit, note)` rows, docs/architecture.md "a bench measurement", and a flood
among them is driven by the one flood driver, sim/bench/run/flood.py), what keeps a persona's
substance (`recipe`, docs/training.md), and a day aloft judged from outside the payload (`soak`,
`sim soak`)."""
