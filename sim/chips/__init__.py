"""The radios the bench simulates at the level their buses speak: LoRa chips on SPI
(registers, FIFOs, commands), a UART LoRa module, the table that finds a chip's simulator, and
the datagram a chip's packet crosses the bench's air in, with the settings it was keyed with (air.py)."""
