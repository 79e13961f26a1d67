"""What `make pi-image` installs: on this machine (program -> the Debian package that has it, installed
when missing, as `make pi-check` does) and in the card's root (Debian bookworm arm64).

Boards: Debian's own kernel (linux-image-arm64, 6.1 in bookworm) and raspi-firmware (non-free-firmware:
the GPU's start*.elf, fixup*.dat, bootcode.bin) are what raspi.debian.net's images use; Raspberry Pi's
archive (its rpi kernels, picamera2) is not reachable from here. Bookworm's kernel carries the device
trees of the Zero 2 W (bcm2837-rpi-zero-2-w), the Pi 3 (bcm2837-rpi-3-*) and the Pi 4 (bcm2711-rpi-4-b);
it has none for the Pi 5 (bcm2712: its RP1 chip came to mainline Linux after 6.1), so this image does
not boot a Pi 5. BOARD_DTBS lists what the image must carry; the build checks they are there."""

from __future__ import annotations

from sim.bench.run.pi_check import HOST_PACKAGES as PI_CHECK_HOST_PACKAGES
from sim.bench.run.pi_check import ROOT_PACKAGES as PI_CHECK_ROOT_PACKAGES

# program -> Debian package; what pi-check needs (mmdebstrap, arch-test, qemu, nspawn) and the disk tools
HOST_PACKAGES = {**PI_CHECK_HOST_PACKAGES,
                 "mkfs.ext4": "e2fsprogs", "e2fsck": "e2fsprogs", "debugfs": "e2fsprogs",
                 "mkfs.vfat": "dosfstools", "fsck.vfat": "dosfstools",
                 "mcopy": "mtools", "mmd": "mtools", "mdir": "mtools",
                 "sfdisk": "fdisk", "dd": "coreutils", "truncate": "coreutils"}

COMPONENTS = "main,non-free-firmware"  # raspi-firmware is in non-free-firmware
# pi-check's root (Python, a compiler for spidev, systemd) and what a card boots and flies with
ROOT_PACKAGES = (*PI_CHECK_ROOT_PACKAGES,
                 "linux-image-arm64", "raspi-firmware", "initramfs-tools", "firmware-brcm80211",
                 "python3-yaml", "i2c-tools", "systemd-timesyncd", "udev", "kmod", "e2fsprogs", "dosfstools",
                 "iproute2", "openssh-server", "sudo", "ifupdown")

# board -> the device tree the firmware looks for (upstream names: config.txt says upstream_kernel=1)
BOARD_DTBS = {
    "Raspberry Pi Zero 2 W": "bcm2837-rpi-zero-2-w.dtb",
    "Raspberry Pi 3 Model B": "bcm2837-rpi-3-b.dtb",
    "Raspberry Pi 3 Model B+": "bcm2837-rpi-3-b-plus.dtb",
    "Raspberry Pi 4 Model B": "bcm2711-rpi-4-b.dtb",
}
NOT_SUPPORTED = {"Raspberry Pi 5": "bookworm's kernel (6.1) has no bcm2712 device tree or RP1 driver"}
