"""How the payload decides: flight phases, power modes and the governor over them, the
duty cycle's airtime, and what a musing may cost on the board."""
