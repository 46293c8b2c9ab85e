"""``reports/ledger.jsonl``: one line per run, each carrying the hash of the line before it.

A hash chain makes the history tamper-evident: editing, reordering or deleting a line breaks
every link after it, and a run folder deleted from disk is still named by its line. Appends
take an exclusive ``flock`` (two drills finishing at once serialise), write one line with
``O_APPEND`` and fsync it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.errors import InfraError

LEDGER = "ledger.jsonl"
LOCK = ".ledger.lock"
HEAD_SIG = "ledger.sig"
GENESIS = "0" * 64


@dataclass(frozen=True)
class Entry:
    """One ledger line. ``prev`` is the SHA-256 of the previous line's bytes."""

    seq: int
    kind: str  # "run" (a drill) | "pruned" (a run folder removed by retention)
    run_id: str
    time: str
    scenario: str
    verdict: str
    manifest_sha256: str
    rto_target_s: float | None
    rto_measured_s: float | None
    rto_passed: bool | None
    rpo_target_s: float | None
    rpo_age_s: float | None
    rpo_passed: bool | None
    prev: str

    def line(self) -> bytes:
        """The canonical bytes of this entry (no newline): what the next entry hashes."""
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()


def line_hash(line: bytes) -> str:
    return hashlib.sha256(line.rstrip(b"\n")).hexdigest()


@contextmanager
def locked(reports: Path) -> Iterator[None]:
    """Hold the ledger's exclusive lock (waits for a concurrent writer)."""
    with (reports / LOCK).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_lines(reports: Path) -> list[bytes]:
    """The ledger's lines as stored (without newlines); empty when there is no ledger."""
    try:
        data = (reports / LEDGER).read_bytes()
    except FileNotFoundError:
        return []
    return [line for line in data.split(b"\n") if line]


def parse(line: bytes) -> dict[str, Any]:
    value = json.loads(line)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


HeadSigner = Callable[[int, str], bytes]


class LedgerDamaged(InfraError):
    """The ledger's last line cannot be read, so no entry can be chained after it."""


def check_tail(reports: Path) -> None:
    """Raise :class:`LedgerDamaged` if the last line, which the next entry must hash and
    count on from, is not a readable entry."""
    try:
        lines = read_lines(reports)
    except OSError as exc:
        raise InfraError(f"cannot read {reports / LEDGER}: {exc.strerror}") from exc
    if lines:
        try:
            seq = parse(lines[-1])["seq"]
            if not isinstance(seq, int):
                raise TypeError("seq is not a number")
        except (ValueError, KeyError, TypeError) as exc:
            raise LedgerDamaged(f"{reports / LEDGER} line {len(lines)} is damaged ({exc}); "
                                "`restore-drill verify` shows where") from None  # fmt: skip


def entries(reports: Path) -> list[dict[str, Any]]:
    """Every entry of the ledger, parsed, in ledger order."""
    return [parse(line) for line in read_lines(reports)]


def runs(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The run entries, in ledger order."""
    return [e for e in entries if e.get("kind") == "run"]


def latest_runs(run_entries: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each scenario's latest run entry, and its latest verified (PASS) one."""
    latest: dict[str, Any] = {}
    verified: dict[str, Any] = {}
    for run in run_entries:
        latest[str(run["scenario"])] = run
        if run["verdict"] == "PASS":
            verified[str(run["scenario"])] = run
    return latest, verified


def pruned_runs(entries: list[dict[str, Any]]) -> set[str]:
    """Run ids that retention removed on purpose (recorded, not missing)."""
    return {str(e["run_id"]) for e in entries if e.get("kind") == "pruned"}


def append(reports: Path, fields: dict[str, Any], sign_head: HeadSigner | None = None) -> Entry:
    """Append an entry for ``fields`` (all of :class:`Entry` but ``seq`` and ``prev``).

    ``sign_head(seq, head_sha256)`` gives the content of ``ledger.sig``; it is written under
    the same lock, so heads are signed in ledger order.
    """
    try:
        with locked(reports):
            check_tail(reports)
            lines = read_lines(reports)
            prev = line_hash(lines[-1]) if lines else GENESIS
            seq = parse(lines[-1])["seq"] + 1 if lines else 1
            entry = Entry(seq=seq, prev=prev, **fields)
            fd = os.open(reports / LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, entry.line() + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            if sign_head is not None:
                tmp = reports / f".{HEAD_SIG}.{os.getpid()}"
                tmp.write_bytes(sign_head(seq, line_hash(entry.line())))
                tmp.replace(reports / HEAD_SIG)
            return entry
    except OSError as exc:
        raise InfraError(f"cannot append to {reports / LEDGER}: {exc.strerror}") from exc


def run_fields(report: dict[str, Any], manifest_sha256: str) -> dict[str, Any]:
    """Ledger fields for a run, from its (redacted) report.json tree."""
    rto, rpo = report.get("rto") or {}, report.get("rpo") or {}
    return {
        "kind": "run",
        "run_id": report["run_id"],
        "time": report["started_at"],
        "scenario": report["scenario"],
        "verdict": report["verdict"],
        "manifest_sha256": manifest_sha256,
        "rto_target_s": rto.get("target_s"),
        "rto_measured_s": rto.get("measured_s"),
        "rto_passed": rto.get("passed"),
        "rpo_target_s": rpo.get("target_s"),
        "rpo_age_s": rpo.get("measured_s"),
        "rpo_passed": rpo.get("passed"),
    }
