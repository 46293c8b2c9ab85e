"""The validated, frozen form of a scenario: what the drill pipeline consumes."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

DEFAULT_BOOT_TIMEOUT_S = 600.0
DEFAULT_SSH_TIMEOUT_S = 300.0
DEFAULT_SETTLE_TIMEOUT_S = 300.0
DEFAULT_CHECK_TIMEOUT_S = 60.0
DEFAULT_TESTS_TIMEOUT_S = 600.0


DEFAULT_RESTORE_TIMEOUT_S = 1800.0
DEFAULT_STEP_TIMEOUT_S = 600.0


DEFAULT_INTEGRITY_TIMEOUT_S = 7200.0
#: where the rescue system mounts the rebuilt root file system (restore: system)
SYSTEM_TARGET = "/mnt/rdrill-root"


def default_rescue_image() -> Path:
    """restore-drill's own rescue image, as ``scripts/build-rescue-image`` writes it."""
    return Path(os.environ.get("RESTORE_DRILL_RESCUE_IMAGE",
                               "/var/cache/restore-drill/rescue/rescue.qcow2"))  # fmt: skip


@dataclass(frozen=True)
class IntegritySpec:
    """The backup tool's own integrity check (``backup.integrity``)."""

    read_data_subset: str | None = None  # restic --read-data-subset
    verify_data: bool = False  # borg check --verify-data
    timeout_s: float = DEFAULT_INTEGRITY_TIMEOUT_S


@dataclass(frozen=True)
class BackupSpec:
    """Which backup to restore and how to prove it untouched.

    ``path`` is the backup file (disk-image, tar, file); ``repository`` a restic or borg
    repository, a local folder (``local_repository``) or a URL only the tool understands."""

    kind: str
    path: Path | None
    format: str  # auto | qcow2 | raw
    restore_point: datetime | None
    sha256: str | None
    verify_after: str  # hash | stat
    repository: str | None = None
    local_repository: Path | None = None
    snapshot: str | None = None
    archive: str | None = None
    # Which snapshot "latest" means (restic: host, tags, path; borg: host, glob_archives).
    host: str | None = None
    tags: tuple[str, ...] = ()
    snapshot_path: str | None = None  # restic ``path:``: snapshots that include this path
    glob_archives: str | None = None  # borg: shell-style pattern (``prefix: p`` is ``p*``)
    subpath: str | None = None  # restore only this subtree of the backup, into ``target``
    extra_disks: tuple[tuple[Path, str], ...] = ()  # disk-image: disks 2… (path, format)
    password: str | None = field(default=None, repr=False)
    password_file: Path | None = None
    environment: Mapping[str, str] = field(default_factory=dict, repr=False)
    target: str | None = None
    restore_timeout_s: float = DEFAULT_RESTORE_TIMEOUT_S
    integrity: IntegritySpec | None = None  # None: no check of the tool's own
    # pgBackRest: which stanza and backup set, recovered to what, where, by which service
    stanza: str | None = None
    backup_set: str | None = None
    target_time: datetime | None = None
    recovery_target: str = "latest"  # latest | immediate (unless target_time)
    pg_path: str | None = None  # default: the data directory the backup was taken of
    service: str = "postgresql"
    #: files: restored into the running vm.image; system: the whole machine rebuilt on a
    #: blank disk from a rescue system (bare metal), ``subpath`` then being the system's root
    restore: str = "files"

    @property
    def selector(self) -> str:
        """The snapshot selector in words, for the evidence ("" when there is none)."""
        parts = [f"host={self.host}" if self.host else "",
                 f"tags={','.join(self.tags)}" if self.tags else "",
                 f"path={self.snapshot_path}" if self.snapshot_path else "",
                 f"glob_archives={self.glob_archives}" if self.glob_archives else ""]  # fmt: skip
        return ", ".join(p for p in parts if p)

    @property
    def location(self) -> Path | None:
        """The backup on this host's file system, if it is here (a remote repository is not)."""
        return self.path or self.local_repository


@dataclass(frozen=True)
class StepSpec:
    """A command run in the guest after the data restore (e.g. ``pg_restore``)."""

    name: str
    run: str
    user: str | None
    timeout_s: float


@dataclass(frozen=True)
class Targets:
    """RTO and RPO in seconds."""

    rto_s: float
    rpo_s: float


