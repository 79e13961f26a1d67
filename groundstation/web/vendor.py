"""The dashboard's map libraries, fetched from the npm registry when the station is installed.

`python -m groundstation.web.vendor` (make install runs it) downloads Leaflet and
protomaps-leaflet as the npm registry publishes them, checks each tarball against the
sha512 integrity pinned here (the value the registry's own metadata gives for that
version), and unpacks only the files the dashboard serves into `static/vendor/`. The
dashboard then serves them itself: a chase car has no internet, and the page never loads
anything from a CDN. A station installed without them still serves its page, with the
plain track drawing instead of the map (server.py says so in its log).

- Leaflet 1.9.4 (BSD-2-Clause): the map, its layers and its controls.
- protomaps-leaflet 5.1.0 (BSD-3-Clause): draws OpenStreetMap vector tiles in the Protomaps
  basemap schema on a canvas, so a region installed at home (`python -m groundstation map
  fetch`) shows its roads and places; a single self-contained script with no font or sprite
  downloads.

Offline machines: download the two tarballs elsewhere (`npm pack leaflet@1.9.4
protomaps-leaflet@5.1.0`, or the registry's tarball URLs) and pass `--from-dir`.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import structlog
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

log = structlog.get_logger(__name__)

VENDOR_DIR = Path(__file__).parent / "static" / "vendor"
MANIFEST = "MANIFEST.json"
REGISTRY = "https://registry.npmjs.org"
MAX_TARBALL_BYTES = 16 << 20  # both are under 1 MB; a registry answering gigabytes is refused


@dataclass(frozen=True)
class NpmPackage:
    name: str
    version: str
    integrity: str  # "sha512-<base64>", as the registry's metadata gives it (dist.integrity)
    files: dict[str, str]  # path in the tarball (under package/) -> path under VENDOR_DIR

    @property
    def tarball_name(self) -> str:
        return f"{self.name}-{self.version}.tgz"

    def url(self, registry: str = REGISTRY) -> str:
        return f"{registry.rstrip('/')}/{self.name}/-/{self.tarball_name}"


_LEAFLET_IMAGES = ("layers.png", "layers-2x.png", "marker-icon.png", "marker-icon-2x.png", "marker-shadow.png")
PACKAGES = (
    NpmPackage(
        "leaflet", "1.9.4",
        "sha512-nxS1ynzJOmOlHp+iL3FyWqK89GtNL8U8rvlMOsQdTTssxZwCXh8N2NB3GDQOL+YR3XnWyZAxwQixURb+FA74PA==",
        {"dist/leaflet.js": "leaflet/leaflet.js", "dist/leaflet.css": "leaflet/leaflet.css",
         "LICENSE": "leaflet/LICENSE",
         **{f"dist/images/{name}": f"leaflet/images/{name}" for name in _LEAFLET_IMAGES}},
    ),
    NpmPackage(
        "protomaps-leaflet", "5.1.0",
        "sha512-N0YY1Gbw5nZ9n8VUOvwHKm/w3zhTTuaZEeMZl8doHemeM4ujGPp2otI6t4Sgqrz8iM4svx2rpG1Q17rHkOWSaA==",
        {"dist/protomaps-leaflet.js": "protomaps-leaflet/protomaps-leaflet.js",
         "LICENSE": "protomaps-leaflet/LICENSE"},
    ),
)


class VendorError(Exception):
    """A library that could not be had or did not check out: the message says which and why."""


def check_integrity(data: bytes, integrity: str, what: str) -> None:
    """Refuse bytes whose digest is not the pinned one (npm's Subresource-Integrity form)."""
    algorithm, _, expected = integrity.partition("-")
    if algorithm not in ("sha512", "sha384", "sha256"):
        raise VendorError(f"{what}: unsupported integrity algorithm {algorithm!r}")
    actual = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
    if actual != expected:
        raise VendorError(f"{what}: {algorithm} is {actual}, expected {expected} (a changed or damaged tarball)")


def _transient(e: BaseException) -> bool:
    if isinstance(e, urllib.error.HTTPError):
        return e.code >= 500 or e.code == 429
    return isinstance(e, (urllib.error.URLError, TimeoutError, ConnectionError))


@retry(retry=retry_if_exception(_transient), stop=stop_after_attempt(4),
       wait=wait_exponential(multiplier=1, max=10), reraise=True)
def _download(url: str) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "stratoecho-groundstation"})
    with urllib.request.urlopen(request, timeout=60) as response:
        data = response.read(MAX_TARBALL_BYTES + 1)
    if len(data) > MAX_TARBALL_BYTES:
        raise VendorError(f"{url}: larger than {MAX_TARBALL_BYTES >> 20} MB, refused")
    return data


