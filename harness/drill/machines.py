"""The machines of a lab while a drill runs, and when each is powered on: as soon as every
machine it depends on is ready, so machines that do not depend on each other start together.
The first failure stops the others at their next wait (their phase: "cancelled")."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.drill.clock import Cancelled
from harness.drill.dataproof import Expected
from harness.evidence.model import BackupEvidence
from harness.interrupts import Interrupts
from harness.lab.lifecycle import LabVm
from harness.remote.keys import HostKey
from harness.remote.ssh import Target
from harness.scenario.model import Machine
from harness.sources import BootDisk, Source

if TYPE_CHECKING:
    from harness.checks.batch import Answer

START_JOIN_S = 30.0  # how long a cancelled machine start may take to notice

Step = Callable[["Guest", Callable[[], None]], None]  # boot or ready, given a cancel check


@dataclass
class Guest:
    """One machine of the lab while the drill runs."""

    machine: Machine
    source: Source
    label: str  # "" for a single-VM scenario, else " <name>": appended to phase names
    evidence: BackupEvidence | None = None
    disk: BootDisk | None = None
    vm: LabVm | None = None
    ip: str = ""
    target: Target | None = None
    client: Any = None
    host_key: HostKey | None = None
    hasher: threading.Thread | None = None
    facts: dict[str, Any] = field(default_factory=dict)  # for the report's machines list
    firmware: str = "bios"  # or "uefi" (chosen at verify)
    expected: list[Expected] = field(default_factory=list)  # its manifests, read at verify
    known: Callable[[], dict[str, Answer]] | None = None  # facts its checks ask, asked ahead
    mounts: dict[str, str] = field(default_factory=dict)  # its file systems, as read at network


def start_machines(
    guests: Sequence[Guest], boot: Step, ready: Step, interrupts: Interrupts,
    say: Callable[[str], None],
) -> None:  # fmt: skip
    """Boot and ready every machine in dependency order, independent ones together; raise
    the first failure."""
    if len(guests) == 1:
        boot(guests[0], interrupts.check)
        ready(guests[0], interrupts.check)
        return
    is_ready = {g.machine.name: threading.Event() for g in guests}
    cancel = threading.Event()
    failures: list[BaseException] = []

    def check() -> None:
        interrupts.check()
        if cancel.is_set():
            raise Cancelled

    def start(guest: Guest) -> None:
        try:
            for name in guest.machine.depends_on:
                while not is_ready[name].wait(0.2):
                    check()
            boot(guest, check)
            ready(guest, check)
            is_ready[guest.machine.name].set()
        except Cancelled:
            pass
        except BaseException as exc:  # handed to the drill's thread below
            failures.append(exc)
            cancel.set()

    threads = [threading.Thread(target=start, args=(g,), name=f"start{g.label}", daemon=True)
               for g in guests]  # fmt: skip
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            join_polling(thread, interrupts)
    finally:  # also on Ctrl-C: every start stops at its next (bounded) wait
        cancel.set()
        _join_cancelled(threads, interrupts, say)
    if failures:
        raise failures[0]


def _join_cancelled(
    threads: list[threading.Thread], interrupts: Interrupts, say: Callable[[str], None]
) -> None:
    """Wait for cancelled starts, bounded: a start stuck where it cannot poll (a hung
    library call) is left behind, said in the log, and teardown goes on without it."""
    deadline = time.monotonic() + START_JOIN_S
    for thread in threads:
        while thread.is_alive() and time.monotonic() < deadline:
            if interrupts.forced.is_set():
                break
            thread.join(0.2)
        if thread.is_alive():
            say(f"{thread.name}: did not stop; teardown goes on")


def join_polling(thread: threading.Thread | None, interrupts: Interrupts) -> None:
    """Wait for ``thread``, polling for a signal (which raises :class:`Aborted`)."""
    while thread is not None and thread.is_alive():
        interrupts.check()
        thread.join(0.5)
