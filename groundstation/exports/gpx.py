"""GPX 1.1 flight track: one <trk> per payload callsign, one <trkseg> of <trkpt>s in time order.

    <gpx version="1.1" creator="stratoecho X" xmlns="http://www.topografix.com/GPX/1/1">
      <metadata><name/><time/></metadata>
      <trk><name>CALL</name><trkseg>
        <trkpt lat="" lon=""><ele/><time/><sat/></trkpt> ...

Child order inside <trkpt> follows the GPX 1.1 schema (ele, time, ..., sat). Only fixes
go in (see `base.has_fix`); the file is rewritten atomically on each flush.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime, timezone

from stratoecho import __version__

from .base import TrackFile, TrackPoint, iso_z

GPX_NS = "http://www.topografix.com/GPX/1/1"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"


class GpxTrack(TrackFile):
    suffix = ".gpx"

    def render(self, tracks: dict[str, list[TrackPoint]]) -> bytes:
        q = lambda tag: f"{{{GPX_NS}}}{tag}"  # noqa: E731 - ElementTree's namespaced names
        root = ET.Element(q("gpx"), {
            "version": "1.1", "creator": f"stratoecho {__version__}",
            f"{{{XSI_NS}}}schemaLocation": f"{GPX_NS} http://www.topografix.com/GPX/1/1/gpx.xsd",
        })
        meta = ET.SubElement(root, q("metadata"))
        ET.SubElement(meta, q("name")).text = ", ".join(tracks) or "stratoecho flight"
        ET.SubElement(meta, q("time")).text = iso_z(datetime.now(timezone.utc))
        for callsign, points in tracks.items():
            trk = ET.SubElement(root, q("trk"))
            ET.SubElement(trk, q("name")).text = callsign
            seg = ET.SubElement(trk, q("trkseg"))
            for p in points:
                pt = ET.SubElement(seg, q("trkpt"), {"lat": f"{p.lat:.6f}", "lon": f"{p.lon:.6f}"})
                ET.SubElement(pt, q("ele")).text = f"{p.alt:.1f}"
                ET.SubElement(pt, q("time")).text = iso_z(p.when)
                ET.SubElement(pt, q("sat")).text = str(p.sats)
        ET.register_namespace("", GPX_NS)
        ET.register_namespace("xsi", XSI_NS)
        ET.indent(root)
        return ET.tostring(root, encoding="UTF-8", xml_declaration=True) + b"\n"
