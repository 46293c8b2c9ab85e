"""Is the restore point clean? A restored file system scanned read-only from the host, with
the user's own ClamAV signature database and/or YARA rules (issue 16; this package is the
scanner; the drill gives it the restored tree).

Every file the walk meets is counted: scanned, or skipped and why (too big, unreadable, a
name the scanner cannot be given), so "0 hits" never hides "0 files scanned". A hit names
the file's path (as in the restored system), size, SHA-256, engine and signature or rule.
Each engine says where its signatures came from (a ClamAV database's own header: version,
build time, signature count; a YARA rules file's SHA-256); restore-drill never downloads any.
The whole scan is bounded by one deadline.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from harness.errors import PhaseFailed, PhaseTimeout
from harness.scenario.model import ScanSpec

__all__ = ["Engine", "Hit", "ScanReport", "ScanSpec", "scan_tree"]

PHASE = "scan"


@dataclass
class Hit:
    """One file a signature or rule matched."""

    path: str  # as in the restored system (/etc/…)
    size: int
    sha256: str
    engine: str  # clamav | yara
    signature: str


@dataclass
class ScanReport:
    """What was scanned, with what, and what was found."""

    engines: list[dict[str, Any]]
    roots: list[str]
    files_scanned: int = 0
    bytes_scanned: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # reason → files
    hits: list[Hit] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def clean(self) -> bool:
        return not self.hits

    def summary(self) -> str:
        skipped = ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items()))
        found = (f"{len(self.hits)} hit(s) in {len({h.path for h in self.hits})} file(s)"
                 if self.hits else "0 hits")  # fmt: skip
        return (f"{found}; {self.files_scanned} file(s) scanned ({self.bytes_scanned} bytes)"
                + (f"; skipped: {skipped}" if skipped else ""))  # fmt: skip


class Engine(Protocol):
    name: str

    def provenance(self) -> dict[str, Any]:
        """Where its signatures came from, for the evidence."""
        ...

    def scan(self, files: Sequence[Path], deadline: float) -> tuple[dict[Path, list[str]],
                                                                     dict[Path, str]]:  # fmt: skip
        """The signatures each file matched, and the files it could not scan whole (why:
        ``unreadable``, ``scanned in part: …``)."""
        ...


def scan_tree(root: Path, spec: ScanSpec, engines: Sequence[Engine],
              deadline: float | None = None) -> ScanReport:  # fmt: skip
    """Scan the restored system mounted (read-only) at ``root``, by ``deadline`` (a
    monotonic time; default ``spec.timeout_s`` from now)."""
    started = time.monotonic()
    deadline = deadline or started + spec.timeout_s
    report = ScanReport([e.provenance() for e in engines], list(spec.paths))
    files: list[Path] = []
    for path, size, problem in _walk(root, spec.paths, spec.max_file_size, deadline):
        if problem:
            report.skipped[problem] = report.skipped.get(problem, 0) + 1
        else:
            files.append(path)
            report.bytes_scanned += size
    unscanned: dict[Path, str] = {}  # a file one engine could not scan whole is not scanned
    found: dict[Path, list[tuple[str, str]]] = {}
    for engine in engines:
        matched, failed = engine.scan(files, deadline)
        for path, why in failed.items():
            unscanned.setdefault(path, why)
        for path, signatures in matched.items():
            found.setdefault(path, []).extend((engine.name, s) for s in signatures)
    for why in unscanned.values():
        report.skipped[why] = report.skipped.get(why, 0) + 1
    report.files_scanned = len(files) - len(unscanned)
    for path in sorted(found):
        size, digest = _facts(path)
        for engine_name, signature in found[path]:
            report.hits.append(Hit(_inside(root, path), size, digest, engine_name, signature))
    report.duration_s = round(time.monotonic() - started, 3)
    return report


def _walk(root: Path, paths: Sequence[str], max_size: int,
          deadline: float) -> Iterator[tuple[Path, int, str]]:  # fmt: skip
    """Every regular file under each of ``paths`` (never following a symbolic link): the
    file, its size, and why it is skipped ("" if it is not)."""
    for wanted in paths:
        top = root / wanted.lstrip("/")
        if not top.exists():
            continue
        if top.is_file() and not top.is_symlink():
            yield _classify(top, max_size)
            continue
        closed: list[OSError] = []  # folders the walk could not list: their files unseen
        for folder, dirs, names in os.walk(top, onerror=closed.append, followlinks=False):
            if time.monotonic() > deadline:
                raise PhaseTimeout(PHASE, "the scan did not finish its walk of the restored "
                                          "files in time")  # fmt: skip
            dirs.sort()
            for name in sorted(names):
                path = Path(folder) / name
                if path.is_symlink() or not path.is_file():
                    continue  # links and special files: nothing of their own to scan
                yield _classify(path, max_size)
        for error in closed:
            yield Path(str(error.filename)), 0, "unreadable folder (its files not counted)"


def _classify(path: Path, max_size: int) -> tuple[Path, int, str]:
    try:
        size = path.stat().st_size
    except OSError:
        return path, 0, "unreadable"
    if "\n" in str(path):
        return path, size, "name with a line break (no scanner takes it)"
    if size > max_size:
        return path, size, f"larger than max_file_size ({max_size} bytes)"
    return path, size, ""


def _facts(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise PhaseFailed(PHASE, f"cannot read {path} that a signature matched: "
                                 f"{exc.strerror}") from exc  # fmt: skip
    return size, digest.hexdigest()


def _inside(root: Path, path: Path) -> str:
    return "/" + str(path.relative_to(root))
