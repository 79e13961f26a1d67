"""`make pi-image`'s pure parts (sim/image): the partition arithmetic and the package lists. The image
build and its boot need root and qemu: `make pi-image`, not `make test` (like `make pi-check`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.image import layout, packages

MIB = layout.MIB
ROOT = Path(__file__).resolve().parent.parent


def test_the_plan_is_raspberry_pi_os_s_boot_then_root_then_data_each_aligned():
    parts = layout.plan(root_bytes=1500 * MIB + 1, data_mib=256)
    boot, root, data = parts
    assert (boot.start, boot.size, boot.type, boot.label) == (4 * MIB, 512 * MIB, "c", "bootfs")
    assert root.start == boot.end and data.start == root.end
    assert root.size == 1504 * MIB  # rounded up to the next 4 MiB
    assert all(p.start % layout.ALIGN == 0 and p.size % layout.ALIGN == 0 for p in parts)
    assert layout.image_size(parts) == data.end == (4 + 512 + 1504 + 256) * MIB
    assert data.label == "stratodata"  # the label deploy/install-pi.sh mounts at /var/lib/stratoecho


def test_the_data_label_is_the_install_script_s():
    text = (ROOT / "deploy" / "install-pi.sh").read_text()
    assert f"DATA_LABEL={layout.DATA_LABEL}\n" in text


def test_the_root_has_room_beyond_its_files():
    used = 1200 * MIB
    size = layout.root_size(used)
    assert size % layout.ALIGN == 0 and size >= used * 1.25 + 64 * MIB
    assert layout.root_size(10 * MIB) >= 256 * MIB  # a small tree still gets room to write


def test_sfdisk_gets_sectors_types_and_the_disk_id():
    parts = layout.plan(root_bytes=800 * MIB, data_mib=64)
    script = layout.sfdisk_script(parts, "0x1234abcd")
    assert script.splitlines()[:3] == ["label: dos", "label-id: 0x1234abcd", "unit: sectors"]
    assert "start=8192, size=1048576, type=c, bootable" in script
    assert f"start={parts[1].start_sector}, size={parts[1].sectors}, type=83" in script
    assert layout.partuuid("0x1234abcd", 2) == "1234abcd-02"


def test_the_disk_id_is_stable_and_never_zero():
    assert layout.disk_id("a") == layout.disk_id("a") != layout.disk_id("b")
    assert int(layout.disk_id("a"), 16) != 0


@pytest.mark.parametrize("bad", [dict(root_bytes=0), dict(root_bytes=MIB, data_mib=0), dict(root_bytes=MIB, boot_mib=32)])
def test_impossible_sizes_are_refused(bad):
    with pytest.raises(ValueError, match="sizes must be positive"):
        layout.plan(**bad)


def test_the_image_needs_pi_check_s_tools_and_the_disk_tools():
    from sim.bench.run.pi_check import HOST_PACKAGES

    assert HOST_PACKAGES.items() <= packages.HOST_PACKAGES.items()
    for program, package in (("mkfs.vfat", "dosfstools"), ("mcopy", "mtools"), ("sfdisk", "fdisk"),
                             ("mkfs.ext4", "e2fsprogs"), ("arch-test", "arch-test")):
        assert packages.HOST_PACKAGES[program] == package


def test_the_root_has_a_kernel_firmware_and_what_first_boot_reads():
    for package in ("linux-image-arm64", "raspi-firmware", "initramfs-tools", "python3-yaml", "systemd"):
        assert package in packages.ROOT_PACKAGES
    assert "non-free-firmware" in packages.COMPONENTS  # raspi-firmware's component
    assert "Raspberry Pi 5" in packages.NOT_SUPPORTED and "Raspberry Pi 5" not in packages.BOARD_DTBS
