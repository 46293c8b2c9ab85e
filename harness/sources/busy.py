"""Is a backup running on the repository a drill is about to read? A restic or borg
repository that a backup (or prune) holds locked at drill start would change under the
drill, which would then FAIL with "backup changed during the drill" though nothing is wrong.
So the drill waits up to ``--wait-backup`` for the lock to go, then skips the scenario
(exit 75) with the holder named. A change *during* the drill stays a FAIL.

Only local repositories can be seen from here; the locks are read, never taken or broken.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

from harness.durations import format_duration
from harness.errors import Busy
from harness.scenario.model import BackupSpec, Scenario

POLL_S = 2.0
#: restic refreshes its lock every 5 minutes and calls one older than 30 minutes stale.
RESTIC_STALE_S = 30 * 60


def holder(spec: BackupSpec, now: float | None = None) -> str | None:
    """Who holds ``spec``'s local repository locked, in words; None when nobody does."""
    folder = spec.local_repository
    if folder is None:
        return None
    if spec.kind == "restic":
        return _restic(folder, time.time() if now is None else now)
    if spec.kind == "borg":
        return _borg(folder)
    return None


def _restic(folder: Path, now: float) -> str | None:
    try:
        locks = [(p, p.stat().st_mtime) for p in (folder / "locks").iterdir()]
    except OSError:
        return None
    fresh = [(p, mtime) for p, mtime in locks if now - mtime < RESTIC_STALE_S]
    if not fresh:
        return None
    lock, mtime = max(fresh, key=lambda lm: lm[1])
    return (f"restic repository {folder} is locked ({len(fresh)} lock(s); locks/"
            f"{lock.name[:8]} refreshed {format_duration(max(0.0, now - mtime))} ago)")  # fmt: skip


def _borg(folder: Path) -> str | None:
    """borg's lock: ``lock.exclusive`` holding ``HOST@NODE.PID-TID``, and ``lock.roster``
    listing the exclusive and shared holders as ``[HOST@NODE, PID, TID]``. A holder of this
    host whose process is gone is stale (borg would say so too) and does not count."""
    holders: dict[str, str] = {}
    with contextlib.suppress(OSError):
        holders.update((p.name, "exclusive") for p in (folder / "lock.exclusive").iterdir())
    try:
        roster = json.loads((folder / "lock.roster").read_text())
    except (OSError, ValueError):
        roster = {}
    if not isinstance(roster, dict):
        roster = {}
    for kind in ("exclusive", "shared"):
        for entry in roster.get(kind) or ():
            if isinstance(entry, list) and len(entry) == 3:
                holders.setdefault(f"{entry[0]}.{entry[1]}-{entry[2]}", kind)
    live = [f"{name} ({kind})" for name, kind in holders.items() if not _dead_here(name)]
    if not live:
        return None
    return f"borg repository {folder} is locked by {', '.join(live)}"


def _dead_here(name: str) -> bool:
    host, _, rest = name.partition("@")
    pid_text = rest.partition(".")[2].partition("-")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def wait_until_idle(scenario: Scenario, wait_s: float, check: Callable[[], None]) -> None:
    """Return once no machine's repository is locked; after ``wait_s``, :class:`Busy`."""
    deadline = time.monotonic() + wait_s
    while True:
        held = [h for m in scenario.machines if (h := holder(m.backup))]
        if not held:
            return
        if time.monotonic() >= deadline:
            waited = f" after waiting {format_duration(wait_s)}" if wait_s else ""
            raise Busy(f"the backup is running: {'; '.join(held)}; scenario {scenario.name} "
                       f"not drilled{waited} (--wait-backup waits for it)")  # fmt: skip
        check()
        time.sleep(min(POLL_S, max(0.05, deadline - time.monotonic())))
