"""The bench world: a flight as a function of time, the parts a Pi would see in it (GPS on a
pseudo-terminal, I2C sensors, camera, power, sun, orbit), its scenarios, and the rig that
hands it to the payload as its hardware."""
