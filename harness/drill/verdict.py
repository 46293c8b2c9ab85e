"""The verdict: from what a drill measured, its verdict, one-line reason, exit code and the
RTO/RPO results. Every line of it must be exactly true."""

from __future__ import annotations

from datetime import datetime

from harness.durations import format_duration
from harness.errors import Aborted, DrillError, ExitCode, PhaseFailed
from harness.evidence.model import BackupEvidence, CheckResult, RunResult, TargetResult, Verdict
from harness.scenario.model import Scenario


def judge(
    result: RunResult, scenario: Scenario, started: datetime,
    verified_at: float | None, failure: BaseException | None, backups: list[BackupEvidence],
    scan_only: bool = False,
) -> None:  # fmt: skip
    """Set verdict, reason, exit code and the RTO/RPO results. ``scan_only``: a restore
    point scanned and nothing restored (``find-clean``): clean is its PASS."""
    targets = scenario.targets
    result.rpo = _rpo(targets.rpo_s, started, backups)
    failed_checks = [c for c in result.checks if not c.passed and not c.skipped]
    tests = [c for c in result.checks if c.kind == "testinfra"]
    # Skipped tests prove nothing: testinfra files none of whose tests ran, or a drill with
    # no check that passed, verify nothing (docs/decisions.md).
    unproven = (
        "every testinfra test was skipped: the files proved nothing"
        if tests and all(c.skipped for c in tests)
        else "no check ran and passed: nothing was verified"
        if result.checks and not any(c.passed for c in result.checks)
        else ""
    )
    leaks = [a for a in result.isolation if a["outcome"] != "blocked"]
    service_ok = (verified_at is not None and not failed_checks and failure is None
                  and not leaks and not unproven)  # fmt: skip
    changed = [b for b in backups if b.unchanged is False]
    changed_note = (
        "the backup changed during the drill: " + ", ".join(b.path for b in changed)
        if changed else ""
    )  # fmt: skip
    # Drill work before boot (reading the network configuration, key injection) is not
    # recovery: not in the RTO.
    prep = result.preparation_s
    measured = round(verified_at - prep, 1) if verified_at is not None else None
    if service_ok and measured is not None:
        result.rto = TargetResult(
            targets.rto_s,
            measured,
            measured <= targets.rto_s,
            "start of the drill to service verified"
            + (f", less {format_duration(prep)} of drill preparation before boot (not "
               "recovery)" if prep else ""),
        )  # fmt: skip
    else:
        result.rto = TargetResult(
            targets.rto_s,
            measured,
            None if measured is None else False,
            "the service was not verified",
        )

    checks_failed = [f"check '{c.name}' failed: {first_line(c.observed)}" for c in failed_checks]
    # A changed backup is reported whatever else happened: it leads every reason. Checks that
    # failed before a later phase ended the drill come before that phase's failure.
    if _ended(result, failure, "".join(f"{r}; " for r in [changed_note, *checks_failed] if r)):
        return
    if scan_only:
        _scanned(result, changed_note)
        return
    reasons = list(checks_failed)
    if unproven:
        reasons.append(unproven)
    if leaks:
        proven = any(a["outcome"] != "unproven" for a in leaks)
        what = "the lab is not isolated" if proven else "the lab's isolation could not be proven"
        reasons.insert(0, f"{what}: " + ", ".join(f"{a['target']} {a['outcome']}" for a in leaks))
    if changed_note:
        reasons.insert(0, changed_note)
    if result.rto.passed is False and service_ok:  # otherwise the reasons above say why
        reasons.append(
            f"RTO missed: {format_duration(result.rto.measured_s or 0)} > "
            f"{format_duration(targets.rto_s)}"
        )
    if result.rpo.passed is False:
        reasons.append(
            f"RPO missed: backup is {format_duration(result.rpo.measured_s or 0)} old > "
            f"{format_duration(targets.rpo_s)}"
        )
    if reasons:
        result.verdict, result.exit_code = Verdict.FAIL, ExitCode.FAILED
        result.reason = "; ".join(reasons)
    else:
        result.verdict, result.exit_code = Verdict.PASS, ExitCode.PASSED
        result.reason = (
            f"restore verified in {format_duration(measured or 0)} (RTO "
            f"{format_duration(targets.rto_s)}); backup age within RPO "
            f"{format_duration(targets.rpo_s)}; {tally(result.checks).replace('/', ' of ')}"
        )
        if result.scans:
            result.reason += f"; scanned clean ({_files_scanned(result)})"


def _ended(result: RunResult, failure: BaseException | None, lead: str) -> bool:
    """The verdict of a drill that an exception ended; False if none did."""
    if isinstance(failure, Aborted):
        result.verdict, result.exit_code = Verdict.ABORTED, ExitCode.ABORTED
        result.reason = f"{lead}the drill was {failure} and did not finish"
    elif isinstance(failure, PhaseFailed):
        result.verdict, result.exit_code = Verdict.FAIL, ExitCode.FAILED
        result.reason = f"{lead}{failure.phase}: {failure}"
    elif isinstance(failure, DrillError):
        result.verdict, result.exit_code = Verdict.ERROR, failure.exit_code
        result.reason = f"{lead}infrastructure: {failure}"
    elif failure is not None:  # not ours to expect: a bug, whose traceback is in the evidence
        result.verdict, result.exit_code = Verdict.ERROR, ExitCode.INFRA
        result.reason = lead + bug_reason(failure)
    return failure is not None


def _scanned(result: RunResult, changed_note: str) -> None:
    """A scan-only run (find-clean) that ended: clean, unless the backup changed."""
    assert result.rto is not None  # noqa: S101 - set by the caller
    result.rto.detail = "not measured: a scan of the restore point; nothing was restored"
    result.rto.passed = None
    if changed_note:
        result.verdict, result.exit_code = Verdict.FAIL, ExitCode.FAILED
        result.reason = changed_note
        return
    result.verdict, result.exit_code = Verdict.PASS, ExitCode.PASSED
    result.reason = (f"restore point scans clean ({_files_scanned(result)}); nothing was "
                     "restored or booted (find-clean)")  # fmt: skip


def _files_scanned(result: RunResult) -> str:
    return f"{sum(s.files_scanned for s in result.scans)} file(s), 0 hits"


def _rpo(rpo_s: float, started: datetime, backups: list[BackupEvidence]) -> TargetResult:
    """With several machines the RPO is judged on the oldest restore point: the application
    is as old as its oldest part."""
    known = [b for b in backups if b.restore_point]
    oldest = min(known, key=lambda b: datetime.fromisoformat(b.restore_point), default=None)
    if oldest is None:
        return TargetResult(rpo_s, None, None, "restore point unknown")
    age = (started - datetime.fromisoformat(oldest.restore_point)).total_seconds()
    return TargetResult(
        rpo_s, round(age, 1), age <= rpo_s,
        f"restore point {oldest.restore_point} ({oldest.restore_point_source})"
        + (f" of {oldest.path}, the oldest" if len(known) > 1 else ""),
    )  # fmt: skip


def bug_reason(exc: BaseException) -> str:
    return (f"internal error (a bug; please report it): {type(exc).__name__}: {exc} "
            "(traceback in report.json)")  # fmt: skip


def tally(checks: list[CheckResult]) -> str:
    skipped = sum(c.skipped for c in checks)
    tally = f"{sum(c.passed for c in checks)}/{len(checks)} passed"
    return tally + (f", {skipped} skipped" if skipped else "")


def first_line(text: str, limit: int = 200) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"

