"""Where a lab runs: this machine, or a remote libvirt host of the inventory.

The lab itself (:class:`harness.lab.lifecycle.Lab`: its network, domains, records) is the
same on both; what differs is behind :class:`LabHost`: where the lab's files are (overlays,
console logs, NVRAM), how they are made and read, and where the host guard's nftables table
goes. On this machine: qemu-img, files in the lab folder, nft here. On a remote host: a
libvirt storage pool per lab whose volumes are the overlays (libvirt makes them there,
backed by the backup at the host's own path: O(1) as here), and SSH (:mod:`harness.remote.host`)
for what libvirt does not do: reading a console file, the guard, removing the folder.

The lab's record (``lab.json``, who owns it) always stays on this machine, the controller.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path, PurePosixPath
from typing import Protocol
from xml.sax.saxutils import escape

from harness import qemu_img
from harness.errors import InfraError
from harness.hosts.inventory import HostSpec
from harness.lab import guard
from harness.lab.access import qemu_account
from harness.lab.hypervisor import Hypervisor
from harness.lab.xml import NAME_PREFIX
from harness.remote.host import HostSession, session
from harness.remote.jump import Jump

#: a remote host's lab folders (one per lab, a libvirt storage pool each)
REMOTE_ROOT = PurePosixPath("/var/lib/libvirt/restore-drill")
_QEMU_IDS = (
    "u=$(sed -n 's/^[[:space:]]*user[[:space:]]*=[[:space:]]*\"\\(.*\\)\"/\\1/p' "
    "/etc/libvirt/qemu.conf 2>/dev/null | tail -n 1); u=${u:-libvirt-qemu}; "
    'echo "$(id -u "$u") $(id -g "$u")"'
)


class LabHost(Protocol):
    """The host side of a lab: its files and its guard."""

    name: str  # the inventory's name; "" for this machine without an inventory
    remote: bool

    @property
    def jump(self) -> Jump | None:
        """A remote host's SSH: its guests are reachable through it only."""
        ...

    def folder(self, lab_id: str) -> Path:
        """Where the lab's files are, as the host's QEMU sees them."""
        ...

    def host_path(self, path: Path) -> Path:
        """Where the host sees a path of this machine (a backup)."""
        ...

    def make_folder(self, lab_id: str) -> None: ...

    def overlay(self, lab_id: str, name: str, backing: Path, image: qemu_img.ImageInfo) -> Path:
        """A qcow2 overlay in the lab's folder over ``backing`` (a host path), QEMU's to
        write; its path."""
        ...

    def read_tail(self, path: Path, limit: int) -> bytes:
        """The last ``limit`` bytes of a file of the lab (a console log); b"" if none."""
        ...

    def editable(self, lab_id: str, overlay: Path, backing: Path,
                 image: qemu_img.ImageInfo) -> AbstractContextManager[Path]:  # fmt: skip
        """A lab overlay as a file of this machine, for libguestfs to change before boot
        (key injection); whatever is written there is the overlay the VM boots."""
        ...

    def block_guest_to_host(self, lab_id: str, bridge: str, dns: bool, dhcp: bool) -> str: ...

    def unblock(self, lab_id: str) -> bool: ...

    def guard_tables(self) -> list[str]: ...

    def remove_folder(self, lab_id: str) -> list[str]: ...

    def lab_folders(self) -> list[str]:
        """The lab ids that have a folder on the host (reaping)."""
        ...


class LocalHost:
    """This machine: the lab's files in its folder under the state root."""

    remote = False
    jump = None

    def __init__(self, labs: Path, uri: str, name: str = "") -> None:
        self.labs, self.uri, self.name = labs, uri, name

    def folder(self, lab_id: str) -> Path:
        return self.labs / lab_id

    def host_path(self, path: Path) -> Path:
        return path

    def make_folder(self, lab_id: str) -> None:
        """The folder holds the record too; made by the lab before anything else."""

    def overlay(self, lab_id: str, name: str, backing: Path, image: qemu_img.ImageInfo) -> Path:
        overlay = self.folder(lab_id) / name
        qemu_img.create_overlay(overlay, backing, image)
        give_to_qemu(overlay, self.uri)
        return overlay

    @contextmanager
    def editable(self, lab_id: str, overlay: Path, backing: Path,
                 image: qemu_img.ImageInfo) -> Iterator[Path]:  # fmt: skip
        yield overlay  # the overlay is here already

    def read_tail(self, path: Path, limit: int) -> bytes:
        try:
            with path.open("rb") as fh:
                fh.seek(max(fh.seek(0, os.SEEK_END) - limit, 0))
                return fh.read()
        except OSError:
            return b""

    def block_guest_to_host(self, lab_id: str, bridge: str, dns: bool, dhcp: bool) -> str:
        return guard.block_guest_to_host(lab_id, bridge, dns, dhcp)

    def unblock(self, lab_id: str) -> bool:
        return guard.unblock(lab_id)

    def guard_tables(self) -> list[str]:
        return guard.tables()

    def remove_folder(self, lab_id: str) -> list[str]:
        return []  # the lab's own folder, removed with its record (lifecycle)

    def lab_folders(self) -> list[str]:
        return []  # the same folders as the records: reaped with them


