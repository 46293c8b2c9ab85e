"""Write a run's evidence folder ``reports/<UTC time>_<scenario>/``, atomically.

Files are written into a hidden ``.partial`` folder, fsync-ed, covered by
``manifest.sha256`` (``sha256sum -c`` verifies it), and only then renamed into place: a
folder with a run's name is always complete. Every text passes redaction first.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from harness.errors import InfraError
from harness.evidence.html import render_html
from harness.evidence.junit import render_junit
from harness.evidence.model import RunResult
from harness.redact import redact

MANIFEST = "manifest.sha256"


def redact_tree(value: Any, secrets: Iterable[str]) -> Any:
    """A copy of a JSON-like tree with every string redacted."""
    secrets = tuple(secrets)
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {k: redact_tree(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_tree(v, secrets) for v in value]
    return value


def run_folder_name(result: RunResult) -> str:
    started = datetime.fromisoformat(result.started_at)
    return f"{started.strftime('%Y-%m-%dT%H%M%SZ')}_{result.scenario}"


def write_evidence(
    result: RunResult, rendered_scenario: str, console_log: bytes, reports: Path,
    secrets: Iterable[str],
) -> Path:  # fmt: skip
    """Write the evidence folder and return its path; :class:`InfraError` if it cannot."""
    secrets = tuple(secrets)
    name = run_folder_name(result)
    try:
        reports.mkdir(parents=True, exist_ok=True)
        final = reports / name
        n = 1
        while final.exists():
            n += 1
            final = reports / f"{name}-{n}"
        result.run_id = final.name
        partial = reports / f".{final.name}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
    except OSError as exc:
        raise InfraError(f"cannot write the report under {reports}: {exc.strerror}") from exc
    try:
        data = redact_tree(asdict(result), secrets)
        files = {
            "report.json": json.dumps(data, indent=2, sort_keys=False).encode() + b"\n",
            "junit.xml": render_junit(data).encode(),
            "report.html": render_html(data).encode(),
            "console.log": redact(console_log.decode("utf-8", "replace"), secrets).encode(),
            "scenario.yaml": redact(rendered_scenario, secrets).encode(),
        }
        lines = []
        for filename, content in files.items():
            _write(partial / filename, content)
            lines.append(f"{hashlib.sha256(content).hexdigest()}  {filename}\n")
        _write(partial / MANIFEST, "".join(lines).encode())
        partial.rename(final)
        _fsync_dir(reports)
    except OSError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise InfraError(f"cannot write the report under {reports}: {exc.strerror}") from exc
    return final


def _write(path: Path, content: bytes) -> None:
    with path.open("wb") as fh:
        fh.write(content)
        fh.flush()
        os.fsync(fh.fileno())
    path.chmod(0o644)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
