"""Proof that the backup was left untouched: hashing it beside the boot (so integrity proof
does not lengthen the measured recovery), and proving it unchanged after the drill, cut
short where waiting would cost more than it proves."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from harness.drill.clock import Clock
from harness.drill.machines import Guest
from harness.errors import DrillError
from harness.evidence.model import BackupEvidence, PhaseResult, RunResult
from harness.sources import HashCancelled, Proof, Source


class Stop(threading.Event):
    """An event that says why it was set (for the hash phase's line in the report)."""

    reason = ""

    def stop(self, reason: str) -> None:
        if not self.is_set():
            self.reason = reason
            self.set()


def start_hashing(
    source: Source, evidence: BackupEvidence, result: RunResult, clock: Clock,
    errors: list[BaseException], stop: Stop, name: str = "hash",
) -> threading.Thread:  # fmt: skip
    """Hash the backup in a thread of its own, timed as a concurrent phase."""
    record = PhaseResult(name, round(clock.elapsed(), 3), 0.0, "ok", concurrent=True)
    result.phases.append(record)

    def work() -> None:
        try:
            source.hash(evidence, stop)
            record.detail = "sha256 of the backup"
        except HashCancelled:
            record.status, record.detail = "aborted", stop.reason
        except DrillError as exc:
            record.status, record.detail = "failed", str(exc)
            errors.append(exc)
        finally:
            record.duration_s = round(clock.elapsed() - record.start_s, 3)

    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    return thread


def prove_unchanged(
    guests: Sequence[Guest], stop: Stop, forced: threading.Event, *, vm_ran: bool,
    aborted: bool,
) -> DrillError | None:  # fmt: skip
    """Each backup's identity (and hash) again; the first failure to prove it, if any.

    When no VM ever ran, nothing could have touched the backup: stat proves it, and no
    second full read of a large backup is spent (nor the rest of the first). An aborted
    drill does not wait for the first hash; a second signal (``forced``) cuts any hash short.
    """
    skip = "" if vm_ran else "by stat: the drill ended before any VM ran"
    if skip:
        stop.stop("not needed: the drill ended before any VM ran")
    elif aborted:  # no waiting for a long hash; stat still proves it
        stop.stop("not finished: the drill was aborted")
    failure: DrillError | None = None
    for guest in guests:
        while guest.hasher is not None and guest.hasher.is_alive():
            if forced.is_set():
                stop.stop("not finished: a second signal forced the stop")
            guest.hasher.join(0.2)
        evidence = guest.evidence
        if evidence is not None and (evidence.identity_before is not None or evidence.details):
            try:
                guest.source.confirm_unchanged(evidence, Proof(forced, skip))
            except DrillError as exc:
                failure = failure or exc
    return failure
