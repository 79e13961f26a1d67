"""The daemon's producers: each loop's work, one part each, owning its statistics and events.

    beacon    read sensors -> phase and mode -> heater, LED -> UKHAS sentence -> store
    health    store, link and Pi state -> health record; store and memory faults -> events
    pictures  a still kept on the card, its thumbnail -> image record (or SSDV packets)
    musings   readings -> prompt -> persona worker -> outbound guard -> musing record

Each is a `Producer`: `once()` is one run, `stats()` its counts for the statistics file; one
that does not fly this boot (no camera, no persona) is `Idle`. Each is built from the boot's
`Flight` (what they all share) and its own parts. The daemon (payload/daemon.py) only decides
when each runs, by the loops table of payload/assembly.py; a producer never imports it.
What one producer needs of another it asks through a method (the beacon's last readings,
the devices' statuses), never by reaching into its fields.
"""

from .beacon import Beacon, BeaconStats
from .devices import DeviceWatch
from .flight import Fitted, Flight, Idle, Producer
from .health import Health, HealthStats
from .musings import MusingPlan, Musings, MusingStats
from .pictures import Pictures, PictureStats

__all__ = ["Beacon", "BeaconStats", "DeviceWatch", "Fitted", "Flight", "Health", "HealthStats", "Idle", "MusingStats",
           "MusingPlan", "Musings", "PictureStats", "Pictures", "Producer"]
