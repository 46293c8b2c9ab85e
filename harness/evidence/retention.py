"""``restore-drill prune``: remove old run folders, keep the ledger verifiable.

Each removed run first gets a ``pruned`` ledger entry (same run id, scenario, verdict and
manifest hash, under the ledger lock and, when the ledger head is signed, re-signed), and
only then is its folder deleted: ``verify`` then knows the folder is gone on purpose, and a
crash between the two leaves a folder that the next prune removes. Never pruned, however
old: each scenario's latest run and its latest verified (PASS) run, the evidence an auditor
asks for first.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harness.errors import ConfigError
from harness.evidence import ledger
from harness.evidence.index import build_index
from harness.evidence.writer import head_signer


@dataclass(frozen=True)
class Pruned:
    run_id: str
    scenario: str
    time: str


def prune(
    reports: Path, older_than_s: float, now: datetime, dry_run: bool = False,
    signing_key: Ed25519PrivateKey | None = None,
) -> list[Pruned]:  # fmt: skip
    """Prune runs that started before ``now - older_than_s``; what was (or would be) pruned."""
    if (reports / ledger.HEAD_SIG).exists() and signing_key is None and not dry_run:
        raise ConfigError(
            f"{reports}: the ledger head is signed; pass --signing-key (or set "
            "RESTORE_DRILL_SIGNING_KEY) so the pruned entries are signed too"
        )
    entries = ledger.entries(reports)
    done = ledger.pruned_runs(entries)
    runs = ledger.runs(entries)
    cutoff = now - timedelta(seconds=older_than_s)
    latest, verified = ledger.latest_runs(runs)
    spared = {r["run_id"] for r in (*latest.values(), *verified.values())}
    chosen = [
        r for r in runs
        if r["run_id"] not in spared and r["run_id"] not in done
        and datetime.fromisoformat(r["time"]) < cutoff
    ]  # fmt: skip
    if dry_run:
        return [Pruned(r["run_id"], r["scenario"], r["time"]) for r in chosen]
    sign = head_signer(signing_key) if signing_key else None
    for run in chosen:
        fields = {k: v for k, v in run.items() if k not in ("seq", "prev")}
        ledger.append(reports, {**fields, "kind": "pruned", "time": now.isoformat()}, sign)
        shutil.rmtree(reports / run["run_id"], ignore_errors=True)
    for run_id in done:  # a folder a crash left behind after its entry was written
        shutil.rmtree(reports / run_id, ignore_errors=True)
    if chosen:
        build_index(reports)
    return [Pruned(r["run_id"], r["scenario"], r["time"]) for r in chosen]
