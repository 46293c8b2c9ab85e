"""``restore-drill verify reports/``: check everything, then report everything found.

Checked: the ledger's hash chain and sequence; for every run it names, that the folder
exists (unless recorded as pruned), that its manifest is the one the ledger recorded, that
every file matches the manifest and nothing was added; run folders the ledger does not know;
and every signature (manifests, ledger head). Truncating the ledger's tail is only
detectable with signatures: the signed head names the last entry.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from harness import signing
from harness.evidence import ledger

MANIFEST = "manifest.sha256"
MANIFEST_SIG = "manifest.sha256.sig"
LEDGER_SIG = ledger.HEAD_SIG
RUN_FOLDER = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{6}Z_[a-z0-9-]+$")


@dataclass
class Verification:
    """What ``verify`` found: problems (empty means all holds) and what it looked at."""

    problems: list[str] = field(default_factory=list)
    runs: int = 0
    files: int = 0
    signatures: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def manifest_statement(run_id: str, manifest_sha256: str) -> str:
    return f"restore-drill manifest {run_id} sha256:{manifest_sha256}"


def head_statement(seq: int, head_sha256: str) -> str:
    return f"restore-drill ledger head seq={seq} sha256:{head_sha256}"


def verify_reports(reports: Path, pinned: list[Ed25519PublicKey] | None = None) -> Verification:
    """Verify a reports folder; ``pinned`` keys replace the ones stored beside the reports."""
    out = Verification()
    keys = {signing.fingerprint(k): k for k in pinned} if pinned else signing.known_keys(reports)
    lines = ledger.read_lines(reports)
    entries = _check_chain(lines, out)
    pruned = ledger.pruned_runs(entries)
    recorded: set[str] = set()
    for entry in entries:
        if entry.get("kind") != "run":
            continue
        run_id = str(entry.get("run_id"))
        recorded.add(run_id)
        if run_id in pruned:
            continue
        _check_run(reports, entry, keys, pinned, out)
    for folder in sorted(reports.iterdir()) if reports.is_dir() else []:
        if folder.is_dir() and RUN_FOLDER.match(folder.name) and folder.name not in recorded:
            out.problems.append(f"{folder.name}: run folder not recorded in the ledger")
    _check_head(reports, lines, keys, pinned, out)
    return out


def _check_chain(lines: list[bytes], out: Verification) -> list[dict[str, Any]]:
    entries = []
    prev = ledger.GENESIS
    for number, line in enumerate(lines, start=1):
        try:
            entry = ledger.parse(line)
        except ValueError:
            out.problems.append(f"ledger line {number}: not a valid entry (edited?)")
            prev = ledger.line_hash(line)
            continue
        run = entry.get("run_id", "?")
        if entry.get("prev") != prev:
            out.problems.append(
                f"ledger line {number} (run {run}): does not follow line {number - 1}: "
                "an entry was edited, removed or reordered"
            )
        if entry.get("seq") != number:
            out.problems.append(
                f"ledger line {number} (run {run}): sequence number {entry.get('seq')}, "
                f"expected {number}: an entry was removed or reordered"
            )
        prev = ledger.line_hash(line)
        entries.append(entry)
    return entries


def _check_run(
    reports: Path, entry: dict[str, Any], keys: dict[str, Ed25519PublicKey],
    pinned: list[Ed25519PublicKey] | None, out: Verification,
) -> None:  # fmt: skip
    run_id, manifest_hash = str(entry.get("run_id")), str(entry.get("manifest_sha256"))
    folder = reports / run_id
    if not folder.is_dir():
        out.problems.append(f"{run_id}: recorded in the ledger but the folder is missing (deleted)")
        return
    out.runs += 1
    try:
        manifest = (folder / MANIFEST).read_bytes()
    except OSError:
        out.problems.append(f"{run_id}/{MANIFEST}: missing")
        return
    actual_manifest_hash = hashlib.sha256(manifest).hexdigest()
    if actual_manifest_hash != manifest_hash:
        out.problems.append(f"{run_id}/{MANIFEST}: differs from the ledger's record (edited)")
    listed = set()
    for line in manifest.decode(errors="replace").splitlines():
        digest, _, name = line.partition("  ")
        listed.add(name)
        try:
            actual = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        except OSError:
            out.problems.append(f"{run_id}/{name}: listed in the manifest but missing")
            continue
        out.files += 1
        if actual != digest:
            out.problems.append(f"{run_id}/{name}: content changed (sha256 {actual})")
    _check_entry_matches_report(folder, entry, out)
    for extra in sorted(p.name for p in folder.iterdir()):
        if extra not in listed and extra not in (MANIFEST, MANIFEST_SIG):
            out.problems.append(f"{run_id}/{extra}: not in the manifest (added afterwards)")
    sig = folder / MANIFEST_SIG
    if sig.exists():
        statement = manifest_statement(run_id, actual_manifest_hash)
        if problem := signing.check(sig.read_bytes(), statement, keys):
            out.problems.append(f"{run_id}/{MANIFEST_SIG}: {problem}")
        else:
            out.signatures += 1
    elif pinned:
        out.problems.append(f"{run_id}: manifest is not signed")


def _check_entry_matches_report(folder: Path, entry: dict[str, Any], out: Verification) -> None:
    """The ledger's summary must agree with the (manifest-covered) report.json."""
    try:
        report = json.loads((folder / "report.json").read_text())
    except (OSError, ValueError):
        return  # already reported as a missing or changed file
    for key in ("verdict", "scenario"):
        if report.get(key) != entry.get(key):
            out.problems.append(
                f"ledger entry {entry.get('seq')} (run {folder.name}): {key} "
                f"{entry.get(key)!r} differs from the report's {report.get(key)!r} (edited)"
            )


def _check_head(
    reports: Path, lines: list[bytes], keys: dict[str, Ed25519PublicKey],
    pinned: list[Ed25519PublicKey] | None, out: Verification,
) -> None:  # fmt: skip
    sig = reports / LEDGER_SIG
    if not sig.exists():
        if pinned:
            out.problems.append(f"{LEDGER_SIG}: missing: the ledger head is not signed")
        return
    head = ledger.line_hash(lines[-1]) if lines else ledger.GENESIS
    statement = head_statement(len(lines), head)
    problem = signing.check(sig.read_bytes(), statement, keys)
    if problem == "signature covers different content":
        problem = (
            "the signed head does not match the ledger's last entry: entries were removed "
            "from the end, edited, or appended without the signing key"
        )
    if problem:
        out.problems.append(f"{LEDGER_SIG}: {problem}")
    else:
        out.signatures += 1
