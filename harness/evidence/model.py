"""The result of a drill: plain dataclasses that every report format renders.

``report.json`` is ``dataclasses.asdict(RunResult)``; its schema is documented in
``docs/report-json.md`` and versioned by ``SCHEMA_VERSION``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1


class Verdict:
    """A drill's outcome."""

    PASS = "PASS"  # noqa: S105 - a verdict, not a password. Restore verified within the targets
    FAIL = "FAIL"  # the drill ran; the backup, the service or a target failed
    ERROR = "ERROR"  # the host could not run the drill (infrastructure)
    ABORTED = "ABORTED"  # interrupted by a signal


@dataclass
class PhaseResult:
    """One timed phase; offsets are seconds since the drill started (monotonic clock)."""

    name: str
    start_s: float
    duration_s: float
    status: str  # ok | failed | timeout | aborted | error
    detail: str = ""
    concurrent: bool = False  # ran beside other phases (e.g. hashing during boot)
    output: str = ""  # a restore step's output (tail)


@dataclass
class CheckResult:
    """One check: what was expected, what was seen, and how long it took."""

    name: str
    kind: str
    expectation: str
    observed: str
    passed: bool
    duration_s: float
    output: str = ""
    skipped: bool = False  # a test that did not run: neither a pass nor a failure

    @property
    def status(self) -> str:
        """``pass``, ``FAIL`` or ``skipped``: what a report shows."""
        return "skipped" if self.skipped else "pass" if self.passed else "FAIL"


@dataclass
class FileIdentity:
    """Everything that would change if a file were written, chmod-ed or chown-ed."""

    size: int
    mode: str
    uid: int
    gid: int
    owner: str
    group: str
    inode: int
    device: int
    mtime_ns: int
    ctime_ns: int
    files: int = 1  # a repository folder: how many files it holds
    tree_sha256: str = ""  # a folder: SHA-256 over every file's path and stat facts


@dataclass
class LayerEvidence:
    """One backing file below a disk-image backup (an incremental's full, …): read-only, and
    proven unchanged like the backup itself. ``order`` 1 is the top image's backing file."""

    order: int
    path: str
    format: str
    identity_before: FileIdentity | None = None
    identity_after: FileIdentity | None = None
    sha256: str = ""
    sha256_after: str | None = None
    unchanged: bool | None = None


@dataclass
class BackupEvidence:
    """What was restored and the proof it was left untouched."""

    kind: str
    path: str
    format: str = ""
    virtual_size: int = 0
    restore_point: str = ""
    restore_point_source: str = ""
    sha256: str = ""
    sha256_expected: str | None = None
    sha256_after: str | None = None
    image_check: str = ""
    identity_before: FileIdentity | None = None
    identity_after: FileIdentity | None = None
    unchanged: bool | None = None
    unchanged_by: str = ""  # "hash" | "stat" | "" (a remote repository: not provable here)
    base_image: str = ""  # file-level kinds: the VM image the files were restored into
    details: dict[str, str] = field(default_factory=dict)  # tool, snapshot, archive, target…
    chain: list[LayerEvidence] = field(default_factory=list)  # backing files, top down
    warnings: list[str] = field(default_factory=list)  # said with the run and in the report
    disks: list[BackupEvidence] = field(default_factory=list)  # a server's 2nd, 3rd… disk


@dataclass
class GuestChange:
    """A file the drill added or changed in the lab's copy of a restored system (its overlay;
    the backup is never written), with why and its state before and after (``mode``,
    ``uid``, ``gid``, ``size``, ``sha256``; None: it did not exist)."""

    machine: str
    path: str
    action: str  # added | modified
    reason: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


@dataclass
class DataProof:
    """The restored files of one folder compared with what they must be: a manifest recorded
    at backup time, or the restore stream's own files. Counts are always exact; the lists
    hold the first :data:`LISTED` of each (paths as text: other bytes as ``\\xNN``)."""

    machine: str
    source: str  # "manifest" | "restore stream"
    root: str  # the folder in the guest
    expected_from: str  # the manifest's path, or what the stream was
    passed: bool = False
    files_expected: int = 0
    files_found: int = 0  # of the expected ones
    files_matching: int = 0
    bytes_expected: int = 0
    bytes_matching: int = 0
    missing_count: int = 0
    changed_count: int = 0
    unexpected_count: int = 0
    missing: list[str] = field(default_factory=list)
    changed: list[dict[str, Any]] = field(default_factory=list)  # path, what: [attributes]
    unexpected: list[str] = field(default_factory=list)
    strict: bool = False  # unexpected files fail too
    compared: list[str] = field(default_factory=list)  # content, size, mode, owner, mtime
    manifest_sha256: str = ""
    manifest_created: str = ""
    manifest_host: str = ""
    signature: str = ""  # what the signature proves, in words
    signer: str = ""
    note: str = ""  # why nothing was compared (the folder is missing, ...)
    duration_s: float = 0.0


LISTED = 1000


@dataclass
class TargetResult:
    """A target against what was measured; ``passed`` is None when never measured."""

    target_s: float
    measured_s: float | None
    passed: bool | None
    detail: str = ""


@dataclass
class ScanEvidence:
    """A malware scan of one machine's restore point, read-only from the host."""

    machine: str
    when: str  # before_boot | after
    restore_point: str  # what was scanned, in words
    paths: list[str] = field(default_factory=list)  # in the restored system
    engines: list[dict[str, Any]] = field(default_factory=list)  # each with its provenance
    mounted: list[str] = field(default_factory=list)  # the file systems read, and where
    not_scanned: list[str] = field(default_factory=list)  # file systems left out, and why
    files_scanned: int = 0
    bytes_scanned: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> files
    hits: list[dict[str, Any]] = field(default_factory=list)  # path, size, sha256, engine, …
    clean: bool | None = None  # None: the scan did not finish (see note)
    note: str = ""
    duration_s: float = 0.0


@dataclass
class Screen:
    """A screenshot of a lab VM, a PNG file of the run folder."""

    machine: str  # "" for a one-VM drill
    when: str  # end of boot | boot timed out
    file: str
    width: int
    height: int
    sha256: str
    taken_at: str


@dataclass
class RunResult:
    """Everything a report shows. Built up by the drill, frozen into files by the writer."""

    run_id: str
    scenario: str
    description: str
    scenario_file: str
    started_at: str
    finished_at: str = ""
    verdict: str = Verdict.ERROR
    reason: str = ""
    exit_code: int = 3
    rto: TargetResult | None = None
    rpo: TargetResult | None = None
    phases: list[PhaseResult] = field(default_factory=list)
    checks: list[CheckResult] = field(default_factory=list)
    isolation: list[dict[str, str]] = field(default_factory=list)  # egress attempts
    backup: BackupEvidence | None = None  # the (first) machine's backup
    lab: dict[str, Any] = field(default_factory=dict)
    machines: list[dict[str, Any]] = field(default_factory=list)  # several VMs: each one's
    environment: dict[str, Any] = field(default_factory=dict)
    console_tail: str = ""
    tracebacks: list[str] = field(default_factory=list)  # unexpected errors (bugs of ours)
    guest_changes: list[GuestChange] = field(default_factory=list)  # in the lab copy only
    preparation_s: float = 0.0  # drill work before boot (network, key injection): not in RTO
    data: list[DataProof] = field(default_factory=list)  # restored files against manifests
    screens: list[Screen] = field(default_factory=list)  # PNG files of the run folder
    scans: list[ScanEvidence] = field(default_factory=list)  # restore points scanned
    schema_version: int = SCHEMA_VERSION
