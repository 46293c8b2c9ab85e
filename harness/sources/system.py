"""A whole system from a file-level backup, rebuilt on a blank disk (``restore: system``):
what the backup's ``/etc/fstab`` asks of the disk, the partition table and file systems that
satisfy it (each with the UUID and label fstab names, so the restored system's fstab and boot
configuration work unchanged), and what the backup must hold to boot (a kernel, a boot
loader the rescue system can install). Pure: decided at verify, before anything is created;
the rescue system carries the plan out (:mod:`harness.drill.baremetal`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from harness.errors import PhaseFailed
from harness.scenario.model import DiskSpec

SECTOR = 512
FIRST_SECTOR = 2048  # 1 MiB: room for GRUB's core image after the MBR
AUTO_SWAP_MAX = 1024 * 1024 * 1024
AUTO_ESP = 256 * 1024 * 1024  # an EFI system partition, as Debian's installer makes it
ESP_MOUNTS = ("/boot/efi", "/efi")
GPT_TYPE = {"esp": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
            "linux": "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
            "swap": "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"}  # fmt: skip
MKFS = {"ext2", "ext3", "ext4", "xfs", "btrfs", "vfat", "swap"}
NOT_ON_DISK = {"proc", "sysfs", "tmpfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "nfs",
               "nfs4", "cifs", "smbfs", "fuse", "fuse.sshfs", "securityfs", "debugfs",
               "mqueue", "hugetlbfs", "efivarfs", "overlay", "none", "bind", "ramfs",
               "9p", "virtiofs", "autofs", "binfmt_misc"}  # fmt: skip
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_FAT_ID = re.compile(r"^[0-9a-fA-F]{4}-[0-9a-fA-F]{4}$")
_LAB_DEVICE = re.compile(r"^/dev/vda(\d+)$")  # the rebuilt disk is the lab VM's first disk
_LABEL_MAX = {"ext2": 16, "ext3": 16, "ext4": 16, "xfs": 12, "btrfs": 255, "vfat": 11,
              "swap": 16}  # fmt: skip
#: the boot loaders the rescue system runs from the restored system (chroot), preferred first
GRUB_INSTALL = ("usr/sbin/grub-install", "usr/sbin/grub2-install")
GRUB_BIOS = ("usr/lib/grub/i386-pc/boot.img",)
GRUB_EFI = "usr/lib/grub/x86_64-efi/"  # grub-efi-amd64-bin's modules
EXTLINUX = ("usr/bin/extlinux", "usr/sbin/extlinux")
EXTLINUX_MBR = ("usr/lib/EXTLINUX/mbr.bin", "usr/lib/syslinux/mbr/mbr.bin")
EXTLINUX_CONF = ("boot/extlinux/extlinux.conf", "boot/syslinux/syslinux.cfg")
#: the folders whose entries decide the above (listed at verify, under the system's root)
BOOT_FOLDERS = ("boot", "usr/sbin", "usr/bin", "usr/lib/grub/i386-pc", "usr/lib/grub/x86_64-efi",
                "usr/lib/EXTLINUX", "usr/lib/syslinux/mbr")  # fmt: skip


@dataclass(frozen=True)
class FsEntry:
    """One line of fstab that names a block device."""

    line: int
    spec: str  # UUID=…, LABEL=…, /dev/…
    mount: str  # "swap" for a swap area
    fstype: str
    options: tuple[str, ...]

    @property
    def uuid(self) -> str | None:
        return _after(self.spec, "UUID=", "/dev/disk/by-uuid/")

    @property
    def label(self) -> str | None:
        return _after(self.spec, "LABEL=", "/dev/disk/by-label/")

    @property
    def optional(self) -> bool:
        """Boot goes on without it (``nofail``/``noauto``)."""
        return bool({"nofail", "noauto"} & set(self.options))

    def words(self) -> str:
        return f"fstab line {self.line} ({self.spec} {self.mount} {self.fstype})"


@dataclass(frozen=True)
class Filesystem:
    """A file system (or swap area) the rescue system makes on one partition."""

    partition: int
    mount: str  # "swap" for a swap area
    fstype: str
    uuid: str | None
    label: str | None
    options: tuple[str, ...] = ()  # fstab's

    def mkfs(self, device: str) -> list[str]:
        """The command that makes it with fstab's UUID and label."""
        uuid, label = self.uuid, self.label
        if self.fstype == "swap":
            return ["mkswap", *(["-U", uuid] if uuid else []), *(["-L", label] if label else []),
                    device]  # fmt: skip
        if self.fstype == "vfat":
            return ["mkfs.vfat", *(["-i", uuid.replace("-", "")] if uuid else []),
                    *(["-n", label] if label else []), device]  # fmt: skip
        if self.fstype == "xfs":
            return ["mkfs.xfs", "-q", "-f", *(["-m", f"uuid={uuid}"] if uuid else []),
                    *(["-L", label] if label else []), device]  # fmt: skip
        if self.fstype == "btrfs":
            return ["mkfs.btrfs", "-q", "-f", *(["-U", uuid] if uuid else []),
                    *(["-L", label] if label else []), device]  # fmt: skip
        return [f"mkfs.{self.fstype}", "-q", "-F", *(["-U", uuid] if uuid else []),
                *(["-L", label] if label else []), device]  # fmt: skip

    def words(self) -> str:
        named = ", ".join(
            x
            for x in (
                f"UUID {self.uuid}" if self.uuid else "",
                f"label {self.label}" if self.label else "",
            )
            if x
        )
        return f"partition {self.partition}: {self.fstype} for {self.mount}" + \
            (f" ({named})" if named else "")  # fmt: skip


