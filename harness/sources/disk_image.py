"""A disk image backup (qcow2 or raw): booted directly through a copy-on-write overlay."""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path

from harness import qemu_img
from harness.errors import PhaseFailed
from harness.evidence.model import BackupEvidence, FileIdentity
from harness.scenario.model import BackupSpec
from harness.sources import HashCancelled

HASH_CHUNK = 4 * 1024 * 1024


def identity(path: Path) -> FileIdentity:
    """The file's stat facts; ctime changes on any write, chmod or chown."""
    try:
        st = path.stat()
    except OSError as exc:
        raise PhaseFailed("verify", f"cannot stat the backup {path}: {exc.strerror}") from exc

    return FileIdentity(
        size=st.st_size, mode=oct(stat.S_IMODE(st.st_mode)), uid=st.st_uid, gid=st.st_gid,
        owner=_user(st.st_uid), group=_group(st.st_gid),
        inode=st.st_ino, device=st.st_dev, mtime_ns=st.st_mtime_ns, ctime_ns=st.st_ctime_ns,
    )  # fmt: skip


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def sha256_file(path: Path, stop: threading.Event | None = None) -> str:
    """SHA-256 of a file, read in large chunks (OpenSSL does the hashing, off the GIL).

    Setting ``stop`` ends it within one chunk: an aborted drill does not wait for a long hash.
    """
    digest = hashlib.sha256()
    try:
        with path.open("rb", buffering=0) as fh:
            buffer = bytearray(HASH_CHUNK)
            view = memoryview(buffer)
            while n := fh.readinto(buffer):
                if stop is not None and stop.is_set():
                    raise HashCancelled(str(path))
                digest.update(view[:n])
    except OSError as exc:
        raise PhaseFailed("verify", f"cannot read the backup {path}: {exc.strerror}") from exc
    return digest.hexdigest()


class DiskImageSource:
    """The backup file itself is the overlay's read-only backing file."""

    def __init__(self, spec: BackupSpec) -> None:
        self.spec = spec

    def verify(self) -> tuple[BackupEvidence, qemu_img.ImageInfo]:
        path = self.spec.path
        before = identity(path)
        if not os.access(path, os.R_OK):
            raise PhaseFailed("verify", f"the backup {path} is not readable")
        image = qemu_img.info(path, self.spec.format)
        if self.spec.format not in ("auto", image.format):
            raise PhaseFailed("verify", f"the backup is {image.format}, not {self.spec.format}")
        named = path.suffix.lower().lstrip(".")
        if self.spec.format == "auto" and named in ("qcow2", "qcow") and image.format != "qcow2":
            raise PhaseFailed(
                "verify", f"{path.name} is named .{named} but holds no qcow2 header "
                f"(read as {image.format}): the image is damaged",
            )  # fmt: skip
        if image.format not in ("qcow2", "raw"):
            raise PhaseFailed("verify", f"unsupported image format {image.format}")
        summary = qemu_img.check(path, image.format)
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
        return evidence, image

    def hash(self, evidence: BackupEvidence, stop: threading.Event) -> None:
        """Hash the backup (runs beside the boot); a mismatch with the scenario fails."""
        evidence.sha256 = sha256_file(self.spec.path, stop)
        if evidence.sha256_expected and evidence.sha256 != evidence.sha256_expected:
            raise PhaseFailed(
                "verify",
                f"the backup's sha256 {evidence.sha256} differs from the scenario's "
                f"{evidence.sha256_expected}",
            )

    def confirm_unchanged(self, evidence: BackupEvidence) -> None:
        evidence.identity_after = identity(self.spec.path)
        same_stat = evidence.identity_after == evidence.identity_before
        if self.spec.verify_after == "hash" and evidence.sha256:
            evidence.sha256_after = sha256_file(self.spec.path)
            evidence.unchanged = same_stat and evidence.sha256_after == evidence.sha256
            evidence.unchanged_by = "hash"
        else:  # by choice, or because an aborted drill never finished the first hash
            evidence.unchanged = same_stat
            evidence.unchanged_by = "stat"
