"""The drill's pipeline: verify → (scan before boot) → prepare → network → provision → boot →
ssh → settle → restore → steps → checks → testinfra → isolation → (scan after) → verdict,
always torn down.

The *measured recovery time* runs from the start of the drill until every check has run:
the moment the service is verified (or found broken). One drill is one boundary: whatever
goes wrong inside it ends this drill with a result, never the run. Each phase lives in the
module of its job; they share the drill's state (:class:`.context.Drill`).
"""

from __future__ import annotations

import getpass
import os
import platform
import socket
import sys

from harness import __version__, qemu_img
from harness.drill.booting import start
from harness.drill.checking import checks, isolation
from harness.drill.clock import utc_stamp
from harness.drill.context import Drill, DrillOptions, DrillOutcome
from harness.drill.machines import Guest, join_polling
from harness.drill.provisioning import network, prepare, prepare_guests, provision
from harness.drill.scanning import not_run, scan
from harness.drill.teardown import teardown
from harness.drill.verdict import bug_reason, judge
from harness.drill.verifying import integrity, start_hashing_all, verify
from harness.errors import Aborted, DrillError, ExitCode
from harness.evidence.model import Verdict
from harness.interrupts import Interrupts
from harness.output.events import Sink
from harness.scenario.model import Scenario
from harness.sources import open_source
from harness.sources.disk_image import DiskImageSource
from harness.sources.host_identity import HostReader

__all__ = ["DrillOptions", "DrillOutcome", "run_drill"]


def run_drill(
    scenario: Scenario, options: DrillOptions, sink: Sink, interrupts: Interrupts
) -> DrillOutcome:
    """Run one drill. Never raises for a failed drill: the verdict is in the result.

    The drill's one boundary: whatever goes wrong inside, a bug of ours included, ends this
    drill (ERROR, with its traceback in the evidence) and returns a result."""
    d = Drill(scenario, options, sink, interrupts)
    try:
        with interrupts.armed():
            open_drill(d)
            _phases(d)
    except (DrillError, Aborted) as exc:
        d.failure = exc
    except Exception as exc:
        d.unexpected(exc, "the drill")
    finally:
        teardown(d)  # not interruptible: signals are only remembered here
    d.safely("listing the scans not run", lambda: not_run(d))
    if d.failure is None and d.hash_errors:
        d.failure = d.hash_errors[0]
    if d.failure is None and interrupts.received:
        d.failure = Aborted(interrupts.received)
    try:
        judge(d.result, scenario, d.started, d.verified_at, d.failure,
              [g.evidence for g in d.guests if g.evidence is not None],
              d.options.scan_only)  # fmt: skip
    except Exception as exc:
        d.unexpected(exc, "the verdict")
        d.result.verdict, d.result.exit_code = Verdict.ERROR, ExitCode.INFRA
        d.result.reason = bug_reason(exc)
    d.result.finished_at = utc_stamp()
    tail = d.outcome.console_log[-8192:]
    d.result.console_tail = tail.decode("utf-8", errors="replace")
    return d.outcome


def open_drill(d: Drill) -> None:
    """Facts of the host and each machine's backup source: inside the drill's boundary."""
    d.result.environment = _environment(d.options)
    several = len(d.scenario.machines) > 1
    d.guests = [
        Guest(m, open_source(m.backup, m.vm), f" {m.name}" if several else "")
        for m in d.scenario.machines
    ]
    host = d.options.host
    for guest in d.guests:  # a remote host's QEMU reads the backup: proven there
        if host is not None and host.remote and isinstance(guest.source, DiskImageSource):
            guest.source.reader = HostReader(host)
    d.primary = next(g for g in d.guests if g.machine is d.scenario.primary)


def _phases(d: Drill) -> None:
    verify(d)
    integrity(d)
    start_hashing_all(d)
    if d.options.scan_only:  # find-clean: the restore point scanned, nothing restored
        scan(d, "")
    else:
        _restore(d)
    for guest in d.guests:
        join_polling(guest.hasher, d.interrupts)


def _restore(d: Drill) -> None:
    scan(d, "before_boot")  # a staged restore: nothing boots from an infected restore point
    chosen = prepare(d)
    d.addressing = network(d, tcg=chosen != "kvm")
    provision(d, chosen)
    prepare_guests(d, tcg=chosen != "kvm")
    start(d)
    checks(d)
    d.verified_at = d.clock.elapsed()
    # Proof of isolation is the harness's own work, not part of the recovery: after the clock.
    for guest in d.guests:
        isolation(d, guest)
    scan(d, "after")


def _environment(options: DrillOptions) -> dict[str, str]:
    return {
        "harness": f"restore-drill {__version__}",
        "python": platform.python_version(),
        "host": socket.getfqdn(),
        "kernel": platform.release(),
        "user": getpass.getuser(),
        "pid": str(os.getpid()),
        "command": " ".join(sys.argv),
        "libvirt_uri": options.uri,
        "qemu_img": qemu_img.version(),
    }
