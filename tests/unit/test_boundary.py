"""One boundary per drill: whatever goes wrong inside one scenario's drill (a bug of ours, a
damaged ledger, a signal while it waits for its lock) ends that drill with a report where one
can be written, and the run goes on with the others. No VM: libvirt's test driver."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.lab.lifecycle import state_root

RESTIC_SAYING_NO_TIME = """#!/bin/sh
# A restic whose JSON lacks a field we read: what a future restic might print.
case "$*" in *snapshots*) echo '[{"id": "0123456789abcdef", "paths": ["/srv"]}]';; esac
"""


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", "run", "--connect", "test:///default", *args],
        capture_output=True, text=True, timeout=120, check=False, env=env,
    )  # fmt: skip


def reports_of(reports: Path) -> dict[str, dict[str, object]]:
    out = {}
    for folder in sorted(p for p in reports.iterdir() if p.is_dir()):
        data = json.loads((folder / "report.json").read_text())
        out[str(data["scenario"])] = data
    return out


@pytest.fixture
def two_scenarios(scenario_dir: Path) -> tuple[Path, Path]:
    """A restic scenario whose tool answers unexpected JSON, and an ordinary one after it."""
    bad = scenario_dir / "a-restic.yaml"
    (scenario_dir / "repo").mkdir()
    bad.write_text(
        "version: 1\nname: a-restic\nbackup:\n  kind: restic\n  repository: repo\n"
        "  password: x\n  target: /srv\ntargets: {rto: 15m, rpo: 1d}\n"
        "vm: {image: backup.qcow2}\nlogin: {user: root, key_file: id_ed25519}\n"
        "checks: [{name: c, service: nginx}]\n"
    )
    good = scenario_dir / "b-web.yaml"
    text = (scenario_dir / "scenario.yaml").read_text()
    (scenario_dir / "damaged.qcow2").write_bytes(b"not a disk image" * 64)
    good.write_text(text.replace("name: unit-web", "name: b-web")
                    .replace("backup.qcow2", "damaged.qcow2"))  # fmt: skip
    tools = scenario_dir / "bin"
    tools.mkdir()
    (tools / "restic").write_text(RESTIC_SAYING_NO_TIME)
    (tools / "restic").chmod(0o755)
    return bad, good


def test_a_bug_inside_one_drill_is_its_error_with_a_traceback_and_the_run_goes_on(
    two_scenarios: tuple[Path, Path], tmp_path: Path
) -> None:
    bad, good = two_scenarios
    reports = tmp_path / "reports"
    env = {**os.environ, "PATH": f"{bad.parent / 'bin'}:{os.environ['PATH']}"}
    proc = run("--reports", str(reports), str(bad), str(good), env=env)
    assert proc.returncode == 3, proc.stderr  # the worst: an internal error
    assert "internal error (a bug" not in proc.stderr.splitlines()[-1]  # not the whole run's
    found = reports_of(reports)
    assert set(found) == {"a-restic", "b-web"}  # the second scenario still ran
    crashed = found["a-restic"]
    assert crashed["verdict"] == "ERROR"
    assert str(crashed["reason"]).startswith("internal error (a bug; please report it): KeyError")
    [trace] = crashed["tracebacks"]  # type: ignore[misc]
    assert "Traceback" in trace
    assert "restic.py" in trace
    assert "Traceback (most recent call last)" in proc.stderr  # cron mail shows it
    assert found["b-web"]["verdict"] == "FAIL"  # its own verdict: a damaged image


def test_a_damaged_ledger_is_that_drills_error_with_its_report_written(
    scenario_dir: Path, tmp_path: Path
) -> None:
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "ledger.jsonl").write_text('{"seq": 1, "kind": "run", "prev": "0"}\n{"seq": 2, tr')
    scenario = scenario_dir / "scenario.yaml"
    (scenario_dir / "backup.qcow2").write_bytes(b"not a disk image" * 64)
    proc = run("--reports", str(reports), str(scenario))
    assert proc.returncode == 3, proc.stderr
    report = reports_of(reports)["unit-web"]
    assert report["verdict"] == "ERROR"
    assert str(report["reason"]).startswith("the evidence ledger cannot be extended: ")
    assert "line 2 is damaged" in str(report["reason"])
    assert "(the drill ended FAIL: verify: backup.qcow2 is named .qcow2" in str(report["reason"])
    assert "Traceback" not in proc.stderr


def test_a_signal_while_waiting_for_the_scenario_lock_is_an_abort(
    scenario_dir: Path, tmp_path: Path
) -> None:
    locks = state_root() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with (locks / "unit-web.lock").open("a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        child = subprocess.Popen(
            [sys.executable, "-m", "harness", "run", "--connect", "test:///default",
             "--reports", str(tmp_path / "r"), "--wait-lock", "60s",
             str(scenario_dir / "scenario.yaml")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(2)
        child.send_signal(signal.SIGTERM)
        _, stderr = child.communicate(timeout=30)
    assert child.returncode == 130, stderr
    assert "ABORTED: interrupted by SIGTERM before the drill started" in stderr
    assert "internal error" not in stderr


def test_report_index_of_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "harness", "report", "index",
                           str(tmp_path / "missing")], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    assert proc.returncode == 2
    assert "no such reports folder" in proc.stderr
    assert "internal error" not in proc.stderr


def test_a_drill_that_ends_before_any_vm_ran_spends_no_second_read_of_the_backup(
    scenario_dir: Path, tmp_path: Path
) -> None:
    """libvirt down at prepare: nothing ever ran on the backup, so stat proves it unchanged;
    neither the rest of the first hash nor a second full read of a large backup is spent."""
    backup = scenario_dir / "big.raw"
    with backup.open("wb") as fh:
        fh.truncate(24 * 1024**3)  # 24 GiB, sparse: a full read takes minutes
    scenario = scenario_dir / "scenario.yaml"
    scenario.write_text(scenario.read_text().replace("backup.qcow2", "big.raw"))
    reports = tmp_path / "reports"
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--reports", str(reports), "--connect",
         "qemu+unix:///system?socket=/nonexistent/libvirt-sock", str(scenario)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert time.monotonic() - started < 30
    report = reports_of(reports)["unit-web"]
    assert str(report["reason"]).startswith("infrastructure: prepare: cannot connect to libvirt")
    backup_evidence = report["backup"]
    assert isinstance(backup_evidence, dict)
    assert (backup_evidence["unchanged"], backup_evidence["unchanged_by"]) == (True, "stat")
    assert backup_evidence["details"]["unchanged proof"] == (
        "by stat: the drill ended before any VM ran")
    assert backup_evidence["sha256_after"] is None
