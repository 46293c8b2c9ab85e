"""Kinds of backup behind one interface. :data:`REGISTRY` is the one table of kinds: where
each kind's class lives (imported only when a drill opens one) and which backup keys a
scenario gives it; the scenario schema and loader read it. A new kind of backup is one new
module and one line here.

A *disk image* is booted as it is (through an overlay). The *file-level* kinds (tar, file,
restic, borg) boot the scenario's base image and restore their files into the running
guest as one tar stream produced by the backup's own tool (see :mod:`.files`). A
*pgBackRest* repository is shared into the base image read-only and recovered there by the
server's own tools, to a point in time (see :mod:`.pgbackrest`).
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from harness.evidence.model import BackupEvidence
from harness.qemu_img import ImageInfo, Layer
from harness.scenario.model import BackupSpec, VmSpec
from harness.sources.identity import HashCancelled, Proof


@dataclass(frozen=True)
class Kind:
    """A kind of backup: its class, as ``module:Class``, and what a scenario says about it."""

    impl: str
    keys: frozenset[str]  # the backup keys it takes, beyond kind, restore_point, verify_after
    required: tuple[str, ...]
    restored: bool = True  # its files are restored into vm.image; False: the backup boots


_FILES = frozenset({"path", "sha256", "target", "restore_timeout"})
_REPOSITORY = frozenset({"repository", "password", "password_file", "environment", "target",
                         "restore_timeout", "subpath", "host"})  # fmt: skip
_SYSTEM = frozenset({"subpath", "restore", "root"})  # a whole system, rebuilt on a blank disk
DEFAULT_KIND = "disk-image"
REGISTRY: dict[str, Kind] = {
    "disk-image": Kind("harness.sources.disk_image:DiskImageSource",
                       frozenset({"path", "format", "sha256", "disks"}), (), restored=False),
    "tar": Kind("harness.sources.tar:TarSource", _FILES | _SYSTEM, ("path",)),
    "file": Kind("harness.sources.tar:SingleFileSource", _FILES | {"integrity"},
                 ("path", "target")),
    "restic": Kind("harness.sources.restic:ResticSource",
                   _REPOSITORY | _SYSTEM | {"snapshot", "tags", "path", "integrity"},
                   ("repository",)),
    "borg": Kind("harness.sources.borg:BorgSource",
                 _REPOSITORY | _SYSTEM | {"archive", "glob_archives", "prefix", "integrity"},
                 ("repository",)),
    "pgbackrest": Kind("harness.sources.pgbackrest:PgBackRestSource",
                       frozenset({"repository", "stanza", "set", "target_time", "recovery_target",
                                  "pg_path", "service", "restore_timeout", "integrity"}),
                       ("repository",)),
}  # fmt: skip

__all__ = ["DEFAULT_KIND", "REGISTRY", "BootDisk", "HashCancelled", "Kind", "Proof", "Source",
           "open_source"]  # fmt: skip


@dataclass(frozen=True)
class BootDisk:
    """The disk image the lab boots (through an overlay): the backup, or the base image, and
    the backing files below it (top down), each opened read-only."""

    path: Path
    image: ImageInfo
    chain: tuple[Layer, ...] = ()
    extra: tuple[BootDisk, ...] = ()  # the server's further disks, in production order

    @property
    def files(self) -> list[Path]:
        """Every file the VM opens to boot: each disk and each layer below it."""
        return [self.path, *(layer.path for layer in self.chain),
                *(f for disk in self.extra for f in disk.files)]  # fmt: skip


class Source(Protocol):
    """A backup the lab can restore: inspected and checked first, then handed to the lab."""

    def verify(self) -> tuple[BackupEvidence, BootDisk]:
        """Check the backup is readable and sound; its evidence and the disk to boot."""
        ...

    def hash(self, evidence: BackupEvidence, stop: threading.Event) -> None:
        """Hash the backup into ``evidence`` (runs beside the boot); fail on a mismatch.

        Must return soon after ``stop`` is set (the drill was aborted)."""
        ...

    def confirm_unchanged(self, evidence: BackupEvidence, proof: Proof) -> None:
        """After the drill: prove the backup unchanged, recording the proof in ``evidence``;
        a re-hash returns soon after ``proof.stop`` is set."""
        ...


def open_source(spec: BackupSpec, vm: VmSpec) -> Source:
    """The :class:`Source` for ``spec.kind``."""
    module, _, name = REGISTRY[spec.kind].impl.partition(":")
    cls = getattr(importlib.import_module(module), name)
    source: Source = cls(spec, vm)
    return source
