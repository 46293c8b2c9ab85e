"""Kinds of backup behind one interface. :data:`harness.kinds.REGISTRY` is the one table of
kinds: where each kind's class lives (imported only when a drill opens one) and which backup
keys a scenario gives it. A new kind of backup is one new module here and one line there.

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
from harness.kinds import REGISTRY
from harness.qemu_img import ImageInfo, Layer
from harness.scenario.model import BackupSpec, VmSpec
from harness.sources.identity import HashCancelled, Proof

__all__ = ["BootDisk", "HashCancelled", "Proof", "Source", "open_source"]


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