@dataclass(frozen=True)
class DiskPlan:
    """The blank disk's partition table (an sfdisk script) and its file systems."""

    table: str
    label: str  # dos | gpt
    filesystems: tuple[Filesystem, ...]
    layout: str  # in words: auto, or the file
    skipped: tuple[str, ...] = ()  # fstab entries left alone (nofail/noauto), said

    @property
    def esp(self) -> Filesystem | None:
        """The EFI system partition fstab mounts (a UEFI system), if any."""
        return next((f for f in self.filesystems if f.mount in ESP_MOUNTS and
                     f.fstype == "vfat"), None)  # fmt: skip

    @property
    def mounted(self) -> list[Filesystem]:
        """The file systems to mount under the target, parents first."""
        return sorted(
            (f for f in self.filesystems if f.fstype != "swap"),
            key=lambda f: (f.mount.count("/") if f.mount != "/" else 0, f.mount),
        )


@dataclass(frozen=True)
class BootPlan:
    """What makes the restored system boot: its kernels and its own boot loader."""

    loader: str  # grub | grub-efi | extlinux
    kernels: tuple[str, ...]

    @property
    def firmware(self) -> str:
        """What the rebuilt disk boots with."""
        return "uefi" if self.loader == "grub-efi" else "bios"


def parse_fstab(text: str) -> list[FsEntry]:
    """fstab's block-device lines (pseudo and network file systems are not the disk's)."""
    entries = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) < 3:
            raise PhaseFailed("verify", f"the backup's /etc/fstab line {number} is not "
                                        f"'spec mount type options': {raw.strip()!r}")  # fmt: skip
        spec, mount, fstype = fields[0], fields[1], fields[2]
        options = tuple(fields[3].split(",")) if len(fields) > 3 else ()
        if fstype in NOT_ON_DISK or "bind" in options or spec in ("none", "tmpfs", "proc"):
            continue
        if ":" in spec and not spec.startswith(("UUID=", "LABEL=")):  # host:/export
            continue
        entries.append(FsEntry(number, spec, "swap" if fstype == "swap" else mount,
                               fstype, options))  # fmt: skip
    return entries


