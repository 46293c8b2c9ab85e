"""The validated, frozen form of a scenario: what the drill pipeline consumes."""

from __future__ import annotations

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


@dataclass(frozen=True)
class BackupSpec:
    """Which backup to restore and how to prove it untouched."""

    kind: str
    path: Path
    format: str  # auto | qcow2 | raw
    restore_point: datetime | None
    sha256: str | None
    verify_after: str  # hash | stat


@dataclass(frozen=True)
class Targets:
    """RTO and RPO in seconds."""

    rto_s: float
    rpo_s: float


@dataclass(frozen=True)
class VmSpec:
    """The VM the backup boots in."""

    memory_mib: int
    vcpus: int
    accelerator: str  # auto | kvm | tcg
    boot_timeout_s: float
    settle_timeout_s: float


@dataclass(frozen=True)
class LoginSpec:
    """How the harness logs in to the restored guest."""

    user: str
    key_file: Path
    port: int
    timeout_s: float


@dataclass(frozen=True)
class CheckSpec:
    """One declarative check: ``kind`` names the subject key (service, port, http, ...)."""

    name: str
    kind: str
    subject: str
    options: Mapping[str, Any]
    timeout_s: float
    description: str = ""


@dataclass(frozen=True)
class TestinfraSpec:
    """User testinfra test files, run with pytest against the restored VM."""

    files: tuple[Path, ...]
    timeout_s: float


@dataclass(frozen=True)
class Scenario:
    """A loaded scenario. ``rendered`` is the YAML after templating, secrets redacted."""

    name: str
    description: str
    source: Path
    backup: BackupSpec
    targets: Targets
    vm: VmSpec
    login: LoginSpec
    checks: tuple[CheckSpec, ...]
    testinfra: TestinfraSpec | None
    rendered: str
    isolation_probe: tuple[str, ...] = ()
    secrets: frozenset[str] = field(default=frozenset(), repr=False)