def _tarball(package: NpmPackage, registry: str, from_dir: Path | None) -> bytes:
    if from_dir is not None:
        path = from_dir / package.tarball_name
        try:
            return path.read_bytes()
        except OSError as e:
            raise VendorError(f"{path}: {e.strerror} (expected the npm tarball of {package.name} "
                              f"{package.version})") from None
    url = package.url(registry)
    try:
        return _download(url)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
        raise VendorError(f"{url}: {getattr(e, 'reason', e)} (no network? see --from-dir)") from None


def _unpack(package: NpmPackage, data: bytes, into: Path) -> None:
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member_name, target in package.files.items():
                try:
                    member = tar.getmember(f"package/{member_name}")
                except KeyError:
                    raise VendorError(f"{package.tarball_name}: has no package/{member_name}") from None
                if not member.isfile():
                    raise VendorError(f"{package.tarball_name}: {member_name} is not a plain file")
                body = tar.extractfile(member).read()
                path = into / target
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(body)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise VendorError(f"{package.tarball_name}: not a readable npm tarball ({e})") from None


def installed(vendor_dir: Path = VENDOR_DIR, packages: tuple[NpmPackage, ...] = PACKAGES) -> bool:
    """True when every pinned package is unpacked at its pinned version."""
    try:
        manifest = json.loads((vendor_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return all(manifest.get(p.name) == p.version and all((vendor_dir / t).is_file() for t in p.files.values())
               for p in packages)


def install(vendor_dir: Path = VENDOR_DIR, registry: str = REGISTRY, from_dir: Path | None = None,
            packages: tuple[NpmPackage, ...] = PACKAGES) -> None:
    """Fetch, check and unpack every package; the manifest is written last, so an interrupted
    install is never taken for a finished one."""
    vendor_dir.mkdir(parents=True, exist_ok=True)
    for package in packages:
        data = _tarball(package, registry, from_dir)
        check_integrity(data, package.integrity, package.tarball_name)
        _unpack(package, data, vendor_dir)
        log.info("map library installed", package=package.name, version=package.version, bytes=len(data))
    manifest = {p.name: p.version for p in packages}
    fd, tmp = tempfile.mkstemp(dir=vendor_dir, prefix=".manifest-")
    with os.fdopen(fd, "w") as f:
        json.dump(manifest, f, indent=1)
    os.chmod(tmp, 0o644)  # served and read by the dashboard's user, like the libraries beside it
    os.replace(tmp, vendor_dir / MANIFEST)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m groundstation.web.vendor",
        description="Install the dashboard's map libraries (Leaflet, protomaps-leaflet) from the npm registry, "
                    "each checked against its pinned sha512, into " + str(VENDOR_DIR) + ". make install runs it.",
        epilog="exit status: 0 installed (or already there); 1 a package could not be had or failed its check")
    parser.add_argument("--registry", default=REGISTRY, help="an npm registry or mirror (default: %(default)s)")
    parser.add_argument("--from-dir", type=Path, metavar="DIR",
                        help="read the tarballs (leaflet-1.9.4.tgz, protomaps-leaflet-5.1.0.tgz) from DIR "
                             "instead of the network: for a machine that has no internet")
    parser.add_argument("--force", action="store_true", help="install again even if the pinned versions are there")
    args = parser.parse_args(argv)
    if installed() and not args.force:
        print(f"map libraries already installed in {VENDOR_DIR}")
        return 0
    try:
        install(registry=args.registry, from_dir=args.from_dir)
    except VendorError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"map libraries installed in {VENDOR_DIR}: " + ", ".join(f"{p.name} {p.version}" for p in PACKAGES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