class RemoteHost:
    """A libvirt host reached over SSH: the lab's files in a storage pool there."""

    remote = True

    def __init__(self, spec: HostSpec, hv: Hypervisor) -> None:
        assert spec.jump is not None  # noqa: S101 - a remote host has an SSH account
        self.spec, self.hv, self.name = spec, hv, spec.name
        self.jump = spec.jump
        self._ids: tuple[int, int] | None = None

    @property
    def session(self) -> HostSession:
        return session(self.jump)

    def cpu_model(self) -> str:
        """The host's CPU, as /proc/cpuinfo names it."""
        try:
            out = self.session.run(["grep", "-m1", "^model name", "/proc/cpuinfo"],
                                   "read the CPU model", timeout_s=10)  # fmt: skip
        except InfraError:
            return "unknown"
        return out.decode(errors="replace").partition(":")[2].strip() or "unknown"

    def folder(self, lab_id: str) -> Path:
        return Path(str(REMOTE_ROOT / lab_id))

    def host_path(self, path: Path) -> Path:
        return self.spec.host_path(path)

    def make_folder(self, lab_id: str) -> None:
        """The lab's storage pool (libvirt builds its folder), readable by QEMU."""
        self.session.run(["mkdir", "-p", "-m", "0755", str(REMOTE_ROOT)],
                         "make the folder for lab files")  # fmt: skip
        self.hv.create_pool(f"<pool type='dir'><name>{NAME_PREFIX}{lab_id}</name><target>"
                            f"<path>{escape(str(self.folder(lab_id)))}</path><permissions>"
                            "<mode>0755</mode></permissions></target></pool>")  # fmt: skip

    def overlay(self, lab_id: str, name: str, backing: Path, image: qemu_img.ImageInfo) -> Path:
        uid, gid = self._qemu_ids()
        xml = (f"<volume><name>{escape(name)}</name>"
               f"<capacity unit='bytes'>{image.virtual_size}</capacity>"
               "<target><format type='qcow2'/><permissions><mode>0600</mode>"
               f"<owner>{uid}</owner><group>{gid}</group></permissions></target>"
               f"<backingStore><path>{escape(str(backing))}</path>"
               f"<format type='{escape(image.format)}'/></backingStore></volume>")  # fmt: skip
        return Path(self.hv.create_volume(f"{NAME_PREFIX}{lab_id}", xml))

    def _qemu_ids(self) -> tuple[int, int]:
        """The account QEMU runs as on the host (qemu.conf's ``user``, else libvirt-qemu),
        which must write the overlay; the backup layers below keep their owner."""
        if self._ids is None:
            out = self.session.run(["sh", "-c", _QEMU_IDS], "find the account QEMU runs as")
            uid, _, gid = out.decode().strip().partition(" ")
            self._ids = (int(uid), int(gid)) if uid.isdigit() and gid.isdigit() else (0, 0)
        return self._ids

    @contextmanager
    def editable(self, lab_id: str, overlay: Path, backing: Path,
                 image: qemu_img.ImageInfo) -> Iterator[Path]:  # fmt: skip
        """An overlay made here over the backup as this machine sees it (``backing``), then
        pointed at the host's path for it (by name only) and uploaded over the lab's
        overlay volume: a few MB travel, never the backup."""
        with tempfile.TemporaryDirectory(prefix="rdrill-edit-") as tmp:
            here = Path(tmp) / overlay.name
            qemu_img.create_overlay(here, backing, image)
            yield here
            qemu_img.rebase_unsafe(here, self.spec.host_path(backing), image.format)
            self.hv.upload_volume(f"{NAME_PREFIX}{lab_id}", overlay.name, here)

    def read_tail(self, path: Path, limit: int) -> bytes:
        try:
            return self.session.run(["sh", "-c", 'test ! -e "$1" || tail -c "$2" "$1"', "tail",
                                     str(path), str(limit)], "read a console log")  # fmt: skip
        except InfraError:
            return b""

    def block_guest_to_host(self, lab_id: str, bridge: str, dns: bool, dhcp: bool) -> str:
        rules = guard.ruleset(lab_id, bridge, dns, dhcp)
        self.session.run(["ip", "link", "show", bridge], f"find the lab bridge {bridge}")
        self.session.run(["nft", "-f", "-"], "block guest traffic to the host",
                         stdin=rules.encode())  # fmt: skip
        return rules

    def unblock(self, lab_id: str) -> bool:
        if guard.table_name(lab_id) not in self.guard_tables():
            return False
        self.session.run(["nft", "delete", "table", "inet", guard.table_name(lab_id)],
                         "remove the lab's host guard")  # fmt: skip
        return True

    def guard_tables(self) -> list[str]:
        out = self.session.run(["nft", "-j", "list", "tables", "inet"], "list nftables tables")
        return guard.parse_tables(out.decode())

    def remove_folder(self, lab_id: str) -> list[str]:
        removed = []
        if self.hv.destroy_pool(f"{NAME_PREFIX}{lab_id}"):
            removed.append(f"storage pool {NAME_PREFIX}{lab_id}")
        folder = str(self.folder(lab_id))
        out = self.session.run(["sh", "-c", 'test ! -e "$1" || { rm -rf -- "$1"; echo gone; }',
                                "rm", folder], "remove the lab's folder")  # fmt: skip
        if out.strip():
            removed.append(f"folder {folder}")
        return removed

    def lab_folders(self) -> list[str]:
        out = self.session.run(["sh", "-c", 'test ! -d "$1" || ls -1 "$1"', "ls",
                                str(REMOTE_ROOT)], "list lab folders")  # fmt: skip
        return [n for n in out.decode().split() if n]


def lab_host(hv: Hypervisor, spec: HostSpec | None, labs: Path) -> LabHost:
    """The lab host for a drill on ``spec`` (None: this machine, as without an inventory)."""
    if spec is None or not spec.remote:
        return LocalHost(labs, hv.uri, spec.name if spec else "")
    return RemoteHost(spec, hv)


def give_to_qemu(path: Path, uri: str) -> None:
    """Under qemu:///system QEMU runs as an unprivileged user that must write the overlay."""
    entry = qemu_account(uri)
    if os.geteuid() == 0 and entry is not None:
        os.chown(path, entry.pw_uid, entry.pw_gid)
