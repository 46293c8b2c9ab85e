"""A disk image backup (qcow2, raw or vmdk): booted directly through a copy-on-write overlay.

An incremental image (a qcow2 layer over a full backup, or a longer chain) is booted with its
whole backing chain: every layer is opened read-only, kept as it is (never chowned or
relabelled), and proven unchanged like the top image, each in its own line of the evidence.
"""

from __future__ import annotations

import os
import threading
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from harness import qemu_img
from harness.errors import PhaseFailed
from harness.evidence.model import BackupEvidence, LayerEvidence
from harness.kinds import BOOTABLE_FORMATS
from harness.scenario.model import BackupSpec, VmSpec
from harness.sources import BootDisk
from harness.sources.identity import (
    LOCAL,
    Proof,
    Reader,
    confirm_unchanged,
    hash_backup,
    prove_again,
)


def inspect_image(
    path: Path, fmt: str, what: str = "backup"
) -> tuple[qemu_img.ImageInfo, tuple[qemu_img.Layer, ...], str]:
    """``qemu-img info`` and ``check`` of a bootable image and each layer of its backing
    chain; a damaged one, or a chain with a missing layer, fails verify naming it."""
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
    if image.format not in BOOTABLE_FORMATS:
        raise PhaseFailed("verify", f"unsupported image format {image.format}")
    chain = tuple(qemu_img.backing_chain(path, image))
    summary = qemu_img.check(path, image.format)
    for n, layer in enumerate(chain, 1):
        try:
            qemu_img.check(layer.path, layer.format)
        except PhaseFailed as exc:
            raise PhaseFailed("verify", f"layer {n} of the backing chain ({layer.path}): "
                                        f"{exc}") from exc  # fmt: skip
    if chain:
        summary += f"; backing chain of {len(chain)} layer(s) checked"
    return image, chain, summary


class DiskImageSource:
    """The backup file itself (and its backing chain) is the overlay's read-only backing; a
    server of several disks has one such file per disk, each with its own overlay."""

    def __init__(self, spec: BackupSpec, vm: VmSpec) -> None:
        assert spec.path is not None  # noqa: S101 - the loader requires it for this kind
        self.spec, self.path = spec, spec.path
        self.reader: Reader = LOCAL  # a remote lab's: its host reads (and proves) the backup

    def verify(self) -> tuple[BackupEvidence, BootDisk]:
        evidence, disk = self._one(self.path, self.spec.format, self.spec.sha256)
        for n, (path, fmt) in enumerate(self.spec.extra_disks, 2):
            try:
                more, extra = self._one(path, fmt, None)
            except PhaseFailed as exc:
                raise PhaseFailed("verify", f"disk {n} ({path}): {exc}") from exc
            evidence.disks.append(more)
            disk = replace(disk, extra=(*disk.extra, extra))
        return evidence, disk

    def _one(self, path: Path, fmt: str, sha256: str | None) -> tuple[BackupEvidence, BootDisk]:
        before = self.reader.identity(path)
        image, chain, summary = inspect_image(path, fmt)
        if self.spec.restore_point:
            restore_point, source = self.spec.restore_point, "scenario"
        else:
            restore_point, source = datetime.fromtimestamp(before.mtime_ns / 1e9, UTC), "mtime"
        evidence = BackupEvidence(
            kind=self.spec.kind, path=str(path), format=image.format,
            virtual_size=image.virtual_size, restore_point=restore_point.isoformat(),
            restore_point_source=source, sha256_expected=sha256,
            image_check=summary, identity_before=before,
            chain=[LayerEvidence(n, str(layer.path), layer.format,
                                 self.reader.identity(layer.path))
                   for n, layer in enumerate(chain, 1)],
        )  # fmt: skip
        if self.reader.where:
            evidence.details["proven on"] = (f"{self.reader.where}, where QEMU reads it: stat "
                                             "and SHA-256 taken there")  # fmt: skip
        return evidence, BootDisk(path, image, chain)

    def hash(self, evidence: BackupEvidence, stop: threading.Event) -> None:
        for disk in (evidence, *evidence.disks):
            hash_backup(disk, Path(disk.path), stop, reader=self.reader)
            for layer in disk.chain:
                layer.sha256 = self.reader.sha256(Path(layer.path), stop)

    def confirm_unchanged(self, evidence: BackupEvidence, proof: Proof) -> None:
        for disk in (*evidence.disks, evidence):
            confirm_unchanged(disk, Path(disk.path), self.spec.verify_after, proof,
                              reader=self.reader)
            for layer in disk.chain:  # each layer by the same proof as the top image
                sha256 = layer.sha256 if disk.unchanged_by == "hash" else ""
                layer.identity_after, layer.sha256_after, layer.unchanged = prove_again(
                    Path(layer.path), layer.identity_before, sha256, proof.stop,
                    reader=self.reader)
            if any(layer.unchanged is False for layer in disk.chain):
                disk.unchanged = False
        # The first disk's verdict is the backup's: every disk and layer must be unchanged.
        if any(d.unchanged is False for d in evidence.disks):
            evidence.unchanged = False
        elif evidence.unchanged and any(d.unchanged is None for d in evidence.disks):
            evidence.unchanged = None
