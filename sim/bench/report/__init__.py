"""What a bench flight's report reads back from its output folder (report.json's sections and the
lines `sim report` prints): `flight_report` (the flight engineer's view), `air_report` (the air
against its plan), `beacons` (the beacon as the air heard it), `musing_report` (every musing made),
`truth_report` (its claims, true or not), `substance_report` (what it said beyond fillers) and `logs`
(a process's JSON log read back)."""
