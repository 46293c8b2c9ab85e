"""Faults that need no VM: a damaged backup, a full reports disk. Real files, real tools."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import InfraError
from tests.unit.test_evidence import write


def run(scenario: Path, reports: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", "run", "--connect", "test:///default",
         "--reports", str(reports), str(scenario)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def only_report(reports: Path) -> dict[str, object]:
    [folder] = [p for p in reports.iterdir() if p.is_dir()]
    data: dict[str, object] = json.loads((folder / "report.json").read_text())
    return data


@pytest.mark.parametrize("damage", ["truncate", "corrupt-header", "corrupt-l1-table"])
def test_damaged_qcow2_fails_at_verify_with_a_report(
    scenario_dir: Path, tmp_path: Path, damage: str
) -> None:
    backup = scenario_dir / "backup.qcow2"
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 4M", str(backup)],
                   check=True, capture_output=True)  # fmt: skip
    data = bytearray(backup.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 3]
    elif damage == "corrupt-header":
        data[0:4] = b"QFI\x00"  # the magic
    else:
        l1_offset = int.from_bytes(data[40:48], "big")
        data[l1_offset : l1_offset + 8] = (0x7FFFFFFFFFFF0000).to_bytes(8, "big")
    backup.write_bytes(bytes(data))
    reports = tmp_path / "reports"
    proc = run(scenario_dir / "scenario.yaml", reports)
    assert proc.returncode == 1, proc.stderr
    report = only_report(reports)
    assert report["verdict"] == "FAIL"
    assert str(report["reason"]).startswith("verify:")
    phases = report["phases"]
    assert isinstance(phases, list)
    assert [p["name"] for p in phases] == ["verify"]  # never reached libvirt
    assert phases[0]["status"] == "failed"


@pytest.mark.root
def test_full_reports_disk_is_an_infra_error_with_no_half_written_run(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("needs root to mount a tiny tmpfs (scripts/test runs as root)")
    disk = tmp_path / "full"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], check=True)
    try:
        (disk / "ballast").write_bytes(b"\0" * 60_000)
        with pytest.raises(InfraError, match="No space left on device"):
            write(disk)
        assert sorted(p.name for p in disk.iterdir()) == ["ballast"]
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_a_scan_the_drill_never_reached_is_said_not_to_have_run(
    scenario_dir: Path, tmp_path: Path
) -> None:
    """A drill that fails before its scan has no scan section unless it says so: an auditor
    must not read the page of a scenario that asks for a scan as if none had been asked."""
    (scenario_dir / "rules.yar").write_text('rule note { strings: $a = "RANSOM" condition: $a }\n')
    scenario = scenario_dir / "scenario.yaml"
    scenario.write_text(scenario.read_text() + "scan: {yara: {rules: [rules.yar]}, when: after}\n")
    backup = scenario_dir / "backup.qcow2"
    backup.write_bytes(backup.read_bytes()[:100])  # damaged: the drill ends at verify
    reports = tmp_path / "reports"
    proc = run(scenario, reports)
    assert proc.returncode == 1, proc.stderr
    report = only_report(reports)
    [entry] = report["scans"]  # type: ignore[misc]
    assert entry["when"] == "after"
    assert entry["clean"] is None
    assert entry["note"] == "not run: the drill ended before the scan (see the verdict)"
    [folder] = [p for p in reports.iterdir() if p.is_dir()]
    assert "not run: the drill ended before the scan" in (folder / "report.html").read_text()
