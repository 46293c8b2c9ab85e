"""docs/audit.md's promises hold: the committed sample report passes `sha256sum -c`, and the
hand-check of the ledger chain it prints runs on a real reports folder and catches a change."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from harness.evidence.writer import write_evidence
from tests.unit.test_evidence import result

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_sample_report_checks_with_sha256sum() -> None:
    done = subprocess.run(["sha256sum", "-c", "manifest.sha256"], cwd=DOCS / "sample-report",
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(": OK") == 6  # with the screenshot at the end of boot


def test_the_hand_check_of_the_ledger_works_and_catches_a_change(tmp_path: Path) -> None:
    [script] = re.findall(r"```python\n(.*?)```", (DOCS / "audit.md").read_text(), re.S)
    reports = tmp_path / "reports"
    first = write_evidence(result(), "name: x\n", b"", reports, [])
    write_evidence(result("PASS"), "name: x\n", b"", reports, [])

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                              text=True, check=False)  # fmt: skip

    ok = check()
    assert ok.returncode == 0, ok.stderr
    assert "chain intact; 2 entries" in ok.stdout
    manifest = first / "manifest.sha256"
    manifest.write_text(manifest.read_text().replace("a", "b", 1))
    broken = check()
    assert broken.returncode != 0
    assert f"{first.name}: manifest changed" in broken.stderr
