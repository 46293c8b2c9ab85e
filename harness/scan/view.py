"""Read-only views of a restore point for the scanner, made inside the scan worker's own mount
namespace (:mod:`.worker`): nothing here is visible to the rest of the host, and the mounts
vanish with the namespace when the worker ends, however it ends.

- A disk image (and its backing chain): qemu-storage-daemon exports each disk read-only as a
  FUSE file (this host has no nbd devices); each partition's file system is mounted from it
  through a read-only loop device with ``ro,noexec,nodev,nosuid``; the root file system is the
  one holding ``/etc``, the others are mounted where its ``/etc/fstab`` puts them. The daemon
  dies with the worker (parent-death signal) and its pid file lets ``cleanup`` stop one a
  kill -9 left.
- A file-level restore point: its tar stream (the one the drill restores) unpacked into the
  worker's folder, bind-mounted ``nodev,nosuid,noexec`` first and read-only after.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from harness.errors import InfraError, PhaseFailed, PhaseTimeout
from harness.lab.share import mounts_under, unmount

PHASE = "scan"
QSD = "qemu-storage-daemon"
PIDFILE = "qsd.pid"
FLAGS = "ro,noexec,nodev,nosuid"
#: file systems mounted from a partition (others are said, not scanned)
MOUNTABLE = ("ext2", "ext3", "ext4", "xfs", "btrfs", "vfat", "ntfs3", "f2fs", "jfs", "reiserfs")
#: a journal that needs replaying cannot be replayed read-only: mounted without it
NO_REPLAY = {"ext3": "noload", "ext4": "noload", "xfs": "norecovery"}
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int | None = None) -> None:
    """This process gets SIGKILL when its parent dies (Linux's parent-death signal); if
    ``parent`` (the pid it was started by) is already gone, it exits now."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if parent is not None and os.getppid() != parent:
        os._exit(1)  # the parent died before the signal was armed


@dataclass
class View:
    """The restored system as the scanner sees it, and what of it could not be shown."""

    root: Path
    mounted: list[str] = field(default_factory=list)  # what is where, read-only
    not_scanned: list[str] = field(default_factory=list)  # file systems left out, and why


def run(cmd: list[str], what: str, timeout_s: float = 60, stdin: IO[bytes] | None = None
        ) -> str:  # fmt: skip
    """A tool's output; :class:`PhaseFailed` naming ``what`` if it fails."""
    try:
        done = subprocess.run(cmd, stdin=stdin, capture_output=True, timeout=timeout_s,
                              check=False, preexec_fn=die_with_parent)  # fmt: skip
    except FileNotFoundError:
        raise InfraError(f"cannot {what}: {cmd[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise PhaseTimeout(PHASE, f"cannot {what}: no answer within {timeout_s:g}s") from None
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip().splitlines() or [
            f"exit {done.returncode}"]
        raise PhaseFailed(PHASE, f"cannot {what}: {said[-1]}")
    return done.stdout.decode(errors="replace")


# -- a disk image ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Part:
    """One file system candidate: a partition (or a whole disk without a partition table)."""

    disk: int  # 0 for the first disk
    number: int  # 0: the whole disk
    offset: int
    size: int
    partuuid: str = ""

    def label(self) -> str:
        disk = f"disk {self.disk + 1}"
        return f"{disk} partition {self.number}" if self.number else disk


@contextmanager
def image_view(disks: list[tuple[str, str]], folder: Path, deadline: float) -> Iterator[View]:
    """Each disk (path, format) exported read-only, its file systems mounted read-only, the
    system assembled by its fstab under ``folder/root``."""
    with ExitStack() as stack:
        exports = stack.enter_context(_exported(disks, folder, deadline))
        mounted: list[tuple[Part, dict[str, str], Path]] = []
        view = View(folder / "root")
        stack.callback(_unmount_all, folder)
        for index, export in enumerate(exports):
            for part in partitions(export, index):
                probe = _probe(export, part)
                kind = probe.get("TYPE", "")
                if kind not in MOUNTABLE:
                    view.not_scanned.append(f"{part.label()}: " + (
                        f"{kind} is not a file system the host mounts" if kind else
                        "no file system found"))  # fmt: skip
                    continue
                point = folder / "parts" / f"d{index}p{part.number}"
                point.mkdir(parents=True, exist_ok=True)
                note = _mount(export, part, kind, point)
                if note.startswith("cannot"):
                    view.not_scanned.append(f"{part.label()} ({kind}): {note}")
                    continue
                mounted.append((part, probe, point))
                view.mounted.append(f"{part.label()} ({kind}{note})")
        _assemble(view, mounted, folder)
        yield view


@contextmanager
def _exported(disks: list[tuple[str, str]], folder: Path, deadline: float) -> Iterator[list[Path]]:
    """qemu-storage-daemon with one read-only FUSE export per disk; stopped on the way out."""
    cmd = [QSD, "--pidfile", str(folder / PIDFILE)]
    exports = []
    for i, (path, fmt) in enumerate(disks):
        export = folder / f"disk{i}"
        export.touch()
        exports.append(export)
        node = {"driver": fmt, "node-name": f"d{i}", "read-only": True,
                "file": {"driver": "file", "filename": path, "read-only": True}}  # fmt: skip
        cmd += ["--blockdev", json.dumps(node), "--export", json.dumps(
            {"type": "fuse", "id": f"e{i}", "node-name": f"d{i}", "mountpoint": str(export),
             "writable": False})]  # fmt: skip
    try:
        daemon = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, preexec_fn=die_with_parent)  # fmt: skip  # noqa: PLW1509
    except FileNotFoundError:
        raise InfraError(f"cannot read the disk image: {QSD} is not installed (apt install "
                         "qemu-system-x86 or qemu-storage-daemon)") from None  # fmt: skip
    try:
        _wait_exported(daemon, exports, deadline)
        yield exports
    finally:
        _unmount_all(folder)  # the loops on the exports first, or the FUSE files stay busy
        daemon.terminate()
        try:
            daemon.wait(timeout=10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        (folder / PIDFILE).unlink(missing_ok=True)


def _wait_exported(daemon: subprocess.Popen[bytes], exports: list[Path], deadline: float) -> None:
    pending = set(exports)
    while pending:
        if daemon.poll() is not None:
            said = (daemon.stderr.read() if daemon.stderr else b"").decode(errors="replace")
            raise PhaseFailed(PHASE, f"cannot export the disk image read-only: "
                                     f"{said.strip() or f'exit {daemon.returncode}'}")  # fmt: skip
        if time.monotonic() > deadline:
            raise PhaseTimeout(PHASE, "the disk image's read-only export did not appear in time")
        table = Path("/proc/self/mountinfo").read_text()
        pending = {e for e in pending if f" {e} " not in table}
        if pending:
            time.sleep(0.05)


def partitions(export: Path, disk: int) -> list[Part]:
    """The disk's partitions (sfdisk's reading of its MBR or GPT); the whole disk if it has
    no partition table."""
    try:
        table = json.loads(run(["sfdisk", "--json", str(export)], "read the partition table")
                           )["partitiontable"]  # fmt: skip
    except (PhaseFailed, ValueError, KeyError):
        return [Part(disk, 0, 0, export.stat().st_size)]
    sector = int(table.get("sectorsize", 512))
    dos_id = str(table.get("id", "")).removeprefix("0x") if table.get("label") == "dos" else ""
    found = []
    for entry in table.get("partitions", []):
        number = int("".join(c for c in entry["node"][len(str(export)):] if c.isdigit()) or 0)
        uuid = str(entry.get("uuid", "")).lower() or (f"{dos_id}-{number:02d}" if dos_id else "")
        found.append(Part(disk, number, int(entry["start"]) * sector,
                          int(entry["size"]) * sector, uuid))  # fmt: skip
    return found


def _probe(export: Path, part: Part) -> dict[str, str]:
    """blkid's low-level probe of the partition: TYPE, UUID, LABEL."""
    try:
        out = run(["blkid", "-p", "-o", "export", "-O", str(part.offset), "-S", str(part.size),
                   str(export)], "probe a file system")  # fmt: skip
    except PhaseFailed:
        return {}
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def _mount(export: Path, part: Part, kind: str, point: Path) -> str:
    """Mount read-only; "" or a note on how; "cannot …" if it cannot be."""
    options = f"{FLAGS},loop,offset={part.offset},sizelimit={part.size}"
    base = ["mount", "-t", kind, "-o"]
    try:
        run([*base, options, str(export), str(point)], "mount")
        return ""
    except PhaseFailed as exc:
        if kind not in NO_REPLAY:
            return f"cannot be mounted: {exc}"
    try:
        run([*base, f"{options},{NO_REPLAY[kind]}", str(export), str(point)], "mount")
    except PhaseFailed as exc:
        return f"cannot be mounted: {exc}"
    return ", its journal not replayed: mounted read-only as the backup holds it"


def _assemble(view: View, mounted: list[tuple[Part, dict[str, str], Path]], folder: Path) -> None:
    """The root file system (the one with /etc) at ``root``, the others where its fstab
    puts them; a file system the fstab does not name is said, not scanned."""
    roots = [m for m in mounted if (m[2] / "etc").is_dir()]
    if not roots:
        if len(mounted) == 1:
            roots = mounted
        else:
            found = "; ".join(view.not_scanned) or "nothing mountable"
            raise PhaseFailed(PHASE, f"no root file system (one holding /etc) on the disk(s): "
                                     f"{found}")  # fmt: skip
    root_part, _, root_point = roots[0]
    view.root.mkdir(exist_ok=True)
    _bind(root_point, view.root)
    view.mounted = [f"{m} at /" if m.startswith(root_part.label() + " (") else m
                    for m in view.mounted]  # fmt: skip
    placed = {root_part}
    unusable: dict[Part, str] = {}
    for spec, where in _fstab(root_point):
        for part, probe, point in mounted:
            if part in placed or not _names(spec, part, probe):
                continue
            target = view.root / where.lstrip("/")
            # a mount point reached through a symbolic link of the restored system would lead
            # mount(8) out of the view (it resolves links from the host's root): never used
            if not target.is_dir() or os.path.realpath(target) != str(target):
                unusable[part] = (f"its mount point {where} is not a folder of the restored "
                                  "system (a symbolic link, or missing)")  # fmt: skip
                continue
            _bind(point, target)
            placed.add(part)
            view.mounted = [f"{m} at {where}" if m.startswith(part.label() + " (") else m
                            for m in view.mounted]  # fmt: skip
    for part, probe, _ in mounted:
        if part not in placed:
            why = unusable.get(part, "not in the system's /etc/fstab")
            view.not_scanned.append(f"{part.label()} ({probe.get('TYPE')}): {why}")
            view.mounted = [m for m in view.mounted if not m.startswith(part.label() + " (")]


def _fstab(root: Path) -> list[tuple[str, str]]:
    """(what, where) of each file system line of the restored /etc/fstab."""
    try:
        text = (root / "etc" / "fstab").read_text(errors="replace")
    except OSError:
        return []
    found = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and not fields[0].startswith("#") and fields[1].startswith("/") \
                and fields[1] != "/":  # fmt: skip
            found.append((fields[0], fields[1].replace("\\040", " ")))
    return sorted(found, key=lambda f: f[1].count("/"))


def _names(spec: str, part: Part, probe: dict[str, str]) -> bool:
    """Whether an fstab device spec names this partition (UUID=, LABEL=, PARTUUID=, or the
    guest's device name: vda2, sda2, xvda2 for disk 1 partition 2)."""
    key, _, value = spec.partition("=")
    if key == "UUID":
        return value.lower() == probe.get("UUID", "").lower()
    if key == "LABEL":
        return value == probe.get("LABEL")
    if key == "PARTUUID":
        return value.lower() == part.partuuid
    letter = "abcdefghijklmnop"[part.disk]
    suffix = f"{letter}{part.number or ''}"
    return spec in {f"/dev/{p}d{suffix}" for p in ("v", "s", "xv", "h")}


def _bind(source: Path, target: Path) -> None:
    run(["mount", "--bind", str(source), str(target)], f"show {source.name}")
    run(["mount", "-o", f"remount,bind,{FLAGS}", str(target)], f"protect {target.name}")


def _unmount_all(folder: Path) -> None:
    """Every mount under ``folder``, deepest first (lazily if busy), but the disks' FUSE
    exports: their daemon unmounts those as it stops."""
    for point in mounts_under(folder):
        if not (point.parent == folder and re.fullmatch(r"disk\d+", point.name)):
            unmount(point)


# -- a file-level restore point --------------------------------------------------------------
@contextmanager
def tree_view(stream: IO[bytes], folder: Path, deadline: float) -> Iterator[View]:
    """The tar stream unpacked under ``folder/root`` (no device, set-uid bit or program of it
    usable there), then shown read-only."""
    root = folder / "root"
    root.mkdir()
    try:
        run(["mount", "--bind", str(root), str(root)], "prepare the folder")
        run(["mount", "-o", "remount,bind,nodev,nosuid,noexec", str(root)], "protect the folder")
        run(["tar", "-x", "-C", str(root), "--no-same-owner", "--no-same-permissions",
             "--delay-directory-restore", "-f", "-"], "unpack the restore point",
            max(deadline - time.monotonic(), 1), stdin=stream)  # fmt: skip
        run(["mount", "-o", f"remount,bind,{FLAGS}", str(root)], "make the folder read-only")
        yield View(root, ["the restore point's files, unpacked from its stream"])
    finally:
        _unmount_all(folder)
