"""A disk image backup (qcow2, raw or vmdk): booted directly through a copy-on-write overlay."""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime
from pathlib import Path

from harness import qemu_img
from harness.errors import PhaseFailed
from harness.evidence.model import BackupEvidence
from harness.scenario.model import BackupSpec, VmSpec
from harness.sources import BootDisk
from harness.sources.identity import Proof, confirm_unchanged, hash_backup, identity


def inspect_image(path: Path, fmt: str, what: str = "backup") -> tuple[qemu_img.ImageInfo, str]:
    """``qemu-img info`` and ``check`` of a bootable image; a damaged one fails verify."""
    if not os.access(path, os.R_OK):
        raise PhaseFailed("verify", f"the {what} {path} is not readable")
    image = qemu_img.info(path, fmt)
    if fmt not in ("auto", image.format):
        raise PhaseFailed("verify", f"the {what} is {image.format}, not {fmt}")
    named = path.suffix.lower().lstrip(".")
    if fmt == "auto" and named in ("qcow2", "qcow") and image.format != "qcow2":
        raise PhaseFailed(
            "verify", f"{path.name} is named .{named} but holds no qcow2 header "
            f"(read as {image.format}): the image is damaged",
        )  # fmt: skip
    if image.format not in qemu_img.BOOTABLE_FORMATS:
        raise PhaseFailed("verify", f"unsupported image format {image.format}")
    return image, qemu_img.check(path, image.format)


class DiskImageSource:
    """The backup file itself is the overlay's read-only backing file."""

    def __init__(self, spec: BackupSpec, vm: VmSpec) -> None:
        assert spec.path is not None  # noqa: S101 - the loader requires it for this kind
        self.spec, self.path = spec, spec.path

    def verify(self) -> tuple[BackupEvidence, BootDisk]:
        path = self.path
        before = identity(path)
        image, summary = inspect_image(path, self.spec.format)
        if self.spec.restore_point:
            restore_point, source = self.spec.restore_point, "scenario"
        else:
            restore_point, source = datetime.fromtimestamp(before.mtime_ns / 1e9, UTC), "mtime"
        evidence = BackupEvidence(
            kind=self.spec.kind, path=str(path), format=image.format,
            virtual_size=image.virtual_size, restore_point=restore_point.isoformat(),
            restore_point_source=source, sha256_expected=self.spec.sha256,
            image_check=summary, identity_before=before,
        )  # fmt: skip
        return evidence, BootDisk(path, image)

    def hash(self, evidence: BackupEvidence, stop: threading.Event) -> None:
        hash_backup(evidence, self.path, stop)

    def confirm_unchanged(self, evidence: BackupEvidence, proof: Proof) -> None:
        confirm_unchanged(evidence, self.path, self.spec.verify_after, proof)
