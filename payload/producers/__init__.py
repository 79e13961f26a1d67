"""The daemon's producers: each loop's work, one part each, owning its statistics and events.

    beacon    read sensors -> phase and mode -> heater, LED -> UKHAS sentence -> store
    health    store, link and Pi state -> health record; store and memory faults -> events
    pictures  a still kept on the card, its thumbnail -> image record (or SSDV packets)
    musings   readings -> prompt -> persona worker -> outbound guard -> musing record

Each is a `Producer` (flight.py) built from the boot's `Flight` and its own parts; a producer
never imports the daemon, and asks another through a method, never by reaching into its fields.
"""

from .beacon import Beacon, BeaconStats
from .devices import DeviceWatch
from .flight import Fitted, Flight, Idle, Producer
from .health import Health, HealthStats
from .musings import MusingPlan, Musings, MusingStats
from .pictures import Pictures, PictureStats

__all__ = ["Beacon", "BeaconStats", "DeviceWatch", "Fitted", "Flight", "Health", "HealthStats", "Idle", "MusingStats",
           "MusingPlan", "Musings", "PictureStats", "Pictures", "Producer"]
