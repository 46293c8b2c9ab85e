"""Kinds of backup behind one interface, looked up by name as ``module:Class`` and imported
lazily, so a new kind of backup is one new module and one line here."""

from __future__ import annotations

import importlib
import threading
from typing import Protocol

from harness.evidence.model import BackupEvidence
from harness.qemu_img import ImageInfo
from harness.scenario.model import BackupSpec

REGISTRY: dict[str, str] = {
    "disk-image": "harness.sources.disk_image:DiskImageSource",
}


class HashCancelled(Exception):
    """The drill was aborted while the backup was being hashed."""


class Source(Protocol):
    """A backup the lab can boot: inspected and checked first, then handed to the lab."""

    def verify(self) -> tuple[BackupEvidence, ImageInfo]:
        """Check the backup is readable and sound; its evidence and the disk image to boot."""
        ...

    def hash(self, evidence: BackupEvidence, stop: threading.Event) -> None:
        """Hash the backup into ``evidence`` (runs beside the boot); fail on a mismatch.

        Must return soon after ``stop`` is set (the drill was aborted)."""
        ...

    def confirm_unchanged(self, evidence: BackupEvidence) -> None:
        """After the drill: prove the backup unchanged, recording the proof in ``evidence``."""
        ...


def open_source(spec: BackupSpec) -> Source:
    """The :class:`Source` for ``spec.kind``."""
    module, _, name = REGISTRY[spec.kind].partition(":")
    cls = getattr(importlib.import_module(module), name)
    source: Source = cls(spec)
    return source