def plan_disk(entries: list[FsEntry], disk: DiskSpec) -> DiskPlan:
    """The partition table and file systems that give every fstab entry its device; a
    :class:`PhaseFailed` at verify naming the entry the layout cannot satisfy."""
    wanted, skipped = [], []
    for entry in entries:
        problem = _unsupported(entry)
        if problem and entry.optional:
            skipped.append(
                f"{entry.words()}: left out ({problem}; the entry is "
                f"{'nofail' if 'nofail' in entry.options else 'noauto'})"
            )
        elif problem:
            raise PhaseFailed("verify", f"the backup's {entry.words()}: {problem}")
        else:
            wanted.append(entry)
    roots = [e for e in wanted if e.mount == "/"]
    if len(roots) != 1:
        raise PhaseFailed("verify", "the backup's /etc/fstab mounts no root file system (/) "
                                    "from a disk" if not roots else
                                    "the backup's /etc/fstab mounts / twice")  # fmt: skip
    if disk.layout is None:
        return _auto(wanted, disk.size_bytes, tuple(skipped))
    return _from_layout(wanted, disk, tuple(skipped))


def _unsupported(entry: FsEntry) -> str:
    """Why the rescue system cannot make this entry's device ("" if it can)."""
    if entry.fstype not in MKFS:
        return f"restore-drill cannot make a {entry.fstype} file system (it makes " \
               f"{', '.join(sorted(MKFS))})"  # fmt: skip
    if entry.fstype == "btrfs" and any(o.startswith(("subvol=", "subvolid=")) for o in
                                       entry.options):  # fmt: skip
        return "Btrfs subvolumes are not rebuilt (one file system per partition)"
    spec = entry.spec
    if entry.uuid is not None:
        form = _FAT_ID if entry.fstype == "vfat" else _UUID
        if not form.match(entry.uuid):
            shape = "XXXX-XXXX" if entry.fstype == "vfat" else "8-4-4-4-12 hex digits"
            return (
                f"UUID {entry.uuid!r} is not one a {entry.fstype} file system can be "
                f"given ({shape}), so no file system the rescue makes can match it"
            )
        return ""
    if entry.label is not None:
        limit = _LABEL_MAX[entry.fstype]
        if len(entry.label) > limit:
            return f"label {entry.label!r} is longer than {entry.fstype} allows ({limit})"
        return ""
    if spec.startswith(("PARTUUID=", "PARTLABEL=", "/dev/disk/by-partuuid/")):
        return "a partition's own UUID or name is not rebuilt: name the file system by " \
               "UUID= or LABEL="  # fmt: skip
    if spec.startswith("/dev/mapper/") or spec.count("/") > 2:
        return "LVM, RAID and encrypted devices are not rebuilt (a plain partition only)"
    if _LAB_DEVICE.match(spec):
        return ""
    return (
        f"names its device {spec}: the rebuilt disk is /dev/vda in the lab, so a device "
        "name is not the server's; name the file system by UUID= or LABEL="
    )


def _partition_of(entry: FsEntry) -> int | None:
    found = _LAB_DEVICE.match(entry.spec)
    return int(found.group(1)) if found else None


