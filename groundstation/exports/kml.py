"""KML 2.2 flight track for Google Earth and friends: per payload callsign a Folder with

    Placemark "CALL track"   LineString, altitudeMode absolute, coordinates lon,lat,alt ...
    Placemark "CALL launch"  the first fix
    Placemark "CALL burst"   the highest fix (the burst, once the balloon is descending)
    Placemark "CALL last"    the latest fix: where to drive

Points are in time order, fixes only; the file is rewritten atomically on each flush.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from .base import TrackFile, TrackPoint, iso_z

KML_NS = "http://www.opengis.net/kml/2.2"


def _coord(p: TrackPoint) -> str:
    return f"{p.lon:.6f},{p.lat:.6f},{p.alt:.1f}"


class KmlTrack(TrackFile):
    suffix = ".kml"

    def render(self, tracks: dict[str, list[TrackPoint]]) -> bytes:
        q = lambda tag: f"{{{KML_NS}}}{tag}"  # noqa: E731 - ElementTree's namespaced names
        root = ET.Element(q("kml"))
        doc = ET.SubElement(root, q("Document"))
        ET.SubElement(doc, q("name")).text = "stratoecho flight " + ", ".join(tracks)
        for callsign, points in tracks.items():
            folder = ET.SubElement(doc, q("Folder"))
            ET.SubElement(folder, q("name")).text = callsign
            line_mark = ET.SubElement(folder, q("Placemark"))
            ET.SubElement(line_mark, q("name")).text = f"{callsign} track"
            line = ET.SubElement(line_mark, q("LineString"))
            # absolute: heights are GPS altitude above sea level, not above the terrain
            ET.SubElement(line, q("altitudeMode")).text = "absolute"
            ET.SubElement(line, q("coordinates")).text = " ".join(_coord(p) for p in points)
            if not points:
                continue
            burst = max(points, key=lambda p: p.alt)  # the first of equal maxima: when it got there
            for label, p in (("launch", points[0]), ("burst", burst), ("last", points[-1])):
                mark = ET.SubElement(folder, q("Placemark"))
                ET.SubElement(mark, q("name")).text = f"{callsign} {label}"
                ET.SubElement(mark, q("description")).text = (
                    f"{iso_z(p.when)}, {p.alt:.0f} m, {p.sats} satellites (boot {p.boot}, sentence {p.seq})")
                ET.SubElement(ET.SubElement(mark, q("TimeStamp")), q("when")).text = iso_z(p.when)
                point = ET.SubElement(mark, q("Point"))
                ET.SubElement(point, q("altitudeMode")).text = "absolute"
                ET.SubElement(point, q("coordinates")).text = _coord(p)
        ET.register_namespace("", KML_NS)
        ET.indent(root)
        return ET.tostring(root, encoding="UTF-8", xml_declaration=True) + b"\n"
