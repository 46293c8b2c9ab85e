"""ClamAV with the user's own signature database (``clamscan -d``): restore-drill never
downloads signatures. Where they came from is read from the database itself: an official
``.cvd``/``.cld`` file's header (version, build time, signature count, builder); any other
signature file (a local ``.hdb``, ``.ndb``, …) by its signature count and SHA-256."""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, InfraError, PhaseTimeout
from harness.scan import PHASE

CLAMSCAN = "clamscan"
#: --alert-exceeds-max reports a limit as a "signature" of this prefix (MaxScanSize, …)
LIMITS = "Heuristics.Limits.Exceeded."
UNPACKED_DEFAULT = 400 * 1024 * 1024  # clamscan's own --max-scansize
OFFICIAL = (".cvd", ".cld", ".cud")
#: signature files clamscan loads from a database folder (sigtool(1), clamscan(1))
SIGNATURES = (*OFFICIAL, ".hdb", ".hsb", ".hdu", ".hsu", ".mdb", ".msb", ".mdu", ".msu",
              ".ndb", ".ndu", ".ldb", ".ldu", ".cdb", ".crb", ".idb", ".ign2", ".fp", ".sfp",
              ".pdb", ".gdb", ".wdb", ".ftm", ".cfg", ".info", ".yar", ".yara")  # fmt: skip


class ClamAV:
    """``clamscan`` over a list of files, the database folder (or file) the user keeps."""

    name = "clamav"

    def __init__(self, database: Path, max_file_size: int) -> None:
        self.database, self.max_file_size = database, max_file_size
        files = sorted(database.iterdir()) if database.is_dir() else [database]
        self.files = [f for f in files if f.suffix in SIGNATURES and f.is_file()]
        if not self.files:
            raise ConfigError(f"{database}: no ClamAV signature file (.cvd, .cld, .hdb, .ndb, "
                              "…) there; restore-drill never downloads one: keep it fresh "
                              "with freshclam or a mirror (see README)")  # fmt: skip

    def provenance(self) -> dict[str, Any]:
        return {"engine": "clamav", "version": _version(), "database": str(self.database),
                "files": [_describe(f) for f in self.files]}  # fmt: skip

    def scan(self, files: Sequence[Path], deadline: float) -> tuple[dict[Path, list[str]],
                                                                     dict[Path, str]]:  # fmt: skip
        if not files:
            return {}, {}
        limit = str(self.max_file_size + 1)
        # what clamscan may unpack from one file (an initramfs, an archive): 4 times that,
        # at least ClamAV's own default; beyond it the file is said to be scanned in part
        unpacked = str(max(4 * self.max_file_size, UNPACKED_DEFAULT))
        with tempfile.NamedTemporaryFile("w", prefix="rdrill-scan-", suffix=".list") as listed:
            listed.write("".join(f"{f}\n" for f in files))
            listed.flush()
            # every limit above max_file_size (which the walk applies): nothing is skipped
            # silently, and a file clamscan still could not fully scan is said
            cmd = [CLAMSCAN, "--no-summary", "--infected", "--stdout", "-d", str(self.database),
                   f"--file-list={listed.name}", f"--max-filesize={limit}",
                   f"--max-scansize={unpacked}", "--alert-exceeds-max=yes"]  # fmt: skip
            try:
                done = subprocess.run(cmd, capture_output=True, text=True, check=False,
                                      timeout=max(deadline - time.monotonic(), 1))  # fmt: skip
            except FileNotFoundError as exc:
                raise InfraError("clamscan not found: install ClamAV (apt install "
                                 "clamav)") from exc  # fmt: skip
            except subprocess.TimeoutExpired as exc:
                raise PhaseTimeout(PHASE, "ClamAV did not finish within the scan's "
                                          "timeout") from exc  # fmt: skip
        if done.returncode not in (0, 1, 2):
            said = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
            raise InfraError(f"clamscan failed: {said}")
        matched: dict[Path, list[str]] = {}
        unreadable: dict[Path, str] = {}
        for line in done.stdout.splitlines():
            # "PATH: SIGNATURE FOUND", "PATH: … ERROR", "WARNING: PATH: Can't access file"
            where, sep, what = line.removeprefix("WARNING: ").rpartition(": ")
            if not sep:
                continue
            signature = what.removesuffix(" FOUND")
            if signature.startswith(LIMITS):  # a limit, not a finding: said, not a hit
                unreadable[Path(where)] = (f"scanned in part (ClamAV's "
                                           f"{signature.removeprefix(LIMITS)} limit)")  # fmt: skip
            elif what.endswith(" FOUND"):
                matched.setdefault(Path(where), []).append(signature)
            elif what.endswith(" ERROR") or what.startswith("Can't "):
                unreadable[Path(where)] = "unreadable"
        if done.returncode == 2 and not unreadable:  # an error not about one file
            said = (done.stderr.strip().splitlines() or ["exit 2"])[-1]
            raise InfraError(f"clamscan failed: {said}")
        return matched, unreadable


def _describe(file: Path) -> dict[str, Any]:
    """A signature file as the evidence names it (read in chunks: an official database is
    hundreds of MB)."""
    digest = hashlib.sha256()
    with file.open("rb") as fh:
        head = fh.read(512)
        fh.seek(0)
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    described: dict[str, Any] = {"file": file.name, "sha256": digest.hexdigest()}
    if file.suffix in OFFICIAL and head.startswith(b"ClamAV-VDB:"):
        fields = head.decode("ascii", errors="replace").rstrip(" \0").split(":")
        # ClamAV-VDB:build time:version:signatures:functionality level:md5:dsig:builder:stime
        described.update(kind="official", built=fields[1] if len(fields) > 1 else "",
                         version=fields[2] if len(fields) > 2 else "",
                         signatures=fields[3] if len(fields) > 3 else "",
                         builder=fields[7] if len(fields) > 7 else "")  # fmt: skip
    else:
        with file.open("rb") as fh:
            described.update(kind="local", signatures=str(sum(1 for x in fh if x.strip())))
    return described


def _version() -> str:
    try:
        done = subprocess.run([CLAMSCAN, "--version"], capture_output=True, text=True,
                              check=False, timeout=30)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip().split("/")[0] or "unknown"
