"""Can QEMU read the backup? Under ``qemu:///system`` QEMU runs as an unprivileged account
(Debian: ``libvirt-qemu``, set by ``user =`` in qemu.conf), and the drill never relabels a
backup (its owner and mode stay as they are), so that account must be able to open every
file the VM boots from: through every parent folder. Checked *as that account* (its groups
and POSIX ACLs honoured, by the kernel itself) before anything is created, failing with the
exact fix instead of a libvirt error when the VM starts."""

from __future__ import annotations

import os
import pwd
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path

QEMU_CONF = Path("/etc/libvirt/qemu.conf")

# The first folder the account cannot enter, else the file if it cannot read it.
_PROBE = ('f=$1; shift; for d; do [ -x "$d" ] || { echo "folder $d"; exit 0; }; done; '
          '[ -r "$f" ] || echo "file $f"')


def qemu_account(uri: str) -> pwd.struct_passwd | None:
    """The account QEMU runs as for ``uri``; None when that is root, or not this host's
    system instance (a session daemon runs QEMU as the caller)."""
    if not uri.startswith("qemu:///system"):
        return None
    user = "libvirt-qemu"
    try:
        match = re.search(r'^\s*user\s*=\s*"([^"]+)"', QEMU_CONF.read_text(), re.M)
        if match:
            user = match.group(1)
    except OSError:
        pass
    try:
        entry = pwd.getpwuid(int(user[1:])) if user.startswith("+") else pwd.getpwnam(user)
    except (KeyError, ValueError):
        return None
    return None if entry.pw_uid == 0 else entry


def unreadable(paths: Iterable[Path], uri: str) -> list[str]:
    """For each of ``paths`` QEMU cannot open under ``uri``: what stops it and the fix."""
    account = qemu_account(uri)
    if account is None or os.geteuid() != 0:
        return []  # QEMU runs as root, or we cannot take its identity to ask
    groups = os.getgrouplist(account.pw_name, account.pw_gid)
    problems = []
    for path in paths:
        done = subprocess.run(
            ["/bin/sh", "-c", _PROBE, "probe", str(path), *map(str, reversed(path.parents))],
            capture_output=True,
            text=True, user=account.pw_uid, group=account.pw_gid, extra_groups=groups,
            timeout=30, check=False, cwd="/",
        )  # fmt: skip
        what, _, where = done.stdout.strip().partition(" ")
        user = account.pw_name
        if what == "folder":
            problems.append(f"QEMU's user {user} cannot open {path}: the folder {where} is "
                            f"closed to it; fix: setfacl -m u:{user}:x {where} (and every "
                            f"folder above {path} it cannot enter)")  # fmt: skip
        elif what == "file":
            problems.append(f"QEMU's user {user} cannot read {path}; fix: "
                            f"setfacl -m u:{user}:r {path}")  # fmt: skip
    return problems
