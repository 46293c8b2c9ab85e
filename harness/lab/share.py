"""A host folder shared read-only into a lab VM (virtiofs), for backups a guest must read
in place: a pgBackRest repository, read by the restored server's own ``pgbackrest``.

Two pieces, both started by the harness in its own mount namespace and stopped with the lab:

* a **read-only view** of the folder (``bindfs -r``, FUSE): nothing written through it
  reaches the folder (the kernel refuses with EROFS), and every file reads as readable by
  all, so the guest's ``postgres`` reads a repository owned by the host's ``postgres`` or
  ``pgbackrest`` without any change to the folder itself (no chmod, no ACL: the ctime of
  every file stays as it was, which the before/after proof checks);
* **virtiofsd** serving that view on a socket in the lab folder, which QEMU connects to
  (libvirt ``<filesystem>`` with ``<source socket>``). libvirt 9 refuses ``<readonly/>`` for
  virtiofs: the view is what makes the share read-only.

No network path: the guest reaches the files through a virtio device, nothing else.
"""

from __future__ import annotations

import grp
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from harness.errors import LabError
from harness.lab.access import qemu_account
from harness.lab.tool import run_tool

START_S = 10.0
SOCKET_MAX = 107  # bytes of a Unix socket's path (sun_path, NUL-terminated)
VIRTIOFSD = ("/usr/libexec/virtiofsd", "/usr/lib/qemu/virtiofsd", "/usr/lib/virtiofsd")
#: what every file and folder of the view allows: reading by anyone, writing by no one
VIEW_PERMS = "a+rX,a-w"


_children: dict[int, subprocess.Popen[bytes]] = {}  # the virtiofsd this process started


@dataclass(frozen=True)
class Share:
    """A folder a VM gets read-only, under the virtiofs tag ``tag``."""

    tag: str
    source: Path


@dataclass(frozen=True)
class Served:
    """A share being served: its read-only view, virtiofsd's socket and pid."""

    tag: str
    view: Path
    socket: Path
    pid: int


def virtiofsd() -> str:
    """The host's virtiofsd (Debian ships it with QEMU; others as a package of its own)."""
    found = next((p for p in VIRTIOFSD if os.access(p, os.X_OK)), None) or \
        shutil.which("virtiofsd")  # fmt: skip
    if found is None:
        raise LabError("cannot share the repository into the lab: virtiofsd is not installed "
                       "(apt install qemu-system-common, or the virtiofsd package)")  # fmt: skip
    return found


def mount_view(source: Path, view: Path) -> None:
    """``view`` becomes a read-only, readable-by-all view of ``source`` (as root, bindfs
    mounts it for every user: QEMU's virtiofsd reads it as root)."""
    view.mkdir(mode=0o755)
    run_tool(["bindfs", "-r", "-o", "ro", "-p", VIEW_PERMS, str(source), str(view)], "",
             f"make a read-only view of {source}", "bindfs")


def serve(share: Share, view: Path, socket: Path, uri: str) -> Served:
    """Start virtiofsd on ``view`` (the share's read-only view) listening on ``socket``;
    returns once the socket exists. Its output goes to ``socket`` with ``.log``."""
    if len(bytes(socket)) > SOCKET_MAX:
        raise LabError(f"the socket path {socket} is longer than a socket's {SOCKET_MAX} "
                       "bytes: set RESTORE_DRILL_STATE_DIR to a shorter folder")  # fmt: skip
    log_path = socket.with_suffix(".log")
    argv = [virtiofsd(), f"--socket-path={socket}", "-o", f"source={view}", "-o", "cache=auto",
            "-o", "sandbox=namespace"]  # fmt: skip
    account = qemu_account(uri)
    if account is not None:  # QEMU runs as its own user and must connect to the socket
        argv.append(f"--socket-group={grp.getgrgid(account.pw_gid).gr_name}")
    with log_path.open("ab") as log:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        except OSError as exc:
            raise LabError(f"cannot start virtiofsd for the share {share.tag}: {exc}") from exc
    deadline = time.monotonic() + START_S
    while not socket.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                proc.kill()
            said = log_path.read_text(errors="replace").strip().splitlines()
            raise LabError(f"virtiofsd did not start for the share {share.tag}: "
                           + (said[-1] if said else f"no socket within {START_S:g}s"))
        time.sleep(0.05)
    _children[proc.pid] = proc
    return Served(share.tag, view, socket, proc.pid)


def stop(pid: int, folder: Path) -> bool:
    """Stop a virtiofsd of this lab: one this process started (waited for), or one a killed
    drill left (a pid whose command line names ``folder``); whether it was still running."""
    child = _children.pop(pid, None)
    if child is not None:
        running = child.poll() is None  # it exits by itself once QEMU has gone
        if running:
            child.kill()
        child.wait(timeout=START_S)
        return running
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    if str(folder).encode() not in cmdline:
        return False  # the pid was reused by another process
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def mounts_under(folder: Path) -> list[Path]:
    """Mount points at or below ``folder`` (deepest first), from this process's mount table."""
    found = []
    prefix = str(folder).rstrip("/") + "/"
    try:
        table = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return []
    for line in table.splitlines():
        point = line.split()[4].encode().decode("unicode_escape")  # \040 for a space
        if point.startswith(prefix):
            found.append(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def unmount(point: Path) -> None:
    """Unmount a view (lazily if still busy: the mount is gone from the tree at once)."""
    try:
        run_tool(["umount", str(point)], "", f"unmount {point}")
    except LabError:
        run_tool(["umount", "-l", str(point)], "", f"unmount {point}")
