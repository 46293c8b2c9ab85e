"""The drill's key into the lab's copy of a restored system (the overlay, never the backup):
so a backup from a production that never had the drill's key can be drilled as it is.

What changes, all inside the overlay: a file holding the drill's public key under
``/etc/ssh/restore-drill/``, and sshd told to read it (a drop-in under ``sshd_config.d``
that sshd reads first, else the same lines put first in a copy of ``sshd_config``;
``PermitRootLogin prohibit-password`` when the drill logs in as root). With
``create_user`` a missing user is created, with a sudo rule. Every file touched is reported
with its state before and after.
"""

from __future__ import annotations

from pathlib import Path

from harness.evidence.model import GuestChange
from harness.guest import appliance

PHASE = "prepare guest"


def inject_key(
    machine: str, overlay: Path, user: str, public_key: str, *, create_user: bool, tcg: bool,
    mounts: dict[str, str] | None = None,
) -> tuple[list[GuestChange], list[str]]:
    """Prepare ``overlay``; the files changed, and notes (SELinux, a created user).
    ``mounts``: its file systems as the reading of its network configuration found them
    (mount point -> device), which spares libguestfs a second inspection of the system."""
    answer = appliance.call({
        "op": "inject", "disks": [{"path": str(overlay), "format": "qcow2"}], "tcg": tcg,
        "user": user, "public_key": public_key, "create_user": create_user,
        "mounts": mounts or {},
    }, PHASE)  # fmt: skip
    changes = [GuestChange(machine, str(c["path"]), str(c["action"]), str(c["reason"]),
                           c["before"], c["after"]) for c in answer.get("changes", [])]
    return changes, [str(n) for n in answer.get("notes", [])]
