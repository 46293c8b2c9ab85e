"""A disk-image backup's stat facts and SHA-256 taken on the remote host whose QEMU reads
it (a :class:`harness.sources.identity.Reader`): the proof that it is unchanged is made where
it could change, over the host's SSH (:mod:`harness.remote.host`)."""

from __future__ import annotations

import threading
from pathlib import Path

from harness.errors import InfraError, PhaseFailed
from harness.evidence.model import FileIdentity
from harness.hosts.inventory import HostSpec
from harness.remote.host import session
from harness.sources.identity import HashCancelled

#: a backup's hash on a remote host: bounded, generously (a large image at disk speed)
HASH_TIMEOUT_S = 6 * 3600.0


class HostReader:
    """A backup's stat facts and SHA-256 taken on the remote host whose QEMU reads it (at
    the host's path for it): the proof that it is unchanged is made where it could change.
    Files only (a disk image and its layers)."""

    def __init__(self, spec: HostSpec) -> None:
        self.spec = spec
        assert spec.jump is not None  # noqa: S101 - a remote host
        self.where, self.jump = f"host {spec.name}", spec.jump

    def identity(self, path: Path) -> FileIdentity:
        there = str(self.spec.host_path(path))
        try:
            out = session(self.jump).run(["stat", "-L", "-c", "%s %a %u %g %U %G %i %d %.9Y %.9Z",
                                          "--", there], f"stat the backup {there}")
        except InfraError as exc:
            raise PhaseFailed("verify", str(exc)) from exc
        return parse_stat(out.decode())

    def sha256(self, path: Path, stop: threading.Event | None) -> str:
        there = str(self.spec.host_path(path))

        def cancelled() -> None:
            if stop is not None and stop.is_set():
                raise HashCancelled(there)

        try:
            out = session(self.jump).run(["sha256sum", "--", there], f"hash the backup {there}",
                                         HASH_TIMEOUT_S, cancelled=cancelled)  # fmt: skip
        except InfraError as exc:
            raise PhaseFailed("verify", str(exc)) from exc
        return out.decode().split()[0]


def parse_stat(line: str) -> FileIdentity:
    """``stat -c '%s %a %u %g %U %G %i %d %.9Y %.9Z'`` as a :class:`FileIdentity`; an owner
    or group with no name there is its number, as on this machine (stat says UNKNOWN)."""
    size, mode, uid, gid, owner, group, inode, dev, mtime, ctime = line.split()
    return FileIdentity(size=int(size), mode=oct(int(mode, 8)), uid=int(uid), gid=int(gid),
                        owner=uid if owner == "UNKNOWN" else owner,
                        group=gid if group == "UNKNOWN" else group, inode=int(inode),
                        device=int(dev), mtime_ns=_ns(mtime), ctime_ns=_ns(ctime))  # fmt: skip


def _ns(stamp: str) -> int:
    """``stat``'s ``%.9Y`` (seconds.nanoseconds) in nanoseconds, exactly."""
    seconds, _, fraction = stamp.partition(".")
    return int(seconds) * 1_000_000_000 + int(fraction.ljust(9, "0")[:9] or 0)
