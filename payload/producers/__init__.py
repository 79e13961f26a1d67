"""The daemon's producers: each loop's work, one part each, owning its statistics and events.

    beacon    read sensors -> phase and mode -> heater, LED -> UKHAS sentence -> store
    health    store, link and Pi state -> health record; store and memory faults -> events
    pictures  a still kept on the card, its thumbnail -> image record (or SSDV packets)
    musings   readings -> prompt -> persona worker -> outbound guard -> musing record

The daemon (payload/daemon.py) only decides when each runs; a producer never imports it.
What one producer needs of another it asks through a method (the beacon's last readings,
the devices' statuses), never by reaching into its fields.
"""

from .beacon import Beacon, BeaconStats
from .devices import DeviceWatch
from .health import Health, HealthStats
from .musings import Musings, MusingStats, prompt_facts
from .pictures import Pictures, PictureStats

__all__ = ["Beacon", "BeaconStats", "DeviceWatch", "Health", "HealthStats", "MusingStats", "Musings", "PictureStats",
           "Pictures", "prompt_facts"]
