"""`make pi-image`'s check: the image read back from its own file and booted, as a card would be.

1. **Read back**: the partition table (sfdisk --json) against the plan; each partition cut out of the
   image with dd and checked (fsck.vfat -n, e2fsck -fn); the root's and the boot partition's files
   extracted from those partition files (debugfs rdump, mcopy): no mount, no loop device.
2. **Boot**: the extracted root booted with systemd-nspawn under qemu-user, as `make pi-check` boots its
   root, the boot partition bound where Raspberry Pi OS mounts it (/boot/firmware) and the data
   partition's files at /var/lib/stratoecho. What the container cannot have is changed for the boot
   only, as pi-check does it (sim/bench/run/pi_check.py's BOOT_DROPIN: the bench's simulated parts for the
   hardware, no seccomp filter for the emulator): /etc/fstab (the container has folders, not partitions).
   A probe inside reports first boot's result, the payload's state (active only after READY=1: the unit
   is Type=notify) and the refusal left on the boot partition, then powers off.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import structlog

from sim.bench.run.pi_check import in_root, install_probe, mounted, run
from sim.image import layout

log = structlog.get_logger(__name__)

PROBE = """#!/bin/sh
# make pi-image's check: first boot, then the payload's unit (READY=1 makes it active).
out=/var/lib/image-check.txt; : > $out
show() { systemctl show "$1" -p "$2" --value; }
echo "firstboot: $(show stratoecho-firstboot ActiveState)/$(show stratoecho-firstboot Result)" >> $out
sleep 5; i=5  # the payload's condition is evaluated once first boot is done (After=)
while [ -e /etc/stratoecho/settings-complete ] && [ "$(show stratoecho-payload ActiveState)" != active ] \\
    && [ "$(show stratoecho-payload ActiveState)" != failed ] && [ $i -lt 900 ]; do sleep 1; i=$((i+1)); done
state="$(show stratoecho-payload ActiveState)/$(show stratoecho-payload SubState)"
echo "payload: $state after ${i} s, condition $(show stratoecho-payload ConditionResult)" >> $out
[ -e /boot/firmware/stratoecho-refused.txt ] && sed 's/^/refused.txt: /' /boot/firmware/stratoecho-refused.txt >> $out
journalctl -u stratoecho-firstboot -u stratoecho-payload --no-pager -n 15 -o cat | sed 's/^/journal: /' >> $out 2>&1
systemctl poweroff
"""


def read_back(image: Path, parts: list[layout.Partition], work: Path) -> dict[str, Path]:
    """The image's table checked against the plan; each partition cut out and fsck'd. name -> its file."""
    table = json.loads(run(["sfdisk", "--json", image], capture_output=True, text=True).stdout)["partitiontable"]
    found = [(p["start"], p["size"], p["type"]) for p in table["partitions"]]
    planned = [(p.start_sector, p.sectors, p.type) for p in parts]
    if found != planned:
        raise RuntimeError(f"{image}: partition table {found} is not the plan {planned}")
    work.mkdir(parents=True, exist_ok=True)
    files = {}
    for part in parts:
        files[part.name] = work / f"{part.name}.part"
        run(["dd", f"if={image}", f"of={files[part.name]}", "bs=4M", f"skip={part.start // layout.ALIGN}",
             f"count={part.size // layout.ALIGN}", "status=none"])
    run(["fsck.vfat", "-n", files["boot"]], stdout=subprocess.DEVNULL)
    for name in ("root", "data"):
        run(["e2fsck", "-fn", files[name]], stdout=subprocess.DEVNULL)
    log.info("read back", image=str(image), partitions=len(parts), fsck="clean")
    return files


def extract(files: dict[str, Path], work: Path) -> tuple[Path, Path, Path]:
    root, boot, data = work / "root", work / "boot", work / "data"
    for folder, name in ((root, "root"), (data, "data")):
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        run(["debugfs", "-R", f"rdump / {folder}", files[name]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        top = run(["debugfs", "-R", "stat /", files[name]], capture_output=True, text=True).stdout
        owner = re.search(r"User:\s*(\d+)\s+Group:\s*(\d+)", top)
        mode = re.search(r"Mode:\s*0?([0-7]+)", top)
        if owner:  # rdump fills the folder; the partition's top folder's owner and mode are its own
            shutil.chown(folder, int(owner[1]), int(owner[2]))
        if mode:
            folder.chmod(int(mode[1], 8) & 0o7777)
    if boot.exists():
        shutil.rmtree(boot)
    boot.mkdir(parents=True)
    run(["mcopy", "-s", "-p", "-m", "-i", files["boot"], "::/*", boot])
    return root, boot, data


def prepare_for_container(root: Path, wheel: Path) -> None:
    """What a container under qemu-user lacks, changed in the extracted copy only (never the image)."""
    (root / "etc/fstab").write_text("# make pi-image check: the container binds folders, not partitions\n")
    install_probe(root, "image-check-probe", PROBE, "make pi-image check: first boot and the payload under systemd",
                  "stratoecho-firstboot.service")
    if not (root / "opt/stratoecho/.venv/bin/psutil-ok").exists():  # the bench world's own needs (pi-check's)
        for path in ("/etc/ssl/certs/ca-certificates.crt", "/etc/pip.conf", "/etc/resolv.conf"):
            if Path(path).exists():
                shutil.copyfile(path, root / path.lstrip("/"))
        with mounted(root):
            shutil.copy(wheel, root / "tmp" / wheel.name)
            log.info("the bench's parts in the check's copy", expect="minutes under emulation")
            in_root(root, f"/opt/stratoecho/.venv/bin/pip install --quiet '/tmp/{wheel.name}[payload,ground]' psutil")
        (root / "opt/stratoecho/.venv/bin/psutil-ok").touch()


def boot(root: Path, boot_dir: Path, data: Path, log_file: Path, timeout_s: float = 1500) -> list[str]:
    """Boot the extracted root with this boot partition; the probe's report."""
    report = root / "var/lib/image-check.txt"
    report.unlink(missing_ok=True)
    (root / "etc/stratoecho/settings-complete").unlink(missing_ok=True)  # a first boot each time
    log.info("booting the card's root", how="systemd-nspawn --boot", boot=str(boot_dir), expect="minutes")
    with open(log_file, "wb") as console:
        try:
            subprocess.run(["systemd-nspawn", "-D", str(root), "--boot", "--register=no", "--keep-unit",
                            "--machine=pi-image", "--console=read-only", f"--bind={boot_dir}:/boot/firmware",
                            f"--bind={data}:/var/lib/stratoecho"], stdout=console, stderr=subprocess.STDOUT,
                           timeout=timeout_s, stdin=subprocess.DEVNULL, check=False)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
    lines = report.read_text(errors="replace").splitlines() if report.exists() else ["the probe wrote nothing"]
    return lines + ([f"the container was still up after {timeout_s:.0f} s (console: {log_file})"] if timed_out else [])
