"""One drill per scenario at a time on a host: an ``flock`` per scenario name.

An overlapping cron run (or a second admin) finds the lock held and either waits up to
``--wait-lock`` or gives up with :class:`Busy` naming the holder. The kernel drops the lock
when its process dies, ``kill -9`` included, so a stale lock cannot exist.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from harness.durations import format_duration
from harness.errors import Busy, InfraError

POLL_S = 0.5


@contextmanager
def scenario_lock(
    root: Path, scenario: str, wait_s: float, check: Callable[[], None] = lambda: None
) -> Iterator[None]:
    """Hold ``scenario``'s lock for the block; wait at most ``wait_s`` for it (polling
    ``check``, which may raise to abort the wait)."""
    folder = root / "locks"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = (folder / f"{scenario}.lock").open("a+")
    except OSError as exc:
        raise InfraError(f"cannot create the run lock in {folder}: {exc.strerror}") from exc
    with handle:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    holder = handle.read().strip() or "another process"
                    waited = f" after waiting {format_duration(wait_s)}" if wait_s else ""
                    raise Busy(f"scenario {scenario} is already being drilled by {holder}; "
                               f"not run{waited} (--wait-lock waits for it)") from None  # fmt: skip
                check()
                time.sleep(POLL_S)
        since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        handle.truncate(0)
        handle.write(f"pid {os.getpid()} since {since}\n")
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)
