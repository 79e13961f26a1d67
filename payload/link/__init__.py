"""The downlink: the one port records leave by, and the transmitter that frames them, spends
the airtime budget and opens listen windows."""
