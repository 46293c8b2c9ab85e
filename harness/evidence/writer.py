"""Write a run's evidence folder ``reports/<UTC time>_<scenario>/``, atomically.

Files are written into a hidden ``.partial`` folder, fsync-ed, covered by
``manifest.sha256`` (``sha256sum -c`` verifies it), and only then renamed into place: a
folder with a run's name is always complete. Every text passes redaction first.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harness import signing
from harness.errors import InfraError
from harness.evidence import ledger
from harness.evidence.html import render_html
from harness.evidence.junit import render_junit
from harness.evidence.model import RunResult
from harness.evidence.verify import MANIFEST, MANIFEST_SIG, head_statement, manifest_statement
from harness.redact import redact


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
    secrets: Iterable[str], signing_key: Ed25519PrivateKey | None = None, chain: bool = True,
    images: dict[str, bytes] | None = None,
) -> Path:  # fmt: skip
    """Write the evidence folder and record it in the ledger (signing manifest and ledger
    head when a key is given). ``images``: PNG files of the run (screenshots) by file name,
    written beside the report, in its manifest, shown in its page. :class:`InfraError` if it
    cannot; :class:`ledger.LedgerDamaged` before anything is written if the ledger cannot be
    extended (``chain=False`` then writes the folder alone)."""
    secrets = tuple(secrets)
    name = run_folder_name(result)
    try:
        reports.mkdir(parents=True, exist_ok=True)
        if chain:
            ledger.check_tail(reports)
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
            "junit.xml": _render(render_junit, data, _fallback_junit),
            "report.html": _render(lambda tree: render_html(tree, images), data, _fallback_html),
            "console.log": redact(console_log.decode("utf-8", "replace"), secrets).encode(),
            "scenario.yaml": redact(rendered_scenario, secrets).encode(),
            **(images or {}),
        }
        lines = []
        for filename, content in files.items():
            _write(partial / filename, content)
            lines.append(f"{hashlib.sha256(content).hexdigest()}  {filename}\n")
        manifest = "".join(lines).encode()
        _write(partial / MANIFEST, manifest)
        manifest_sha256 = hashlib.sha256(manifest).hexdigest()
        if signing_key is not None:
            statement = manifest_statement(final.name, manifest_sha256)
            _write(partial / MANIFEST_SIG, signing.signature(signing_key, statement))
            signing.publish(signing_key, reports)
        partial.rename(final)
        _fsync_dir(reports)
    except OSError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise InfraError(f"cannot write the report under {reports}: {exc.strerror}") from exc
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)  # never a half-written run folder
        raise
    if chain:
        sign_head = head_signer(signing_key) if signing_key is not None else None
        ledger.append(reports, ledger.run_fields(data, manifest_sha256), sign_head)
    return final


def head_signer(key: Ed25519PrivateKey) -> ledger.HeadSigner:
    """Signs the ledger head as each entry is appended (see :func:`ledger.append`)."""

    def sign_head(seq: int, head: str) -> bytes:
        return signing.signature(key, head_statement(seq, head))

    return sign_head


def _render(
    render: Callable[[dict[str, Any]], str], data: dict[str, Any],
    fallback: Callable[[dict[str, Any], str], str],
) -> bytes:  # fmt: skip
    """One view of the report; if it fails (a bug of ours), a plain one naming the error,
    so a failed drill's evidence is never lost to a template problem."""
    try:
        return render(data).encode()
    except Exception as exc:
        return fallback(data, f"{type(exc).__name__}: {exc}").encode()


def _fallback_html(data: dict[str, Any], error: str) -> str:
    return (
        "<!doctype html><meta charset='utf-8'><title>restore drill report</title>"
        f"<h1>{html.escape(data['verdict'])}: {html.escape(data['scenario'])}</h1>"
        f"<p>{html.escape(data['reason'])}</p><p>The full page could not be rendered "
        f"({html.escape(error)}); report.json holds all of this run's evidence.</p>"
    )


def _fallback_junit(data: dict[str, Any], error: str) -> str:
    suite = ET.Element("testsuite", name=f"restore-drill.{data['scenario']}", tests="1",
                       errors="1")  # fmt: skip
    case = ET.SubElement(suite, "testcase", name="drill", classname=data["scenario"])
    ET.SubElement(case, "error", message=f"{data['verdict']}: {data['reason']} ({error})")
    return ET.tostring(suite, encoding="unicode")


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
