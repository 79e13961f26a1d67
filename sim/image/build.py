"""`make pi-image`, stage by stage: a card image for a Raspberry Pi, with no loop device and no mount.

1. **Root**: Debian bookworm arm64 from its registry (mmdebstrap, as `make pi-check` builds its root,
   with Debian's kernel and raspi-firmware; sim/image/packages.py), kept as a tarball and reused.
2. **Install**: deploy/install-pi.sh --root, the steps a card can take before its flight is known
   (user, data mount, the project's folder, venv, the llama-cpp-python wheel of `make pi-wheel`,
   watchdog, unit); the project itself from its own wheel (pip wheel .); first boot's unit and the
   payload's drop-in that waits for it (payload/firstboot.py). No key, no persona, no callsign: those
   come from the boot partition at first boot.
3. **Boot partition**: the firmware, Debian's kernel and initrd, the device trees of the boards bookworm's
   kernel knows, config.txt and cmdline.txt, written into a FAT32 file with mtools.
4. **Filesystems and disk**: the root with `mkfs.ext4 -d` (from the tree, no mount), an empty data
   partition owned by the payload's user, the table with sfdisk (sim/image/layout.py), each partition
   put in place with dd.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import structlog

from sim.bench.run.pi_check import ARCH, REPO, SUITE, in_root, mounted, run, trust_this_machines_registries
from sim.image import layout
from sim.image.packages import BOARD_DTBS, COMPONENTS, ROOT_PACKAGES

log = structlog.get_logger(__name__)

PROJECT = "/opt/stratoecho"
SCRIPT_STEPS = "data,user,project,venv,llama,watchdog,units"  # config, persona, key: first boot's
FIRSTBOOT_UNITS = ("stratoecho-firstboot.service", "stratoecho-payload.service.d/10-firstboot.conf")
CONFIG_TXT = """# A stratoecho card (make pi-image): Debian bookworm's kernel and Raspberry Pi firmware (raspi-firmware).
# The flight's settings are not here: user-data, beside this file (docs/deploy.md, "Flash this image").
arm_64bit=1
upstream_kernel=1
kernel=vmlinuz
initramfs initrd.img followkernel
enable_uart=1
disable_overscan=1
"""
FSTAB = f"""# make pi-image: the card's boot and root partitions, by label (sim/image/layout.py)
LABEL={layout.ROOT_LABEL}  /  ext4  defaults,noatime  0  1
LABEL={layout.BOOT_LABEL}  /boot/firmware  vfat  defaults,noatime  0  2
"""


class ImageError(RuntimeError):
    """A stage that could not be done, and what to do about it."""


# ------------------------------------------------------------------ 1. root


def root_tarball(tar: Path) -> Path:
    if tar.exists():
        log.info("root tarball kept", tar=str(tar))
        return tar
    log.info("building the card's root", suite=SUITE, packages=len(ROOT_PACKAGES), expect="about 10 minutes")
    tar.parent.mkdir(parents=True, exist_ok=True)
    part = tar.with_name(tar.name + ".part")  # renamed once whole
    run(["mmdebstrap", f"--arch={ARCH}", "--variant=minbase", f"--components={COMPONENTS}",
         "--include=" + ",".join(ROOT_PACKAGES), "--format=tar", SUITE, part])
    part.rename(tar)
    return tar


# ------------------------------------------------------------------ 2. install


def project_wheel(out: Path) -> Path:
    """The project as one wheel, of the committed tree (as the root's clone is): pip wheel of a `git archive`
    of HEAD, built outside the checkout (setuptools' build/ would land in it), no dependencies: those come
    from PyPI in the root."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("stratoecho-*.whl"):
        old.unlink()
    with tempfile.TemporaryDirectory(prefix="pi-image-src-") as src:
        archive = run(["git", "-C", REPO, "archive", "--format=tar", "HEAD"], capture_output=True).stdout
        run(["tar", "-C", src, "-xf", "-"], input=archive)
        run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", out, src])
    return next(out.glob("stratoecho-*.whl"))


def install(root: Path, tar: Path, llama_wheel: Path, wheel: Path, hostname: str) -> None:
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    run(["tar", "-C", root, "-xf", tar])
    trust_this_machines_registries(root)
    with mounted(root):
        run([REPO / "deploy" / "install-pi.sh", "--root", root, "--create-groups", "--wheel", llama_wheel,
             "--only", SCRIPT_STEPS])
        shutil.copy(wheel, root / "tmp" / wheel.name)
        log.info("the project's wheel", wheel=wheel.name, expect="minutes under emulation (spidev compiles)")
        in_root(root, f"{PROJECT}/.venv/bin/pip install --quiet '/tmp/{wheel.name}[payload]'")
        in_root(root, "update-ca-certificates --fresh >/dev/null")  # the root's own CAs, not this machine's
    for name in FIRSTBOOT_UNITS:
        dest = root / "etc/systemd/system" / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "systemd" / name, dest)
    wants = root / "etc/systemd/system/multi-user.target.wants/stratoecho-firstboot.service"
    wants.parent.mkdir(parents=True, exist_ok=True)
    wants.unlink(missing_ok=True)
    wants.symlink_to("/etc/systemd/system/stratoecho-firstboot.service")
    (root / "boot/firmware").mkdir(parents=True, exist_ok=True)
    fstab = root / "etc/fstab"
    kept = [ln for ln in fstab.read_text().splitlines() if ln.strip() and not ln.startswith("#")] if fstab.exists() else []
    fstab.write_text(FSTAB + "".join(f"{ln}\n" for ln in kept if "LABEL=rootfs" not in ln and "LABEL=bootfs" not in ln))
    (root / "etc/hostname").write_text(hostname + "\n")
    for path in (root / "etc/resolv.conf", root / "etc/pip.conf"):  # this machine's, lent for the build only
        path.unlink(missing_ok=True)


# ------------------------------------------------------------------ 3. boot partition


def boot_files(root: Path, dest: Path, label_id: str) -> list[str]:
    """The boot partition's files, in a folder: firmware, kernel, initrd, device trees, config.txt, cmdline.txt.
    Returns the boards whose device tree is there."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for blob in sorted((root / "usr/lib/raspi-firmware").glob("*")):
        if blob.is_file():
            shutil.copy(blob, dest / blob.name)
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    initrds = sorted((root / "boot").glob("initrd.img-*"))
    if not kernels or not initrds:
        raise ImageError(f"no kernel or initrd in {root}/boot: linux-image-arm64 and initramfs-tools should have put them there")
    shutil.copy(kernels[-1], dest / "vmlinuz")
    shutil.copy(initrds[-1], dest / "initrd.img")
    dtbs = next(iter(sorted((root / "usr/lib").glob("linux-image-*/broadcom"))), None)
    boards = []
    for board, dtb in BOARD_DTBS.items():
        if dtbs is not None and (dtbs / dtb).exists():
            shutil.copy(dtbs / dtb, dest / dtb)
            boards.append(board)
    if not boards:
        raise ImageError(f"no Raspberry Pi device tree in {dtbs}: expected {', '.join(BOARD_DTBS.values())}")
    firmware = root / "boot/firmware"  # the boot partition is mounted over it: what raspi-firmware's hook put there goes
    shutil.rmtree(firmware)
    firmware.mkdir()
    (dest / "config.txt").write_text(CONFIG_TXT)
    (dest / "cmdline.txt").write_text(f"console=serial0,115200 console=tty1 root=PARTUUID={layout.partuuid(label_id, 2)} "
                                      "rootfstype=ext4 fsck.repair=yes rootwait\n")
    return boards


def tree_bytes(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


# ------------------------------------------------------------------ 4. filesystems and disk


def fat(folder: Path, image: Path, part: layout.Partition) -> None:
    image.unlink(missing_ok=True)
    run(["truncate", "-s", str(part.size), image])
    run(["mkfs.vfat", "-F", "32", "-n", part.label.upper(), image], stdout=subprocess.DEVNULL)
    for item in sorted(folder.iterdir()):
        run(["mcopy", "-s", "-p", "-m", "-i", image, item, "::/"])


def ext4(folder: Path, image: Path, part: layout.Partition) -> None:
    """An ext4 file of the folder's tree (its owners kept); the top folder's owner and mode too, which
    `mkfs.ext4 -d` leaves root's."""
    image.unlink(missing_ok=True)
    run(["truncate", "-s", str(part.size), image])
    run(["mkfs.ext4", "-q", "-F", "-L", part.label, "-d", folder, image])
    st = folder.stat()
    for field, value in (("uid", st.st_uid), ("gid", st.st_gid), ("mode", f"0{st.st_mode:o}")):
        run(["debugfs", "-w", "-R", f"set_inode_field / {field} {value}", image],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def data_folder(root: Path, dest: Path) -> Path:
    """The data partition's top folder, owned by the payload's user (uid from the root's passwd)."""
    uid = gid = 0
    for line in (root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == "stratoecho":
            uid, gid = int(fields[2]), int(fields[3])
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True, mode=0o750)
    shutil.chown(dest, uid, gid)
    return dest


def assemble(image: Path, parts: list[layout.Partition], files: dict[str, Path], label_id: str) -> None:
    image.unlink(missing_ok=True)
    run(["truncate", "-s", str(layout.image_size(parts)), image])
    run(["sfdisk", "--quiet", image], input=layout.sfdisk_script(parts, label_id).encode())
    for part in parts:
        run(["dd", f"if={files[part.name]}", f"of={image}", "bs=4M", f"seek={part.start // layout.ALIGN}",
             "conv=notrunc,sparse", "status=none"])
