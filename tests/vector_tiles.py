"""Mapbox Vector Tiles (MVT 2.1) written by hand for the map tests: a protobuf `Tile` of layers of
features, each a geometry of MoveTo/LineTo/ClosePath commands with zigzag-encoded deltas on a
4096-unit grid (the specification: github.com/mapbox/vector-tile-spec, 2.1). Just enough for a
tile in the Protomaps basemap schema (`earth` land, `roads` with a `kind`) that
protomaps-leaflet draws."""

from __future__ import annotations

import gzip

EXTENT = 4096
POINT, LINESTRING, POLYGON = 1, 2, 3


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, wire_type: int, payload: bytes | int) -> bytes:
    key = _varint(number << 3 | wire_type)
    if wire_type == 0:
        return key + _varint(payload)
    return key + _varint(len(payload)) + payload  # wire type 2: length-delimited


def _zigzag(n: int) -> int:
    return (n << 1) ^ (n >> 31)


def _geometry(kind: int, points: list[tuple[int, int]]) -> list[int]:
    """MoveTo the first point, LineTo the rest, and ClosePath for a polygon's ring."""
    out, x0, y0 = [], 0, 0
    for i, (x, y) in enumerate(points):
        if i == 0:
            out.append(1 | 1 << 3)  # MoveTo, 1 point
        elif i == 1:
            out.append(2 | (len(points) - 1) << 3)  # LineTo, the rest
        out += [_zigzag(x - x0), _zigzag(y - y0)]
        x0, y0 = x, y
    if kind == POLYGON:
        out.append(7 | 1 << 3)
    return out


def layer(name: str, features: list[tuple[int, list[tuple[int, int]], dict[str, str]]]) -> bytes:
    """A layer of (geometry type, points in tile units, string properties)."""
    keys: list[str] = []
    values: list[str] = []
    body = _field(15, 0, 2) + _field(1, 2, name.encode())
    for fid, (kind, points, props) in enumerate(features, 1):
        tags = []
        for k, v in props.items():
            keys.append(k) if k not in keys else None
            values.append(v) if v not in values else None
            tags += [keys.index(k), values.index(v)]
        feature = (_field(1, 0, fid) + _field(2, 2, b"".join(map(_varint, tags))) + _field(3, 0, kind)
                   + _field(4, 2, b"".join(map(_varint, _geometry(kind, points)))))
        body += _field(2, 2, feature)
    body += b"".join(_field(3, 2, k.encode()) for k in keys)
    body += b"".join(_field(4, 2, _field(1, 2, v.encode())) for v in values)
    return _field(3, 2, body + _field(5, 0, EXTENT))


def chase_tile() -> bytes:
    """Land over the whole tile and a motorway across it, gzip'd as a PMTiles planet stores it."""
    # an exterior ring turns clockwise on the screen (y points down): positive area, as the spec asks
    earth = layer("earth", [(POLYGON, [(0, 0), (EXTENT, 0), (EXTENT, EXTENT), (0, EXTENT)], {"kind": "earth"})])
    roads = layer("roads", [(LINESTRING, [(0, EXTENT // 2), (EXTENT, EXTENT // 2)], {"kind": "highway"}),
                            (LINESTRING, [(EXTENT // 2, 0), (EXTENT // 2, EXTENT)], {"kind": "major_road"})])
    return gzip.compress(earth + roads, mtime=0)
