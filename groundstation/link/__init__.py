"""The ground's receive path: a heard frame routed to its flight (`flights`), decoded into
records (`decoder`, `heard`), stored, and answered in the balloon's listen windows (`listen`,
`repair` for what to ask again, `uplink` for signing what goes up); `keys` are the key options
every command that reads our frames shares."""
