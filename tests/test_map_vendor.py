"""The dashboard's map libraries come from the npm registry, checked against pinned digests:
a changed tarball is refused, an interrupted install is not taken for a finished one, and the
libraries this checkout's `make install` put in place are the pinned ones."""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from groundstation.web import vendor


def tarball(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, body in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return out.getvalue()


def integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


LIB = {"dist/lib.js": b"window.lib = 1;\n", "LICENSE": b"BSD\n"}
DATA = tarball(LIB)
PACKAGE = vendor.NpmPackage("lib", "1.0.0", integrity(DATA), {"dist/lib.js": "lib/lib.js", "LICENSE": "lib/LICENSE"})


@pytest.fixture
def registry():
    """A registry on 127.0.0.1: `answers` is what it serves next (status, body), then the tarball."""
    answers: list[tuple[int, bytes]] = []
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.path)
            status, body = answers.pop(0) if answers else (200, DATA)
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.answers, server.seen = answers, seen
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield server
    finally:
        server.shutdown()


def test_installs_the_listed_files_and_a_manifest(tmp_path, registry):
    vendor.install(tmp_path, registry.url, packages=(PACKAGE,))
    assert registry.seen == ["/lib/-/lib-1.0.0.tgz"]  # the registry's own tarball path
    assert (tmp_path / "lib/lib.js").read_bytes() == LIB["dist/lib.js"]
    assert vendor.installed(tmp_path, (PACKAGE,))
    newer = vendor.NpmPackage("lib", "1.0.1", PACKAGE.integrity, PACKAGE.files)
    assert not vendor.installed(tmp_path, (newer,))  # a new pin installs again


def test_a_changed_tarball_is_refused_and_nothing_counts_as_installed(tmp_path, registry):
    registry.answers.append((200, tarball({**LIB, "dist/lib.js": b"window.lib = 'evil';\n"})))
    with pytest.raises(vendor.VendorError, match="lib-1.0.0.tgz: sha512 is .* expected"):
        vendor.install(tmp_path, registry.url, packages=(PACKAGE,))
    assert not (tmp_path / "lib/lib.js").exists()
    assert not vendor.installed(tmp_path, (PACKAGE,))


def test_a_busy_registry_is_tried_again_a_missing_package_is_not(tmp_path, registry, monkeypatch):
    monkeypatch.setattr(vendor._download.retry, "sleep", lambda s: None)  # tenacity's wait, not the test's
    registry.answers.append((503, b"busy"))
    vendor.install(tmp_path, registry.url, packages=(PACKAGE,))
    assert len(registry.seen) == 2
    registry.answers.append((404, b"not found"))
    with pytest.raises(vendor.VendorError, match="lib-1.0.0.tgz: .*Not Found"):
        vendor.install(tmp_path / "again", registry.url, packages=(PACKAGE,))


def test_a_tarball_without_a_listed_file_says_which(tmp_path):
    data = tarball({"LICENSE": b"BSD\n"})
    package = vendor.NpmPackage("lib", "1.0.0", integrity(data), PACKAGE.files)
    (tmp_path / "lib-1.0.0.tgz").write_bytes(data)
    with pytest.raises(vendor.VendorError, match="lib-1.0.0.tgz: has no package/dist/lib.js"):
        vendor.install(tmp_path / "out", from_dir=tmp_path, packages=(package,))
    assert not vendor.installed(tmp_path / "out", (package,))


def test_an_offline_install_reads_the_tarballs_from_a_folder(tmp_path):
    with pytest.raises(vendor.VendorError, match="lib-1.0.0.tgz: No such file"):
        vendor.install(tmp_path / "out", from_dir=tmp_path, packages=(PACKAGE,))
    (tmp_path / "lib-1.0.0.tgz").write_bytes(DATA)
    vendor.install(tmp_path / "out", from_dir=tmp_path, packages=(PACKAGE,))
    assert vendor.installed(tmp_path / "out", (PACKAGE,))


def test_this_checkout_has_the_pinned_libraries():
    """make install (and so make test) puts them in place: the dashboard's map depends on it."""
    assert vendor.installed(), "run `make install` (python -m groundstation.web.vendor)"
    leaflet = (vendor.VENDOR_DIR / "leaflet/leaflet.js").read_text()
    assert "1.9.4" in leaflet[:400]
    assert "protomapsL" in (vendor.VENDOR_DIR / "protomaps-leaflet/protomaps-leaflet.js").read_text()[:200]
    for package in vendor.PACKAGES:  # every pin is in npm's Subresource-Integrity form
        assert package.integrity.startswith("sha512-") and len(base64.b64decode(package.integrity[7:])) == 64


def test_command_line(tmp_path, capsys):
    assert vendor.main([]) == 0  # already installed: nothing fetched
    assert "already installed" in capsys.readouterr().out
    assert Path(vendor.VENDOR_DIR, vendor.MANIFEST).stat().st_mode & 0o044 == 0o044  # the dashboard's user reads it
