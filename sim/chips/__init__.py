"""The radios the bench simulates at the level their buses speak: LoRa chips on SPI
(registers, FIFOs, commands), a UART LoRa module, and the table that finds a chip's simulator."""
