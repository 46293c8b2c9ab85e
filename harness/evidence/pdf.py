"""``restore-drill report pdf RUN``: print a run's report.html to PDF with headless Chromium.

The PDF is written beside the run folder (``<run>.pdf``), not into it: the run folder is
sealed by its manifest, and a file added to it afterwards is, rightly, a verify failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from harness.errors import ConfigError, InfraError

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Without these, Chromium phones home at start; the report itself makes no request at all.
QUIET_FLAGS = (
    "--headless", "--disable-gpu", "--no-first-run", "--disable-quic",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--disable-default-apps", "--no-default-browser-check",
    "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,MediaRouter",
)  # fmt: skip


def browser() -> str:
    """The first Chromium-family browser on PATH."""
    for name in BROWSERS:
        if path := shutil.which(name):
            return path
    raise InfraError("no Chromium found for PDF output: install it (Debian: apt install chromium)")


def chromium_command(*args: str, profile: str) -> list[str]:
    """A headless Chromium command line with a throwaway profile."""
    sandbox = ["--no-sandbox"] if os.geteuid() == 0 else []  # Chromium refuses root otherwise
    return [browser(), *QUIET_FLAGS, *sandbox, f"--user-data-dir={profile}", *args]


def print_pdf(run: Path, out: Path | None = None, timeout_s: float = 120) -> Path:
    """Write ``run``'s report as PDF; its path."""
    html = run / "report.html"
    if not html.is_file():
        raise ConfigError(f"{run}: no report.html (is this a run folder?)")
    target = out or run.parent / f"{run.name}.pdf"
    with tempfile.TemporaryDirectory(prefix="rdrill-chromium-") as profile:
        cmd = chromium_command(
            "--no-pdf-header-footer", f"--print-to-pdf={target}", html.resolve().as_uri(),
            profile=profile,
        )  # fmt: skip
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise InfraError(f"Chromium did not print the PDF within {timeout_s:g}s") from exc
    if proc.returncode != 0 or not target.exists():
        raise InfraError(f"Chromium failed to print the PDF: {proc.stderr.strip()[-500:]}")
    return target
