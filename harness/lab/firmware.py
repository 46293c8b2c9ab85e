"""BIOS or UEFI: what the restored disk boots with. ``auto`` reads the boot disk's partition
table before boot (its first sectors, read-only): a GPT with an EFI System Partition, or an
MBR partition of type 0xEF, means the machine booted UEFI in production; anything else BIOS.
Pure functions over the bytes; reading them is :func:`harness.qemu_img.head`'s job."""

from __future__ import annotations

import struct
import uuid

SECTOR = 512
ESP = uuid.UUID("C12A7328-F81F-11D2-BA4B-00A0C93EC93B").bytes_le
BIOS_BOOT = uuid.UUID("21686148-6449-6E6F-744E-656564454649").bytes_le  # GRUB's on GPT


def detect(head: bytes) -> tuple[str, str]:
    """``("uefi" | "bios", why)`` from a disk's first sectors (MBR, GPT header, entries)."""
    if len(head) < 2 * SECTOR or head[510:512] != b"\x55\xaa":
        return "bios", "no partition table found: booted as BIOS"
    types = [head[446 + 16 * i + 4] for i in range(4)]
    if 0xEE not in types:
        if 0xEF in types:
            return "uefi", "MBR with an EFI system partition (type 0xEF)"
        return "bios", "MBR partition table without an EFI system partition"
    gpt = head[SECTOR:2 * SECTOR]
    if gpt[:8] != b"EFI PART":
        return "bios", "protective MBR but no GPT header: booted as BIOS"
    entries_lba, count, size = struct.unpack_from("<QII", gpt, 72)
    found = set()
    for i in range(min(count, 128)):
        at = entries_lba * SECTOR + i * size
        if at + 16 > len(head):
            break
        found.add(head[at:at + 16])
    if ESP in found:
        return "uefi", "GPT with an EFI system partition"
    if BIOS_BOOT in found:
        return "bios", "GPT with a BIOS boot partition and no EFI system partition"
    return "bios", "GPT without an EFI system partition"


def choose(wanted: str, head: bytes | None, secure_boot: bool = False) -> tuple[str, str]:
    """The firmware for ``vm.firmware`` (auto, bios, uefi) and why, for the report. Secure
    Boot is UEFI's: with ``auto`` it boots UEFI whatever the table says, and says so."""
    if wanted != "auto":
        return wanted, "set in the scenario (vm.firmware)"
    assert head is not None  # noqa: S101 - read for auto only
    firmware, why = detect(head)
    if secure_boot and firmware != "uefi":
        return "uefi", f"secure_boot: true, though the disk shows {why}"
    return firmware, f"auto: {why}"
