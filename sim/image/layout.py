"""The card's partition table, as arithmetic (`make pi-image`): an MBR (the Pi's firmware reads only
that) with the FAT boot partition first, the root, and the payload's data partition.

    sector 0        8192 (4 MiB)         boot end              root end             data end
    | MBR, gap     | boot: FAT32 (0x0c)  | root: ext4 (0x83)   | data: ext4 (0x83)  |
                     label bootfs          label rootfs          label stratodata

Raspberry Pi OS starts its boot partition at 4 MiB and makes it 512 MiB; every partition here starts
on a 4 MiB boundary (an SD card's erase blocks), so the image is `dd`-able as it is and each
partition can be cut out of it with `dd skip=START count=SIZE` (what the read-back check does).
Pure: no tools, no files; sfdisk takes `sfdisk_script`'s text."""

from __future__ import annotations

from dataclasses import dataclass

SECTOR = 512
MIB = 1 << 20
ALIGN = 4 * MIB
FIRST = ALIGN  # where Raspberry Pi OS's boot partition starts
BOOT_MIB = 512
FAT32_LBA, LINUX = "c", "83"
BOOT_LABEL, ROOT_LABEL, DATA_LABEL = "bootfs", "rootfs", "stratodata"  # Pi OS's two, install-pi.sh's data


@dataclass(frozen=True)
class Partition:
    name: str
    label: str
    type: str  # MBR type, hex
    start: int  # bytes
    size: int  # bytes

    @property
    def start_sector(self) -> int:
        return self.start // SECTOR

    @property
    def sectors(self) -> int:
        return self.size // SECTOR

    @property
    def end(self) -> int:
        return self.start + self.size


def align_up(n: int, to: int = ALIGN) -> int:
    return -(-n // to) * to


def root_size(used_bytes: int, headroom: float = 0.25, spare_mib: int = 256) -> int:
    """An ext4 root that holds `used_bytes` of files: their size, ext4's own (~5 % inodes, journal,
    reserved), a quarter more for what the Pi writes (logs, apt), at least `spare_mib`; aligned."""
    need = used_bytes * 1.05 + max(used_bytes * headroom, spare_mib * MIB) + 64 * MIB  # 64 MiB: the journal
    return align_up(int(need))


def plan(root_bytes: int, data_mib: int = 256, boot_mib: int = BOOT_MIB) -> list[Partition]:
    """Boot, root and data partitions, each aligned, in that order (sizes in bytes for the root)."""
    if root_bytes <= 0 or data_mib <= 0 or boot_mib < 64:
        raise ValueError(f"sizes must be positive and the boot partition at least 64 MiB (got root {root_bytes} "
                         f"bytes, data {data_mib} MiB, boot {boot_mib} MiB)")
    boot = Partition("boot", BOOT_LABEL, FAT32_LBA, FIRST, align_up(boot_mib * MIB))
    root = Partition("root", ROOT_LABEL, LINUX, boot.end, align_up(root_bytes))
    data = Partition("data", DATA_LABEL, LINUX, root.end, align_up(data_mib * MIB))
    return [boot, root, data]


def image_size(parts: list[Partition]) -> int:
    return max(p.end for p in parts)


def disk_id(seed: str) -> str:
    """The MBR's disk identifier (PARTUUID is it plus -0N): the same for the same seed, never zero."""
    import hashlib

    value = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:4], "big") or 1
    return f"0x{value:08x}"


def sfdisk_script(parts: list[Partition], label_id: str) -> str:
    """What `sfdisk IMAGE` reads to write this table (sectors, MBR types, the boot partition bootable)."""
    lines = ["label: dos", f"label-id: {label_id}", "unit: sectors", ""]
    for i, p in enumerate(parts):
        bootable = ", bootable" if i == 0 else ""
        lines.append(f"start={p.start_sector}, size={p.sectors}, type={p.type}{bootable}")
    return "\n".join(lines) + "\n"


def partuuid(label_id: str, number: int) -> str:
    return f"{label_id.removeprefix('0x')}-{number:02d}"
