"""End-to-end drills on real VMs: the verdicts, the evidence, and nothing left behind."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.lab.lifecycle import state_root
from tests.vm.conftest import (
    DEMO,
    ROOT,
    Drill,
    Running,
    Together,
    assert_backup_untouched,
    command,
    drills_together,
    leftovers,
    run_cli,
)

SCENARIOS = ROOT / "scenarios"


def assert_manifest_verifies(folder: Path) -> None:
    proc = subprocess.run(
        ["sha256sum", "-c", "manifest.sha256"], cwd=folder, capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    listed = {
        line.split("  ", 1)[1] for line in (folder / "manifest.sha256").read_text().splitlines()
    }
    assert listed == {p.name for p in folder.iterdir()} - {"manifest.sha256"}


@pytest.fixture(scope="module")
def booted(tmp_path_factory: pytest.TempPathFactory, module_scratch: Path) -> Together[Drill]:
    """The one-machine drills whose tests only read what they wrote, side by side."""
    runs = {
        "web": (str(SCENARIOS / "demo-web.yaml"),),
        "broken": (str(SCENARIOS / "demo-web-broken.yaml"),),
        "incremental": (str(SCENARIOS / "demo-web.yaml"), "--var",
                        f"backup={incremental(module_scratch)}", "--var", "name=demo-web-incr"),
    }  # fmt: skip
    return drills_together(runs, tmp_path_factory.mktemp("drills"))


def test_demo_web_drill_passes_with_evidence(booted: Together[Drill]) -> None:
    drill = booted["web"]
    assert drill.exit_code == 0, drill.stderr
    report = drill.report
    assert report["verdict"] == "PASS"
    assert report["rto"]["passed"] is True
    assert 0 < report["rto"]["measured_s"] <= report["rto"]["target_s"]
    assert report["rpo"]["passed"] is True
    checks = {c["name"]: c for c in report["checks"]}
    assert all(c["passed"] for c in checks.values()), checks
    assert "order page is served" in checks
    assert "test_web_extra::test_index_page_is_owned_by_root" in checks  # user testinfra file
    phases = [p["name"] for p in report["phases"]]
    assert phases[:2] == ["verify", "hash"]
    assert phases[2:] == [
        "prepare", "network", "provision", "boot", "ssh", "settle", "checks", "testinfra",
        "isolation",
    ]  # fmt: skip
    assert report["isolation"]
    assert all(a["outcome"] == "blocked" for a in report["isolation"]), report["isolation"]
    # The drill host itself, at the lab's gateway: a listener on 0.0.0.0 and known ports.
    gateway = report["lab"]["gateway"]
    host = [a for a in report["isolation"] if a["target"].startswith("drill host ")]
    assert [a["target"].split()[2].split(":")[0] for a in host] == [gateway] * 4
    assert "(a listener on 0.0.0.0)" in host[0]["target"]
    assert all("Connection refused" in a["detail"] for a in host), host  # the guard's reset
    assert "meta l4proto tcp reject with tcp reset" in report["lab"]["host_guard"]
    assert "reject with icmpx type admin-prohibited" in report["lab"]["host_guard"]
    assert all(p["status"] == "ok" for p in report["phases"])
    assert "<forward" not in report["lab"]["network_xml"]
    assert report["lab"]["host_key"]["fingerprint"].startswith("SHA256:")
    assert_backup_untouched(report)

    [folder] = drill.folders
    assert folder.name.endswith("_demo-web")
    assert_manifest_verifies(folder)
    html = drill.file("report.html")
    assert 'class="banner PASS"' in html
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")  # self-contained
    junit = ET.fromstring(drill.file("junit.xml"))
    assert junit.get("failures") == "0"
    assert junit.get("errors") == "0"
    assert "Debian GNU/Linux 12" in drill.file("console.log")
    assert "demo_ed25519" in drill.file("scenario.yaml")  # the path, never the key itself
    assert b"PRIVATE KEY" not in b"".join(p.read_bytes() for p in folder.iterdir())
    verify = subprocess.run(command("verify", str(drill.reports)), capture_output=True, text=True,
                            check=False)  # fmt: skip
    assert verify.returncode == 0, verify.stdout
    assert "demo-web" in (drill.reports / "index.html").read_text()


def test_demo_db_drill_passes_and_keep_leaves_a_reachable_lab(reports: Path) -> None:
    drill = run_cli(str(SCENARIOS / "demo-db.yaml"), "--keep", reports=reports)
    assert drill.exit_code == 0, drill.stderr
    report = drill.report
    assert report["verdict"] == "PASS"
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["customers table holds 1000 rows"]["passed"]
    assert "Ada Lovelace, London" in checks["known customer record is intact"]["output"]
    lab_id = report["lab"]["lab_id"]
    assert f"lab {lab_id} kept (root@{report['lab']['ip']}): restore-drill ssh {lab_id}" in (
        drill.stderr
    )

    # The kept lab answers over OpenSSH, with the host key pinned from the drill's first
    # login; it is listed; cleanup removes it and says so.
    shell = subprocess.run(command("ssh", lab_id[:4], "--", "hostname; systemctl is-active "
                                   "postgresql"), capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL, check=False)  # fmt: skip
    assert shell.returncode == 0, shell.stderr
    assert shell.stdout.split() == ["db", "active"]
    known_hosts = state_root() / "labs" / lab_id / "known_hosts"
    recorded = report["lab"]["host_key"]["fingerprint"]
    listed = subprocess.run(["ssh-keygen", "-lf", str(known_hosts)], capture_output=True,
                            text=True, check=True)  # fmt: skip
    assert recorded in listed.stdout
    labs = subprocess.run(command("labs"), capture_output=True, text=True, check=True)
    assert f"{report['lab']['lab_id']}  kept" in labs.stdout
    cleanup = subprocess.run(command("cleanup"), capture_output=True, text=True, check=True)
    assert f"removed domain {report['lab']['domain']}" in cleanup.stdout
    assert_backup_untouched(report)


def test_failing_check_exits_1_and_the_report_names_it(booted: Together[Drill]) -> None:
    drill = booted["broken"]
    assert drill.exit_code == 1, drill.stderr
    report = drill.report
    assert report["verdict"] == "FAIL"
    assert "order page shows build 2027.01" in report["reason"]
    failed = [c for c in report["checks"] if not c["passed"]]
    assert [c["name"] for c in failed] == ["order page shows build 2027.01"]
    assert "text not found" in failed[0]["observed"]
    assert report["rto"]["passed"] is False  # the service was not verified
    html = drill.file("report.html")
    assert 'class="banner FAIL"' in html
    assert "order page shows build 2027.01" in html
    junit = ET.fromstring(drill.file("junit.xml"))
    assert junit.get("failures") == "2"  # the check and the RTO
    assert_backup_untouched(report)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_mid_boot_aborts_cleans_up_and_reports(reports: Path, sig: signal.Signals) -> None:
    running = Running(str(SCENARIOS / "demo-web.yaml"), reports=reports)
    running.wait_for("VM powered on", timeout=120)
    assert any("domain" in item for item in leftovers())  # the VM is really up
    running.signal(sig)
    assert running.wait(timeout=120) == 130
    [folder] = [p for p in reports.iterdir() if p.is_dir()]
    report = json.loads((folder / "report.json").read_text())
    assert report["verdict"] == "ABORTED"
    assert sig.name in report["reason"]
    assert [p["status"] for p in report["phases"] if p["name"] == "boot"] == ["aborted"]
    assert_manifest_verifies(folder)
    assert_backup_untouched(report)


def test_kill_9_leaves_a_lab_that_cleanup_reaps(reports: Path) -> None:
    running = Running(str(SCENARIOS / "demo-web.yaml"), reports=reports)
    running.wait_for("VM powered on", timeout=120)
    running.signal(signal.SIGKILL)
    running.wait(timeout=30)
    left = leftovers()
    assert any(item.startswith("domain rdrill-") for item in left)
    assert any(item.startswith("network rdrill-") for item in left)
    assert not reports.exists() or not [p for p in reports.iterdir() if p.is_dir()]
    cleanup = subprocess.run(command("cleanup"), capture_output=True, text=True, check=True)
    for item in left:
        assert f"removed {item}" in cleanup.stdout


def test_boot_timeout_is_a_fail_naming_the_phase_with_console_evidence(
    reports: Path, tmp_path: Path
) -> None:
    text = (SCENARIOS / "demo-web-broken.yaml").read_text()
    scenario = tmp_path / "slow-boot.yaml"
    # 3 s is shorter than any real boot (firmware and boot loader alone take longer): the
    # wait must run out, however fast this machine boots guests.
    scenario.write_text(text.replace("boot_timeout: 5m", "boot_timeout: 3s"))
    drill = run_cli(str(scenario), reports=reports)
    assert drill.exit_code == 1, drill.stderr
    report = drill.report
    assert report["verdict"] == "FAIL"
    assert report["reason"].startswith("boot: no DHCP lease within 3s")
    boot = [p for p in report["phases"] if p["name"] == "boot"]
    assert boot[0]["status"] == "timeout"
    assert 3 <= boot[0]["duration_s"] < 10  # bounded: no hang
    # What the guest printed (maybe nothing yet at 3 s) is evidence either way, and so is
    # what its screen showed when the wait ran out (the firmware's, at 3 s).
    assert drill.file("console.log") == report["console_tail"]
    [screen] = report["screens"]
    assert (screen["when"], screen["file"]) == ("boot timed out", "screen-timeout.png")
    png = (drill.folders[0] / "screen-timeout.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    assert (screen["width"], screen["height"]) > (0, 0)
    assert f"{screen['sha256']}  screen-timeout.png" in drill.file("manifest.sha256")
    assert report["checks"] == []
    assert_backup_untouched(report)


def test_parallel_drills_of_a_folder_pass_and_export_metrics(reports: Path, tmp_path: Path) -> None:
    """Both demo applications at once, each in its own process and lab; one summary; the
    Prometheus textfile then says both restores were verified within their RTO."""
    textfile = tmp_path / "restore_drill.prom"
    conf = tmp_path / "notify.yaml"
    conf.write_text(f"prometheus:\n  textfile: {textfile}\n")
    drill = run_cli("--parallel", "2", "--notify", str(conf), "--log-format", "json",
                    str(SCENARIOS / "demo-web.yaml"), str(SCENARIOS / "demo-db.yaml"),
                    reports=reports)  # fmt: skip
    assert drill.exit_code == 0, drill.stderr
    events = [json.loads(line) for line in drill.stderr.splitlines()]
    verdicts = {e["scenario"]: e["status"] for e in events if e["kind"] == "verdict"}
    assert verdicts == {"demo-web": "PASS", "demo-db": "PASS"}
    assert events[-1]["message"] == "2 drills: 2 PASS; exit 0"
    labs = {json.loads((f / "report.json").read_text())["lab"]["lab_id"] for f in drill.folders}
    assert len(labs) == 2
    metrics = textfile.read_text()
    for name in ("demo-web", "demo-db"):
        assert f'restore_drill_rto_met{{scenario="{name}"}} 1.0' in metrics
        assert f'restore_drill_verdict{{restore_drill_verdict="PASS",scenario="{name}"}} 1.0' in (
            metrics
        )


def incremental(scratch: Path) -> Path:
    """A qcow2 layer over a copy of the demo web backup, naming it by a relative path."""
    (scratch / "full").mkdir()
    shutil.copy2(DEMO / "web.qcow2", scratch / "full" / "web.qcow2")
    incr = scratch / "web-incr.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", "full/web.qcow2", "-F",
                    "qcow2", str(incr)], cwd=scratch, check=True)  # fmt: skip
    return incr


def test_an_incremental_backup_boots_with_its_whole_chain(
    booted: Together[Drill], module_scratch: Path
) -> None:
    """Seen in a trial: an incremental (a qcow2 layer over a good full backup) booted with its
    chain cut, waited out the boot limit and blamed the guest's network. Now the chain is
    followed, every layer read-only and proven unchanged, and listed in the report."""
    drill = booted["incremental"]
    full = module_scratch / "full" / "web.qcow2"  # where incremental() put it
    assert drill.exit_code == 0, drill.stderr
    report = drill.report
    assert report["verdict"] == "PASS"
    [layer] = report["backup"]["chain"]
    assert (layer["order"], layer["format"]) == (1, "qcow2")
    assert Path(layer["path"]).resolve() == full
    assert layer["sha256"] == layer["sha256_after"]
    assert_backup_untouched(report)
    assert f"{full.name}" in drill.file("report.html")
