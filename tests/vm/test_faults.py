"""Faults on real VMs: each gives its documented verdict, a report, and leaves nothing."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.vm.conftest import DEMO, ROOT, assert_backup_untouched, run_cli

FAULTS = ROOT / "tests" / "data" / "faults"
TOKEN = "tok-42-sEcReT"


def test_hung_check_leaky_lab_and_secret(reports: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESTORE_DRILL_TEST_TOKEN", TOKEN)
    drill = run_cli(str(FAULTS / "web-faults.yaml"), reports=reports)
    assert drill.exit_code == 1, drill.stderr
    report = drill.report
    assert report["verdict"] == "FAIL"
    checks = {c["name"]: c for c in report["checks"]}
    hung = checks["a check that hangs"]
    assert not hung["passed"]
    assert hung["observed"] == "no answer within 3s (timed out)"
    assert hung["duration_s"] < 10
    assert checks["the token reaches the guest"]["passed"]  # the secret was really used
    assert checks["nginx is running"]["passed"]  # later checks still ran
    assert report["reason"].startswith("the lab is not isolated: 127.0.0.1:22 connected")
    outcomes = {a["target"]: a["outcome"] for a in report["isolation"]}
    assert outcomes["127.0.0.1:22"] == "connected"
    assert outcomes["192.0.2.1:443"] == "blocked"
    assert [p["status"] for p in report["phases"] if p["name"] == "isolation"] == ["failed"]
    for file in drill.folders[0].iterdir():
        assert TOKEN not in file.read_text(errors="replace"), file.name
    assert TOKEN not in drill.stderr
    assert "********" in drill.file("scenario.yaml")
    assert_backup_untouched(report)


def test_dead_sshd_is_a_bounded_fail_at_ssh(reports: Path) -> None:
    drill = run_cli(str(FAULTS / "web-dead-sshd.yaml"), reports=reports)
    assert drill.exit_code == 1, drill.stderr
    report = drill.report
    assert report["reason"].startswith("ssh: no SSH login within 20s")
    ssh = next(p for p in report["phases"] if p["name"] == "ssh")
    assert ssh["status"] == "timeout"
    assert 20 <= ssh["duration_s"] < 35
    assert "Debian GNU/Linux 12" in drill.file("console.log")  # it did boot: evidence says so
    assert_backup_untouched(report)


def test_disk_that_never_boots_never_gets_a_lease(reports: Path) -> None:
    # A backup that is readable but holds no boot loader: the bounded lease wait must end.
    folder = Path(tempfile.mkdtemp(prefix="rdrill-test-", dir="/var/tmp"))
    try:
        folder.chmod(0o755)  # QEMU runs as its own user and must read the backup
        backup = folder / "blank.raw"
        subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(backup), "64M"], check=True)
        backup.chmod(0o644)
        scenario = folder / "blank.yaml"
        scenario.write_text(
            "version: 1\nname: fault-no-boot\nbackup: {path: blank.raw, format: raw}\n"
            "targets: {rto: 15m, rpo: 1d}\nvm: {memory: 256MiB, boot_timeout: 15s}\n"
            f"login: {{user: root, key_file: {DEMO / 'demo_ed25519'}}}\n"
        )
        drill = run_cli(str(scenario), reports=reports)
        assert drill.exit_code == 1, drill.stderr
        report = drill.report
        assert report["reason"].startswith("boot: no DHCP lease within 15s")
        assert report["backup"]["format"] == "raw"
        assert_backup_untouched(report)
    finally:
        subprocess.run(["rm", "-rf", str(folder)], check=True)
    assert not os.path.exists(folder)
