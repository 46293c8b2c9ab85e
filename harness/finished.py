"""How one scenario's drill ended, as the batch hands it to the summary and notifications: a
low module, so that notifying never imports the drill (libvirt, paramiko, testinfra)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Finished:
    """How one scenario's drill ended; ``report`` is its evidence folder, if one was written."""

    scenario: str
    verdict: str  # PASS | FAIL | ERROR | ABORTED | SKIPPED (another run held it, or a backup ran)
    exit_code: int
    reason: str
    report: Path | None = None
