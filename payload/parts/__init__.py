"""The payload's parts: the drivers (GPS, I2C sensors, camera, radios, LED and heater), what
opens them (the Pi's hardware, or a rig by name), and the card they write to."""
