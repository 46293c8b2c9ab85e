"""Phase scan: is the restore point clean? Each machine with ``scan:`` has its restore point
scanned read-only from the host (:mod:`harness.scan`), never by anything run in the guest:
a disk image's own file systems, or a file-level backup's files as its stream restores them.

``before_boot``: a staged restore; the scan is part of the recovery (counted in the RTO) and a
hit stops the drill before any VM is powered on. ``after``: once the checks have run (not
counted in the RTO). Either way every machine asked for is scanned, then a hit fails the
drill: "restore point is infected", each hit in the evidence."""

from __future__ import annotations

from harness.drill.context import Drill
from harness.drill.machines import Guest
from harness.errors import DrillError, PhaseFailed
from harness.evidence.model import ScanEvidence
from harness.lab.lifecycle import state_root
from harness.scan.isolated import run_isolated
from harness.sources.files import FileLevelSource

FIND_CLEAN = "find-clean"  # the ``when`` of a scan-only run's scan


def scan(d: Drill, when: str) -> None:
    """Scan each machine whose ``scan.when`` is ``when`` ("": every machine with ``scan:``);
    fail the drill on a hit."""
    guests = [g for g in d.guests if g.machine.scan is not None
              and g.machine.scan.when == (when or g.machine.scan.when)]  # fmt: skip
    infected: list[tuple[Guest, ScanEvidence]] = []
    for guest in guests:
        evidence = _scan(d, guest, when or FIND_CLEAN)
        if evidence.clean is False:
            infected.append((guest, evidence))
    if infected:
        stopped = "; nothing was booted" if when == "before_boot" else ""
        raise PhaseFailed(f"scan{infected[0][0].label}", _infected(infected) + stopped)


def not_run(d: Drill) -> None:
    """Each scan the scenario asks for that did not run (the drill ended first) is in the
    evidence as not run: a page without it would read as if no scan had been asked for."""
    ran = {(s.machine, s.when) for s in d.result.scans}
    for guest in d.guests:
        spec = guest.machine.scan
        if spec is None:
            continue
        machine = guest.machine.name if len(d.guests) > 1 else ""
        when = FIND_CLEAN if d.options.scan_only else spec.when
        if (machine, when) not in ran:
            d.result.scans.append(ScanEvidence(
                machine, when, _restore_point(guest), list(spec.paths),
                note="not run: the drill ended before the scan (see the verdict)",
            ))  # fmt: skip


def _scan(d: Drill, guest: Guest, when: str) -> ScanEvidence:
    spec = guest.machine.scan
    assert spec is not None  # noqa: S101 - filtered by the caller
    source = guest.source
    evidence = ScanEvidence(guest.machine.name if len(d.guests) > 1 else "", when,
                            _restore_point(guest), list(spec.paths))  # fmt: skip
    d.result.scans.append(evidence)
    check = d.interrupts.check
    with d.clock.phase(f"scan{guest.label}") as phase:
        try:
            if isinstance(source, FileLevelSource):
                with source.restore_stream() as stream:
                    report = run_isolated(spec, state_root(), check, stream=stream)
            else:
                disk = guest.disk
                assert disk is not None  # noqa: S101 - verified before
                disks = [(str(disk.path), disk.image.format),
                         *((str(x.path), x.image.format) for x in disk.extra)]  # fmt: skip
                report = run_isolated(spec, state_root(), check, disks=disks)
        except DrillError as exc:
            evidence.note = f"the scan did not finish: {exc}"
            raise
        _record(evidence, report)
        phase.detail = _summary(evidence)
        if evidence.hits:
            phase.status = "failed"
    return evidence


def _record(evidence: ScanEvidence, report: dict[str, object]) -> None:
    for key in ("engines", "mounted", "not_scanned", "files_scanned", "bytes_scanned",
                "skipped", "hits", "duration_s"):  # fmt: skip
        setattr(evidence, key, report[key])
    evidence.clean = not evidence.hits


def _summary(evidence: ScanEvidence) -> str:
    found = (f"{len(evidence.hits)} hit(s) in {len({h['path'] for h in evidence.hits})} "
             "file(s)" if evidence.hits else "0 hits")  # fmt: skip
    said = f"{found}; {evidence.files_scanned} file(s) scanned"
    skipped = sum(evidence.skipped.values())
    if skipped:
        said += f", {skipped} skipped"
    if evidence.not_scanned:
        said += f"; {len(evidence.not_scanned)} file system(s) not scanned"
    return said


def _infected(found: list[tuple[Guest, ScanEvidence]]) -> str:
    first = found[0][1].hits[0]
    hits = sum(len(e.hits) for _, e in found)
    where = ", ".join(g.machine.name for g, _ in found) if len(found) > 1 else ""
    return (f"restore point is infected: {hits} hit(s)" + (f" on {where}" if where else "")
            + f", first {first['path']}: {first['signature']} ({first['engine']})")  # fmt: skip


def _restore_point(guest: Guest) -> str:
    evidence = guest.evidence
    if evidence is None:
        return ""
    if isinstance(guest.source, FileLevelSource):
        details = evidence.details
        which = details.get("snapshot") or details.get("archive") or evidence.path
        return f"{evidence.kind} {which}: its files as the restore streams them, unpacked on " \
               "the drill host"  # fmt: skip
    return f"{evidence.kind} {evidence.path}: its file systems, read-only"
