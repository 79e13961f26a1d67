"""`make pi-image`: a card image for a Raspberry Pi (Zero 2 W, 3, 4), then the image read back and booted.

    sudo .venv/bin/python -m sim.image --wheel build/pi-wheel/a53/llama_cpp_python-*.whl --persona build/persona

Writes build/pi-image/stratoecho-pi.img (dd it to a card, or Raspberry Pi Imager's "Use custom") and
build/pi-image/report.json (sizes, times, boards, the check's lines). The stages are sim/image/build.py's;
the check sim/image/check.py's. Needs root (chroot, mkfs -d ownership, systemd-nspawn), Debian's and
PyPI's registries; installs what it runs from Debian's packages when missing (sim/image/packages.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import structlog

from sim.bench.run.pi_check import REPO, ensure_binfmt, ensure_host_packages, run
from sim.image import build, check, layout
from sim.image.packages import HOST_PACKAGES, NOT_SUPPORTED

log = structlog.get_logger(__name__)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m sim.image", description=__doc__.split("\n\n")[0],
        epilog="Flashing and the settings files a card needs: docs/deploy.md, \"Flash this image\". "
               "exit status: 0 built (and, unless --no-check, read back, refused without a key and READY with one); "
               "1 a stage failed (it says which); 2 wrong use",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--wheel", type=Path, required=True, help="the aarch64 llama-cpp-python wheel (make pi-wheel)")
    p.add_argument("--persona", type=Path, default=REPO / "build/persona",
                   help="a persona bundle for the check's boot partition (not put in the image; default %(default)s)")
    p.add_argument("--out", type=Path, default=REPO / "build/pi-image", help="where the image and its work go")
    p.add_argument("--hostname", default="stratoecho", help="the card's hostname (default %(default)s)")
    p.add_argument("--data-mib", type=int, default=256, help="the data partition's size in MiB (default %(default)s)")
    p.add_argument("--no-check", action="store_true", help="build only: no read-back, no boot")
    p.add_argument("--only-check", action="store_true", help="check the image already in --out")
    return p.parse_args(argv)


def write_boot_settings(boot: Path, dest: Path, persona: Path, key_line: str | None) -> Path:
    """A boot partition as the user prepares it: the image's files, user-data (without the key when
    key_line is None), meta-data, and the persona folder."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(boot, dest)
    shutil.copytree(persona, dest / "persona")
    key = f"  flight_key: {key_line}\n" if key_line else ""
    (dest / "user-data").write_text("#cloud-config\nhostname: strato1\nstratoecho:\n  callsign: STRATO1\n" + key
                                    + "  radio:\n    kind: sx127x\n    frequency_mhz: 434.25\n")
    (dest / "meta-data").write_text("instance-id: strato1-check\n")
    return dest


def build_image(args: argparse.Namespace, times: dict) -> dict:
    out, t = args.out, time.monotonic()
    tar = build.root_tarball(out / "root.tar")
    times["root_s"] = round(time.monotonic() - t)
    t = time.monotonic()
    wheel = build.project_wheel(out / "dist")
    label_id = layout.disk_id(wheel.name)
    build.install(out / "root", tar, args.wheel, wheel, args.hostname)
    times["install_s"] = round(time.monotonic() - t)
    t = time.monotonic()
    boards = build.boot_files(out / "root", out / "boot", label_id)
    parts = layout.plan(layout.root_size(build.tree_bytes(out / "root")), data_mib=args.data_mib)
    files = {"boot": out / "boot.part", "root": out / "root.part", "data": out / "data.part"}
    build.fat(out / "boot", files["boot"], parts[0])
    build.ext4(out / "root", files["root"], parts[1])
    build.ext4(build.data_folder(out / "root", out / "data"), files["data"], parts[2])
    image = out / "stratoecho-pi.img"
    build.assemble(image, parts, files, label_id)
    for f in files.values():
        f.unlink()
    times["disk_s"] = round(time.monotonic() - t)
    return {"image": str(image), "bytes": image.stat().st_size, "allocated_bytes": image.stat().st_blocks * 512,
            "partitions": [vars(p) | {"mib": p.size // layout.MIB} for p in parts], "label_id": label_id,
            "boards": boards, "not_supported": NOT_SUPPORTED, "project_wheel": wheel.name, "llama_wheel": args.wheel.name}


def check_image(args: argparse.Namespace, found: dict, times: dict) -> list[str]:
    out, t = args.out, time.monotonic()
    parts = [layout.Partition(**{k: p[k] for k in ("name", "label", "type", "start", "size")}) for p in found["partitions"]]
    files = check.read_back(Path(found["image"]), parts, out / "check")
    root, boot, data = check.extract(files, out / "check")
    times["read_back_s"] = round(time.monotonic() - t)
    check.prepare_for_container(root, next((out / "dist").glob("stratoecho-*.whl")))
    key_file = out / "check" / "flight.key"
    if not key_file.exists():
        run([sys.executable, "-m", "groundstation", "keygen", key_file])
    rows = []
    for name, key_line in (("without a key", None), ("complete", key_file.read_text().strip())):
        t = time.monotonic()
        prepared = write_boot_settings(boot, out / "check" / f"boot-{name.replace(' ', '-')}", args.persona, key_line)
        lines = check.boot(root, prepared, data, out / "check" / f"console-{name.replace(' ', '-')}.log")
        times[f"boot_{name.replace(' ', '_')}_s"] = round(time.monotonic() - t)
        rows += [f"boot ({name}): {line}" for line in lines]
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("error: pi-image needs root (chroot, mkfs.ext4 -d keeping owners, systemd-nspawn)", file=sys.stderr)
        return 2
    if not args.wheel.is_file():
        print(f"error: no wheel at {args.wheel}: run make pi-wheel PI_WHEEL_FAMILIES=a53 first", file=sys.stderr)
        return 2
    report_file, times = args.out / "report.json", {}
    try:
        ensure_host_packages(HOST_PACKAGES)
        ensure_binfmt()
        if args.only_check:
            found = json.loads(report_file.read_text())
            times = found.get("times", {})
        else:
            t = time.monotonic()
            found = build_image(args, times)
            times["build_s"] = round(time.monotonic() - t)
        if not args.no_check:
            if not (args.persona / "persona.toml").exists():
                print(f"error: no persona bundle at {args.persona} for the check: make persona, or --no-check",
                      file=sys.stderr)
                return 2
            found["check"] = check_image(args, found, times)
    except (build.ImageError, RuntimeError, subprocess.CalledProcessError, OSError) as e:
        print(f"error: pi-image: {e}", file=sys.stderr)
        return 1
    found["times"] = times
    report_file.write_text(json.dumps(found, indent=1))
    print(f"pi-image: {found['image']}, {found['bytes'] / layout.MIB:.0f} MiB ({found['allocated_bytes'] / layout.MIB:.0f} "
          f"MiB allocated), boards: {', '.join(found['boards'])}; times {times}")
    for row in found.get("check", []):
        print("  " + row)
    rows = found.get("check", [])
    ok = args.no_check or (any(r.startswith("boot (complete): payload: active/running") for r in rows)
                           and any(r.startswith("boot (without a key): firstboot: failed") for r in rows)
                           and not any(r.startswith("boot (without a key): payload: active") for r in rows))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