@dataclass(frozen=True)
class DiskSpec:
    """The blank disk a whole-system restore rebuilds the machine on (``vm.disk``)."""

    size_bytes: int
    layout: Path | None = None  # an ``sfdisk --dump`` saved at backup time; None: auto
    #: with a layout file: the partition (1, 2, …) each mount point of fstab (or swap) is on
    partitions: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class VmSpec:
    """The VM the backup boots in."""

    memory_mib: int
    vcpus: int
    accelerator: str  # auto | kvm | tcg
    boot_timeout_s: float
    settle_timeout_s: float
    image: Path | None = None  # the base image a file-level backup is restored into
    image_format: str = "auto"
    firmware: str = "auto"  # auto | bios | uefi
    secure_boot: bool = False
    disk: DiskSpec | None = None  # restore: system: the blank disk
    rescue_image: Path | None = None  # restore: system: what boots beside it


@dataclass(frozen=True)
class LoginSpec:
    """How the harness logs in to the restored guest."""

    user: str
    key_file: Path
    port: int
    timeout_s: float
    password: str | None = field(default=None, repr=False)  # tried after the key
    inject_key: bool = False  # the drill's key put into the lab copy before boot
    create_user: bool = False  # ... and the user created there if missing


@dataclass(frozen=True)
class CheckSpec:
    """One declarative check: ``kind`` names the subject key (service, port, http, ...);
    ``machine`` the one it runs on (the loader puts the first machine of the file where the
    scenario names none)."""

    name: str
    kind: str
    subject: str
    options: Mapping[str, Any]
    timeout_s: float
    description: str = ""
    machine: str | None = None


DEFAULT_EXPECT_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class ExpectSpec:
    """A folder of the restored machine that must match a manifest recorded at backup time
    (``root`` None: the root the manifest names)."""

    manifest: Path
    root: str | None = None
    strict: bool = False
    public_key: Path | None = None
    ignore: tuple[str, ...] = ()
    timeout_s: float = DEFAULT_EXPECT_TIMEOUT_S


DEFAULT_SCAN_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class ScanSpec:
    """``scan:``: the restored files scanned read-only from the host, ``before_boot`` or
    ``after`` the checks; by the user's ClamAV database and/or YARA rules."""

    when: str = "after"
    clamav: Path | None = None
    yara: tuple[Path, ...] = ()
    paths: tuple[str, ...] = ("/",)  # in the restored system
    max_file_size: int = 100 * 1024 * 1024
    timeout_s: float = DEFAULT_SCAN_TIMEOUT_S


@dataclass(frozen=True)
class Machine:
    """One VM of the lab: its backup, how it boots and how the harness logs in.

    A dependent machine is powered on only when everything it ``depends_on`` is ready
    (logged in, settled, restored, its steps run). ``hostnames`` resolve to its lab address
    inside the lab (the names production configs use, e.g. ``db.shop.internal``)."""

    name: str
    backup: BackupSpec
    vm: VmSpec
    login: LoginSpec
    restore_steps: tuple[StepSpec, ...] = ()
    depends_on: tuple[str, ...] = ()
    hostnames: tuple[str, ...] = ()
    address: str | None = None  # its production address as stated, "192.168.10.20/24"
    expect: tuple[ExpectSpec, ...] = ()  # its restored folders against their manifests
    scan: ScanSpec | None = None  # its restored files scanned for malware


@dataclass(frozen=True)
class Subnet:
    """A production subnet the lab replicates, as the scenario states it."""

    cidr: str
    gateway: str | None = None


@dataclass(frozen=True)
class NetworkSpec:
    """The scenario's word on the lab network: whether to read each boot disk's own network
    configuration before boot, and production subnets it states."""

    detect: bool = True
    subnets: tuple[Subnet, ...] = ()


@dataclass(frozen=True)
class TestinfraSpec:
    """User testinfra test files, run with pytest against the restored VM."""

    files: tuple[Path, ...]
    timeout_s: float
    machine: str | None = None


@dataclass(frozen=True)
class Scenario:
    """A loaded scenario. ``rendered`` is the YAML after templating, secrets redacted.

    ``machines`` holds one machine for a single-VM scenario (named ``main``), in start
    order (dependencies first) for a multi-VM one."""

    name: str
    description: str
    source: Path
    targets: Targets
    machines: tuple[Machine, ...]
    checks: tuple[CheckSpec, ...]
    testinfra: TestinfraSpec | None
    rendered: str
    isolation_probe: tuple[str, ...] = ()
    network: NetworkSpec = field(default_factory=NetworkSpec)
    secrets: frozenset[str] = field(default=frozenset(), repr=False)
    primary_name: str = ""  # the first machine in the file

    @property
    def primary(self) -> Machine:
        """The first machine *in the file* (``machines`` is in start order): where checks
        without ``machine`` run, and whose backup and lab facts lead the report."""
        return next((m for m in self.machines if m.name == self.primary_name), self.machines[0])

    @property
    def memory_mib(self) -> int:
        return sum(m.vm.memory_mib for m in self.machines)
