"""The CLI edge: exit codes, messages without tracebacks, help for every command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import cli
from tests.conftest import VALID


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True,
                          check=False)  # fmt: skip


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_command_has_help(name: str) -> None:
    outcome = CliRunner().invoke(cli, [name, "--help"])
    assert outcome.exit_code == 0
    assert cli.commands[name].help
    assert "Usage:" in outcome.output


def test_validate_ok(scenario_dir: Path) -> None:
    proc = run("validate", str(scenario_dir / "scenario.yaml"))
    assert proc.returncode == 0, proc.stderr
    assert "ok: unit-web, 2 checks, RTO 15m, RPO 1d 2h" in proc.stdout


def test_bad_scenario_exits_2_listing_all_problems_without_traceback(scenario_dir: Path) -> None:
    bad = scenario_dir / "bad.yaml"
    bad.write_text(VALID.replace("rto: 15m", "rto: 15 minutes").replace("vcpus: 1", "vcpu: 1"))
    proc = run("validate", str(bad))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"error: {bad}:6: targets.rto:" in proc.stderr
    assert "unknown key 'vcpu' (did you mean 'vcpus'?)" in proc.stderr
    assert "2 problem(s); nothing was run" in proc.stderr


def test_run_with_bad_input_creates_nothing(scenario_dir: Path, tmp_path: Path) -> None:
    bad = scenario_dir / "bad.yaml"
    bad.write_text(VALID.replace("backup.qcow2", "missing.qcow2"))
    reports = tmp_path / "reports"
    proc = run("run", "--connect", "test:///default", "--reports", str(reports), str(bad))
    assert proc.returncode == 2
    assert "backup.path: no such file" in proc.stderr
    assert not reports.exists()


def test_encrypted_key_is_a_config_error(scenario_dir: Path) -> None:
    key = scenario_dir / "id_ed25519"
    key.unlink()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "passphrase", "-f", str(key)],
                   check=True)  # fmt: skip
    proc = run("validate", str(scenario_dir / "scenario.yaml"))
    assert proc.returncode == 2
    assert "passphrase-protected" in proc.stderr


def test_bad_var_is_a_usage_error(scenario_dir: Path) -> None:
    proc = run("validate", "--var", "oops", str(scenario_dir / "scenario.yaml"))
    assert proc.returncode == 2
    assert "--var 'oops'" in proc.stderr


def test_unreachable_libvirt_exits_3_with_how_to_start_it(
    scenario_dir: Path, tmp_path: Path
) -> None:
    proc = run("run", "--connect", "qemu+unix:///system?socket=/nonexistent", "--reports",
               str(tmp_path / "r"), str(scenario_dir / "scenario.yaml"))  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert "libvirtd -d" in proc.stderr
    assert "Traceback" not in proc.stderr
    [folder] = [p for p in (tmp_path / "r").iterdir() if p.is_dir()]  # evidence too
    report = json.loads((folder / "report.json").read_text())
    assert report["verdict"] == "ERROR"
    assert report["phases"][-1]["name"] == "prepare"
    assert (tmp_path / "r" / "ledger.jsonl").read_text().count("\n") == 1
    assert (tmp_path / "r" / "index.html").exists()


def test_schema_is_json_schema() -> None:
    proc = run("schema")
    data = json.loads(proc.stdout)
    assert data["$schema"].endswith("2020-12/schema")
    assert "checks" in data["properties"]


def test_unknown_command_exits_2() -> None:
    assert run("explode").returncode == 2


def test_find_clean_with_no_restore_point_says_so_not_that_all_are_infected(
    scenario_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (scenario_dir / "r.yar").write_text("rule r { condition: false }\n")
    scanned = scenario_dir / "scanned.yaml"
    scanned.write_text((scenario_dir / "scenario.yaml").read_text()
                       + "scan:\n  yara: {rules: [r.yar]}\n")  # fmt: skip
    monkeypatch.setattr("harness.findclean.restore_points", lambda _s, _i: [])
    outcome = CliRunner().invoke(cli, ["find-clean", str(scanned), "--reports",
                                       str(scenario_dir / "reports"), "--log-format", "text"])
    assert outcome.exit_code == 1, outcome.output
    assert "no restore point to scan: none matches the scenario's selector" in outcome.output
    assert "infected" not in outcome.output
