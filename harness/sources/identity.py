"""Proof a backup was left untouched: stat facts and SHA-256, for a file or a whole folder
(a restic or borg repository). A folder's identity covers every file below it: its path,
size, mode, owner, inode, mtime and ctime (which changes on any write, chmod or chown)."""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from harness.errors import PhaseFailed
from harness.evidence.model import BackupEvidence, FileIdentity

HASH_CHUNK = 4 * 1024 * 1024


class HashCancelled(Exception):
    """The drill was aborted while the backup was being hashed."""


class Reader(Protocol):
    """Where a backup's stat facts and SHA-256 are taken: here, or on the remote host whose
    QEMU reads it (:class:`harness.lab.host.HostReader`)."""

    where: str  # "" here; else the host, in words

    def identity(self, path: Path) -> FileIdentity: ...

    def sha256(self, path: Path, stop: threading.Event | None) -> str: ...


class LocalReader:
    """This machine."""

    where = ""

    def identity(self, path: Path) -> FileIdentity:
        return identity(path)

    def sha256(self, path: Path, stop: threading.Event | None) -> str:
        return sha256_path(path, stop)


LOCAL = LocalReader()

def identity(path: Path) -> FileIdentity:
    """The stat facts of a file, or of a folder and everything in it."""
    try:
        st = path.stat()
        files = sorted(_files(path)) if path.is_dir() else []
        stats = [(f, f.lstat()) for f in files]
    except OSError as exc:
        raise PhaseFailed("verify", f"cannot stat the backup {path}: {exc.strerror}") from exc
    tree = ""
    size = st.st_size
    if path.is_dir():
        digest = hashlib.sha256()
        for f, fst in stats:
            digest.update(f"{f.relative_to(path)}\0{fst.st_size}\0{fst.st_mode}\0{fst.st_uid}\0"
                          f"{fst.st_gid}\0{fst.st_ino}\0{fst.st_mtime_ns}\0{fst.st_ctime_ns}\n"
                          .encode())  # fmt: skip
        tree, size = digest.hexdigest(), sum(fst.st_size for _, fst in stats)
    return FileIdentity(
        size=size, mode=oct(stat.S_IMODE(st.st_mode)), uid=st.st_uid, gid=st.st_gid,
        owner=_user(st.st_uid), group=_group(st.st_gid), inode=st.st_ino, device=st.st_dev,
        mtime_ns=st.st_mtime_ns, ctime_ns=st.st_ctime_ns, files=len(stats) or 1,
        tree_sha256=tree,
    )  # fmt: skip


def _files(folder: Path) -> list[Path]:
    out = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        out += [Path(root) / n for n in (*names, *dirs)]
    return out


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


def sha256_path(path: Path, stop: threading.Event | None = None,
                by_stat: tuple[str, ...] = ()) -> str:  # fmt: skip
    """A file's SHA-256; for a folder, the SHA-256 of ``sha256sum``-style lines of every
    regular file in it (sorted by path), so any changed byte changes it. Files under the
    ``by_stat`` prefixes (content-addressed, written once: restic packs, borg segments) enter
    by name and stat instead of content (see :func:`path_proof`)."""
    return path_proof(path, stop, by_stat)[0]


def path_proof(
    path: Path, stop: threading.Event | None = None, by_stat: tuple[str, ...] = ()
) -> tuple[str, int, int]:
    """:func:`sha256_path` and how many files it hashed and how many it took by stat. A
    file taken by stat is named by the SHA-256 of its content (restic) or is a log segment
    never rewritten (borg): its name, size, inode, mtime and ctime change with any write."""
    if not path.is_dir():
        return sha256_file(path, stop), 1, 0
    lines, hashed, stated = [], 0, 0
    for f in sorted(_files(path)):
        if not f.is_file() or f.is_symlink():
            continue
        rel = str(f.relative_to(path))
        if by_stat and rel.startswith(by_stat):
            try:
                st = f.stat()
            except OSError as exc:
                raise PhaseFailed("verify", f"cannot stat the backup {f}: {exc.strerror}") from exc
            facts = f"{st.st_size}:{st.st_ino}:{st.st_mtime_ns}:{st.st_ctime_ns}"
            lines.append(f"stat:{facts}  {rel}\n")
            stated += 1
        else:
            lines.append(f"{sha256_file(f, stop)}  {rel}\n")
            hashed += 1
    return hashlib.sha256("".join(lines).encode()).hexdigest(), hashed, stated


def hash_backup(evidence: BackupEvidence, path: Path, stop: threading.Event,
                by_stat: tuple[str, ...] = (), reader: Reader | None = None,
                ) -> tuple[int, int]:  # fmt: skip
    """Hash the backup into ``evidence`` (runs beside the boot); a mismatch with the
    scenario's expected hash fails the drill. How many files were hashed, and how many
    (under ``by_stat``) were taken by stat."""
    if reader is not None and reader.where:
        evidence.sha256, hashed, stated = reader.sha256(path, stop), 1, 0
    else:
        evidence.sha256, hashed, stated = path_proof(path, stop, by_stat)
    if evidence.sha256_expected and evidence.sha256 != evidence.sha256_expected:
        raise PhaseFailed(
            "verify",
            f"the backup's sha256 {evidence.sha256} differs from the scenario's "
            f"{evidence.sha256_expected}",
        )
    return hashed, stated


def prove_again(
    path: Path, before: FileIdentity | None, sha256: str, stop: threading.Event | None,
    by_stat: tuple[str, ...] = (), reader: Reader = LOCAL,
) -> tuple[FileIdentity, str | None, bool]:  # fmt: skip
    """One file (or folder) after the drill: its identity now, its SHA-256 now (None when
    ``sha256`` is empty, i.e. no re-hash, or the re-hash was cut short by ``stop``) and
    whether it is unchanged by every proof that ran."""
    after = reader.identity(path)
    same = before is not None and before == after
    if not sha256:
        return after, None, same
    try:
        again = reader.sha256(path, stop) if reader.where else sha256_path(path, stop, by_stat)
    except HashCancelled:
        return after, None, same
    return after, again, same and again == sha256


def confirm_unchanged(
    evidence: BackupEvidence, path: Path, verify_after: str, proof: Proof | None = None,
    by_stat: tuple[str, ...] = (), reader: Reader = LOCAL,
) -> None:
    """After the drill: stat (and hash, unless told not to or ``proof`` says not to) again
    and compare. A re-hash cut short by ``proof.stop`` falls back to stat and says so.
    (No first hash means the drill was aborted before it ended: stat then proves it.)"""
    proof = proof or Proof()
    rehash = verify_after != "stat" and bool(evidence.sha256) and not proof.skip_rehash
    evidence.identity_after, evidence.sha256_after, evidence.unchanged = prove_again(
        path, evidence.identity_before, evidence.sha256 if rehash else "", proof.stop, by_stat,
        reader)
    evidence.unchanged_by = "hash" if evidence.sha256_after else "stat"
    if proof.skip_rehash:
        evidence.details["unchanged proof"] = proof.skip_rehash
    elif rehash and evidence.sha256_after is None:
        evidence.details["unchanged proof"] = "by stat: the re-hash was cut short (forced stop)"


@dataclass(frozen=True)
class Proof:
    """How the after-drill proof runs: ``stop`` cuts a re-hash short; ``skip_rehash`` (a
    reason) proves by stat alone, e.g. when no VM ever ran on the backup."""

    stop: threading.Event | None = None
    skip_rehash: str = ""
