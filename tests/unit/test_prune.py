"""Retention: old run folders go, the ledger records them as pruned and still verifies."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from harness.evidence import ledger
from harness.evidence.verify import RUN_FOLDER, verify_reports
from harness.evidence.writer import write_evidence
from harness.signing import generate, load_private
from tests.unit.test_evidence import result

# (scenario, verdict, start): two years of history for two scenarios.
HISTORY = [
    ("unit-web", "PASS", "2024-10-01"), ("unit-web", "FAIL", "2024-11-01"),
    ("unit-db", "PASS", "2024-12-01"), ("unit-db", "FAIL", "2025-01-01"),
    ("unit-web", "FAIL", "2025-02-01"), ("unit-web", "PASS", "2026-11-01"),
]  # fmt: skip


def history(reports: Path, key: Path | None = None) -> None:
    signing_key = load_private(key) if key else None
    for scenario, verdict, day in HISTORY:
        run = replace(result(verdict), scenario=scenario, started_at=f"{day}T02:00:00+00:00")
        write_evidence(run, "s: 1\n", b"log\n", reports, [], signing_key)


def prune(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", "prune", *args],
                          capture_output=True, text=True, check=False)  # fmt: skip


def folders(reports: Path) -> list[str]:
    return sorted(p.name for p in reports.iterdir() if RUN_FOLDER.match(p.name))


def test_prune_removes_old_runs_but_keeps_the_ledger_verifiable(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    history(reports)
    dry = prune(str(reports), "--older-than", "400d", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert len(folders(reports)) == 6  # a dry run touches nothing

    proc = prune(str(reports), "--older-than", "400d")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == dry.stdout.replace("would prune", "pruned")
    # Gone: unit-web's old runs and its 2025 FAIL. Kept, although old: unit-db's last run
    # (its FAIL) and last verified run (its PASS). Kept: unit-web's recent PASS.
    assert folders(reports) == [
        "2024-12-01T020000Z_unit-db", "2025-01-01T020000Z_unit-db", "2026-11-01T020000Z_unit-web",
    ]  # fmt: skip
    assert "3 run(s) pruned" in proc.stdout
    entries = [ledger.parse(line) for line in ledger.read_lines(reports)]
    assert [e["kind"] for e in entries] == ["run"] * 6 + ["pruned"] * 3
    assert {e["run_id"] for e in entries if e["kind"] == "pruned"} == {
        "2024-10-01T020000Z_unit-web", "2024-11-01T020000Z_unit-web",
        "2025-02-01T020000Z_unit-web",
    }  # fmt: skip
    found = verify_reports(reports)
    assert found.ok, found.problems
    index = (reports / "index.html").read_text()
    assert "2024-10-01T020000Z_unit-web</td>" not in index  # not linked any more
    assert "(pruned)" in index

    again = prune(str(reports), "--older-than", "400d")
    assert "nothing to prune" in again.stdout
    assert len(ledger.read_lines(reports)) == 9


def test_deleting_a_run_by_hand_is_still_caught(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    history(reports)
    prune(str(reports), "--older-than", "400d")
    shutil.rmtree(reports / "2024-12-01T020000Z_unit-db")
    found = verify_reports(reports)
    assert found.problems == [
        "2024-12-01T020000Z_unit-db: recorded in the ledger but the folder is missing (deleted)"
    ]


def test_a_signed_ledger_needs_the_key_and_stays_signed(tmp_path: Path) -> None:
    reports, key = tmp_path / "reports", tmp_path / "signing.key"
    generate(key)
    history(reports, key)
    refused = prune(str(reports), "--older-than", "400d")
    assert refused.returncode == 2
    assert "the ledger head is signed; pass --signing-key" in refused.stderr
    assert len(folders(reports)) == 6

    proc = prune(str(reports), "--older-than", "400d", "--signing-key", str(key))
    assert proc.returncode == 0, proc.stderr
    verify = subprocess.run([sys.executable, "-m", "harness", "verify", str(reports),
                             "--public-key", f"{key}.pub"],
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert verify.returncode == 0, verify.stdout
    assert json.loads(ledger.read_lines(reports)[-1])["kind"] == "pruned"