def _auto(entries: list[FsEntry], size: int, skipped: tuple[str, ...]) -> DiskPlan:
    """One bootable root partition on an MBR, and a swap partition after it if fstab names
    one. A UEFI system (fstab mounts a FAT EFI system partition at /boot/efi) gets a GPT: the
    ESP first, then root and swap. Anything more needs the server's own layout."""
    esps = [e for e in entries if e.mount in ESP_MOUNTS and e.fstype == "vfat"][:1]
    extra = [e for e in entries if e.mount not in ("/", "swap") and e not in esps]
    swaps = [e for e in entries if e.mount == "swap"]
    if extra or len(swaps) > 1:
        what = extra[0] if extra else swaps[1]
        raise PhaseFailed("verify", f"the backup's {what.words()} needs a partition of its own, "
                                    "and disk.layout auto makes one root partition (and one "
                                    "swap, and an EFI system partition): save the server's table "
                                    "(sfdisk --dump) and give it as vm.disk.layout, with "
                                    "vm.disk.partitions")  # fmt: skip
    esp_sectors = AUTO_ESP // SECTOR if esps else 0
    swap_sectors = min(AUTO_SWAP_MAX, size // 8) // SECTOR if swaps else 0
    end = size // SECTOR - (34 if esps else 0)  # a GPT keeps a copy of itself at the end
    sizes = [("esp", esp_sectors), ("linux", end - FIRST_SECTOR - esp_sectors - swap_sectors),
             ("swap", swap_sectors)]  # fmt: skip
    number = {k: i for i, k in enumerate((k for k, n in sizes if n), 1)}

    def kind(entry: FsEntry) -> str:
        return "esp" if entry in esps else "linux" if entry.mount == "/" else "swap"

    wrong = [e for e in entries if (n := _partition_of(e)) is not None and n != number[kind(e)]]
    if wrong:
        where = {"esp": "the EFI system partition", "linux": "root", "swap": "swap"}
        made = ", ".join(f"{where[k]} is /dev/vda{n}" for k, n in number.items())
        raise PhaseFailed("verify", f"the backup's {wrong[0].words()} names a partition the "
                                    f"auto layout does not make there ({made})")  # fmt: skip
    label, start, lines = "gpt" if esps else "dos", FIRST_SECTOR, []
    for part, count in ((k, n) for k, n in sizes if n):
        kind_field = (f"type={GPT_TYPE[part]}" if esps else
                      "type=83, bootable" if part == "linux" else "type=82")  # fmt: skip
        lines.append(f"start={start}, size={count}, {kind_field}\n")
        start += count
    filesystems = [Filesystem(number[kind(e)], e.mount, e.fstype, e.uuid, e.label, e.options)
                   for e in entries]  # fmt: skip
    words = ("auto: an EFI system partition and a root partition on a GPT" if esps
             else "auto: one bootable root partition on an MBR")  # fmt: skip
    return DiskPlan(f"label: {label}\n" + "".join(lines), label,
                    tuple(sorted(filesystems, key=lambda f: f.partition)),
                    words + (" and a swap partition" if swaps else ""), skipped)  # fmt: skip


@dataclass(frozen=True)
class _Partition:
    number: int
    start: int
    size: int | None  # None: to the end
    line: str


def _from_layout(entries: list[FsEntry], disk: DiskSpec, skipped: tuple[str, ...]) -> DiskPlan:
    """The server's own table (``sfdisk --dump``), checked against the blank disk; each fstab
    entry on the partition ``vm.disk.partitions`` names (or its own /dev/vdaN)."""
    assert disk.layout is not None  # noqa: S101 - only called with a layout
    label, lines, partitions = _read_dump(disk.layout)
    sectors = disk.size_bytes // SECTOR
    for part in partitions:
        end = part.start + (part.size or 1)
        if end > sectors - (33 if label == "gpt" else 0):
            raise PhaseFailed("verify", f"{disk.layout}: partition {part.number} ends at sector "
                                        f"{end}, beyond the blank disk's {sectors} sectors: make "
                                        "vm.disk.size larger")  # fmt: skip
    numbers = {p.number for p in partitions}
    mapping = dict(disk.partitions)
    if not mapping and len(partitions) == 1 and [e.mount for e in entries] == ["/"]:
        mapping = {"/": partitions[0].number}
    filesystems = []
    for entry in entries:
        number = mapping.get(entry.mount, _partition_of(entry))
        if number is None:
            raise PhaseFailed("verify", f"the backup's {entry.words()}: vm.disk.partitions does "
                                        f"not say which partition of {disk.layout.name} holds "
                                        f"{entry.mount}")  # fmt: skip
        if number not in numbers:
            raise PhaseFailed("verify", f"the backup's {entry.words()}: {disk.layout.name} has no "
                                        f"partition {number}")  # fmt: skip
        filesystems.append(Filesystem(number, entry.mount, entry.fstype, entry.uuid,
                                      entry.label, entry.options))  # fmt: skip
    taken = [f.partition for f in filesystems]
    if len(set(taken)) != len(taken):
        raise PhaseFailed("verify", "vm.disk.partitions puts two of fstab's entries on one "
                                    "partition")  # fmt: skip
    return DiskPlan("".join(lines), label, tuple(sorted(filesystems, key=lambda f: f.partition)),
                    f"{disk.layout} ({label}, {len(partitions)} partitions)", skipped)  # fmt: skip


def _read_dump(path: Path) -> tuple[str, list[str], list[_Partition]]:
    """An ``sfdisk --dump``: its label, the lines sfdisk is given on the blank disk (without
    what named the server's disk and its size), its partitions."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise PhaseFailed("verify", f"cannot read the disk layout {path}: {exc}") from None
    label, lines, partitions = "dos", list[str](), list[_Partition]()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(":")
        if key.strip() in ("device", "last-lba", "first-lba"):
            continue  # the server's disk: sfdisk works them out for the blank one
        if key.strip() == "label":
            label = value.strip()
            if label not in ("dos", "gpt"):
                raise PhaseFailed("verify", f"{path} line {number}: label {label!r}: only dos "
                                            "and gpt tables are rebuilt")  # fmt: skip
        if "start=" in line:
            fields = dict(f.strip().split("=", 1) for f in (value if key.startswith("/") else line)
                          .split(",") if "=" in f)  # fmt: skip
            try:
                start = int(fields["start"])
                size = int(fields["size"]) if "size" in fields else None
            except (KeyError, ValueError):
                raise PhaseFailed("verify", f"{path} line {number}: not a partition of an sfdisk "
                                            f"dump: {line!r}") from None  # fmt: skip
            own = re.search(r"(\d+)\s*$", key) if key.startswith("/") else None
            partitions.append(_Partition(int(own.group(1)) if own else len(partitions) + 1,
                                         start, size, line))  # fmt: skip
        lines.append(line + "\n")
    if not partitions:
        raise PhaseFailed("verify", f"{path}: no partition in it (expected 'sfdisk --dump' "
                                    "output)")  # fmt: skip
    return label, lines, partitions


def plan_boot(names: set[str], firmware: str = "bios") -> BootPlan:
    """The restored system's kernels and boot loader for ``firmware``, from the backup's own
    names under its root (``boot/…``, ``usr/sbin/…``); a :class:`PhaseFailed` at verify when
    it has none."""
    kernels = tuple(sorted(n.removeprefix("boot/") for n in names
                           if n.startswith("boot/vmlinu") and n.count("/") == 1))  # fmt: skip
    if not kernels:
        raise PhaseFailed(
            "verify",
            "the backup holds no kernel (/boot/vmlinuz-*): the system "
            "cannot boot from it. Back up /boot too (a separate /boot "
            "file system is left out by --one-file-system: name it)",
        )
    installs = any(n in names for n in GRUB_INSTALL)
    if firmware == "uefi":
        if installs and any(n.startswith(GRUB_EFI) for n in names):
            return BootPlan("grub-efi", kernels)
        raise PhaseFailed("verify", "the backup holds no boot loader for UEFI that the rescue "
                                    "system can run from it: GRUB for EFI (grub-install and "
                                    "/usr/lib/grub/x86_64-efi: Debian's grub-efi-amd64)")
    grub = installs and any(n in names for n in GRUB_BIOS)
    extlinux = any(n in names for n in EXTLINUX) and any(n in names for n in EXTLINUX_MBR)
    if grub:
        return BootPlan("grub", kernels)
    if extlinux and any(n in names for n in EXTLINUX_CONF):
        return BootPlan("extlinux", kernels)
    if extlinux:
        raise PhaseFailed("verify", "the backup has extlinux but no /boot/extlinux/extlinux.conf"
                                    ": nothing tells it what to boot")  # fmt: skip
    raise PhaseFailed("verify", "the backup holds no boot loader for BIOS that the rescue system "
                                "can run from it: neither GRUB (grub-install and "
                                "/usr/lib/grub/i386-pc: Debian's grub-pc) nor extlinux (with "
                                "its mbr.bin and extlinux.conf)")  # fmt: skip


def _after(spec: str, *prefixes: str) -> str | None:
    for prefix in prefixes:
        if spec.startswith(prefix):
            return spec[len(prefix) :].strip('"')
    return None
