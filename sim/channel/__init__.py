"""The air between the payload and its ground stations, as pure models of flight time: the radio
path's reach (distance, horizon, sensitivity, airtime) and bursty loss. The relay process that
flies datagrams through them is the bench's (sim/bench/run/relay.py)."""
