"""Kinds of backup behind one interface, looked up by name as ``module:Class`` and imported
lazily, so a new kind of backup is one new module and one line here.

A *disk image* is booted as it is (through an overlay). The *file-level* kinds (tar, file,
restic, borg) boot the scenario's base image and restore their files into the running
guest as one tar stream produced by the backup's own tool (see :mod:`.files`).
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from harness.evidence.model import BackupEvidence
from harness.qemu_img import ImageInfo
from harness.scenario.model import BackupSpec, VmSpec
from harness.sources.identity import HashCancelled

REGISTRY: dict[str, str] = {
    "disk-image": "harness.sources.disk_image:DiskImageSource",
    "tar": "harness.sources.tar:TarSource",
    "file": "harness.sources.tar:SingleFileSource",
    "restic": "harness.sources.restic:ResticSource",
    "borg": "harness.sources.borg:BorgSource",
}

__all__ = ["REGISTRY", "BootDisk", "HashCancelled", "Source", "open_source"]


@dataclass(frozen=True)
class BootDisk:
    """The disk image the lab boots (through an overlay): the backup, or the base image."""

    path: Path
    image: ImageInfo


class Source(Protocol):
    """A backup the lab can restore: inspected and checked first, then handed to the lab."""

    def verify(self) -> tuple[BackupEvidence, BootDisk]:
        """Check the backup is readable and sound; its evidence and the disk to boot."""
        ...

    def hash(self, evidence: BackupEvidence, stop: threading.Event) -> None:
        """Hash the backup into ``evidence`` (runs beside the boot); fail on a mismatch.

        Must return soon after ``stop`` is set (the drill was aborted)."""
        ...

    def confirm_unchanged(self, evidence: BackupEvidence) -> None:
        """After the drill: prove the backup unchanged, recording the proof in ``evidence``."""
        ...


def open_source(spec: BackupSpec, vm: VmSpec) -> Source:
    """The :class:`Source` for ``spec.kind``."""
    module, _, name = REGISTRY[spec.kind].partition(":")
    cls = getattr(importlib.import_module(module), name)
    source: Source = cls(spec, vm)
    return source
