"""A server of two disks, booted as it is: the demo database with its PostgreSQL data on a
second disk (mounted from the first disk's fstab) PASSes the demo-db checks; both disks are
attached in order through their own overlays and proven unchanged in the report."""

from __future__ import annotations

from pathlib import Path

from tests.vm.conftest import ROOT, assert_backup_untouched, run_cli
from tests.vm.images import two_disk_db


def test_a_database_on_a_second_disk_is_drilled_with_both_disks(
    reports: Path, scratch: Path
) -> None:
    os_disk, data_disk = two_disk_db()
    text = (ROOT / "scenarios" / "demo-db.yaml").read_text()
    old = '  path: {{ backup | default(demo ~ "/db.qcow2") }}\n'
    assert old in text
    text = text.replace(old, f"  disks:\n    - {{path: {os_disk}}}\n    - {{path: {data_disk}}}\n")
    text += ("  - name: the data lives on the second disk\n"
             "    command: findmnt -n -o SOURCE /var/lib/postgresql\n"
             "    stdout_matches: '^/dev/vdb$'\n")  # fmt: skip
    scenario = scratch / "db-two-disks.yaml"
    scenario.write_text(text)
    drill = run_cli(str(scenario), "--var", "name=demo-db-disks", reports=reports)
    assert drill.exit_code == 0, drill.stderr
    report = drill.report
    assert all(c["passed"] for c in report["checks"]), report["checks"]
    backup = report["backup"]
    assert backup["path"] == str(os_disk)
    [data] = backup["disks"]
    assert data["path"] == str(data_disk)
    assert data["unchanged"] is True
    assert data["sha256"] == data["sha256_after"]
    assert_backup_untouched(report)
    assert "Disk 2 of this server (attached as vdb)" in drill.file("report.html")
