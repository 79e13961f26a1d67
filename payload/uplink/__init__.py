"""What the ground may ask: the gate that lets only signed, fresh commands through, the
handler that acts on them, and the probation of those that could make the payload quieter."""
