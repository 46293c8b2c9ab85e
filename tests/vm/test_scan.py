"""Is the restore point clean? Real scans of real backups: a demo disk image with EICAR, a
clamav-testfiles sample and a ransom note planted by the test (signatures built by the test
from those files, nothing downloaded), the clean demo image scanned after a real drill, a
scan killed with kill -9, and find-clean over a restic repository whose newest snapshot is
infected."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from harness.lab.lifecycle import state_root
from harness.sources.identity import identity
from tests.unit.test_scan import EICAR, RANSOM_RULE, TESTFILES, _database
from tests.vm.conftest import (
    DEMO,
    ROOT,
    assert_backup_untouched,
    command,
    leftovers,
    run_cli,
)
from tests.vm.planted import planted

NOTE = b"YOUR FILES HAVE BEEN ENCRYPTED. Send 2 BTC to recover them.\n"
CLAM = TESTFILES / "clam.exe"


@pytest.fixture(scope="module")
def signatures(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A ClamAV database of the test's own samples and a YARA rule for ransom notes."""
    work = tmp_path_factory.mktemp("signatures")
    (work / "eicar.com").write_bytes(EICAR)
    database = _database(work / "clamav", work / "eicar.com", CLAM)
    rule = work / "ransom.yar"
    rule.write_text(RANSOM_RULE)
    return database, rule


def scenario(folder: Path, database: Path, rule: Path, when: str, paths: str = "") -> Path:
    """The demo web scenario with a scan block."""
    text = (ROOT / "scenarios" / "demo-web.yaml").read_text().replace(
        "checks_timeout: 30s",
        f"scan:\n  when: {when}\n  clamav: {{database: {database}}}\n"
        f"  yara: {{rules: [{rule}]}}\n" + (f"  paths: [{paths}]\n" if paths else "")
        + "checks_timeout: 30s",
    ).replace("tests/test_web_extra.py", str(ROOT / "scenarios" / "tests" / "test_web_extra.py"))
    path = folder / f"scan-{when}.yaml"
    path.write_text(text)
    return path


def test_before_boot_an_infected_restore_point_stops_the_drill_with_nothing_booted(
    tmp_path: Path, scratch: Path, signatures: tuple[Path, Path]
) -> None:
    database, rule = signatures
    backup = planted(DEMO / "web.qcow2", scratch / "infected.qcow2", {
        "/var/www/html/eicar.com": EICAR,
        "/srv/app/clam.exe": CLAM.read_bytes(),
        "/home/ada/README_RESTORE.txt": NOTE,
    })  # fmt: skip
    drill = run_cli(str(scenario(tmp_path, database, rule, "before_boot")),
                    "--var", f"backup={backup}", reports=tmp_path / "r")  # fmt: skip
    assert drill.exit_code == 1, drill.stderr
    report = drill.report
    assert report["verdict"] == "FAIL"
    assert report["reason"].startswith("scan: restore point is infected: 3 hit(s)")
    assert report["reason"].endswith("nothing was booted")
    assert [p["name"] for p in report["phases"]] == ["verify", "hash", "scan"]
    assert report["phases"][-1]["status"] == "failed"
    assert report["lab"] == {}  # no lab was ever made
    assert report["screens"] == []
    [scan] = report["scans"]
    assert scan["when"] == "before_boot"
    assert scan["clean"] is False
    assert scan["files_scanned"] > 10_000  # the whole system: nothing hidden by 0 files
    assert scan["mounted"] == ["disk 1 partition 1 (ext4) at /"]
    hits = {h["path"]: h for h in scan["hits"]}
    assert set(hits) == {"/var/www/html/eicar.com", "/srv/app/clam.exe",
                         "/home/ada/README_RESTORE.txt"}  # fmt: skip
    eicar = hits["/var/www/html/eicar.com"]
    assert (eicar["engine"], eicar["signature"]) == ("clamav", "Test.Sample0.UNOFFICIAL")
    assert (eicar["size"], eicar["sha256"]) == (len(EICAR), hashlib.sha256(EICAR).hexdigest())
    assert hits["/srv/app/clam.exe"]["signature"] == "Test.Sample1.UNOFFICIAL"
    note = hits["/home/ada/README_RESTORE.txt"]
    assert (note["engine"], note["signature"]) == ("yara", "ransom_note")
    [clamav, yara] = scan["engines"]
    assert clamav["files"][0]["signatures"] == "2"
    assert yara["rules"][0]["sha256"] == hashlib.sha256(rule.read_bytes()).hexdigest()
    assert_backup_untouched(report)
    page = drill.file("report.html")
    assert "INFECTED" in page
    assert "README_RESTORE.txt" in page
    assert leftovers() == []


def test_a_clean_backup_scanned_after_the_checks_with_its_screen(
    tmp_path: Path, signatures: tuple[Path, Path]
) -> None:
    database, rule = signatures
    drill = run_cli(str(scenario(tmp_path, database, rule, "after", "/etc, /srv, /var/www")),
                    reports=tmp_path / "r")  # fmt: skip
    assert drill.exit_code == 0, drill.stderr
    report = drill.report
    assert report["reason"].endswith("0 hits)")
    [scan] = report["scans"]
    assert (scan["clean"], scan["hits"], scan["skipped"]) == (True, [], {})
    assert scan["files_scanned"] > 100
    names = [p["name"] for p in report["phases"]]
    assert names.index("scan") > names.index("isolation")  # after the checks ...
    checks_end = next(p for p in report["phases"] if p["name"] == "testinfra")
    assert report["rto"]["measured_s"] <= checks_end["start_s"] + checks_end["duration_s"] + 0.5
    # ... and the screen at the end of the boot (settled), in the folder, its manifest and page
    [screen] = report["screens"]
    assert screen["when"] == "end of boot"
    settle = next(p for p in report["phases"] if p["name"] == "settle")
    settled = datetime.fromisoformat(report["started_at"]) + timedelta(
        seconds=settle["start_s"] + settle["duration_s"] - 0.01)  # fmt: skip
    assert datetime.fromisoformat(screen["taken_at"]) >= settled, (screen, settle)
    png = (drill.folders[0] / screen["file"]).read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert hashlib.sha256(png).hexdigest() == screen["sha256"]
    assert f"{screen['sha256']}  {screen['file']}" in drill.file("manifest.sha256")
    assert "data:image/png;base64," in drill.file("report.html")
    assert_backup_untouched(report)


def test_kill_9_during_a_scan_leaves_nothing_after_cleanup(
    tmp_path: Path, signatures: tuple[Path, Path]
) -> None:
    database, rule = signatures
    path = scenario(tmp_path, database, rule, "before_boot")
    proc = subprocess.Popen(command("run", "--reports", str(tmp_path / "r"), str(path)),
                            cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    scans = state_root() / "scans"
    deadline = time.monotonic() + 60
    while not _scanning(scans):  # the daemon exports the image, the worker reads it
        assert time.monotonic() < deadline, "the scan never started"
        assert proc.poll() is None, "the drill ended before its scan was caught"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30  # parent-death signals: the worker, then the daemon
    while any(x.startswith("qemu-storage-daemon") for x in leftovers()):
        assert time.monotonic() < deadline, leftovers()
        time.sleep(0.1)
    assert [x for x in leftovers() if not x.startswith("scan folder")] == []
    done = subprocess.run(command("cleanup"), capture_output=True, text=True, check=False,
                          cwd=ROOT)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "removed scan folder" in done.stdout
    assert leftovers() == []


def _scanning(scans: Path) -> bool:
    """Whether a scan's loop mount of the exported image exists (in the worker's namespace:
    seen through its daemon's mount table)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if b"qemu-storage-daemon" in cmdline.read_bytes() and str(scans).encode() in \
                    cmdline.read_bytes():  # fmt: skip
                mounts = (cmdline.parent / "mountinfo").read_text()
                return f"{scans}/" in mounts and "/parts/" in mounts
        except OSError:
            continue
    return False


def test_find_clean_reports_the_snapshot_before_an_infected_newest_one(
    tmp_path: Path, signatures: tuple[Path, Path]
) -> None:
    database, _ = signatures
    site, repo, password = tmp_path / "srv", tmp_path / "repo", tmp_path / "pass"
    password.write_text("drill\n")
    env = {**os.environ, "RESTIC_PASSWORD_FILE": str(password), "TZ": ""}
    (site / "www").mkdir(parents=True)
    (site / "www" / "index.html").write_text("<h1>shop</h1>\n")

    def snapshot(when: str) -> None:
        subprocess.run(["restic", "-q", "-r", str(repo), "backup", "--host", "web", "--time",
                        when, str(site)], env=env, check=True)  # fmt: skip

    subprocess.run(["restic", "-q", "-r", str(repo), "init"], env=env, check=True)
    snapshot("2026-11-29 02:00:00")
    snapshot("2026-11-30 02:00:00")
    (site / "www" / "eicar.com").write_bytes(EICAR)
    snapshot("2026-12-01 02:00:00")
    ids = subprocess.run(["restic", "-r", str(repo), "snapshots", "--json"], env=env,
                         check=True, capture_output=True, text=True).stdout  # fmt: skip
    newest, before = [s["id"] for s in sorted(json.loads(ids), key=lambda s: s["time"],
                                              reverse=True)][:2]  # fmt: skip
    path = tmp_path / "site.yaml"
    path.write_text(f"""version: 1
name: shop-site
description: the shop's site, from restic
backup: {{kind: restic, repository: {repo}, password_file: {password}, host: web}}
targets: {{rto: 15m, rpo: 365d}}
vm: {{image: {DEMO / "web.qcow2"}}}
login: {{user: root, key_file: {DEMO / "demo_ed25519"}}}
scan: {{clamav: {{database: {database}}}}}
checks:
  - name: site
    file: /srv/www/index.html
""")
    done = subprocess.run(command("find-clean", str(path), "--reports", str(tmp_path / "r"),
                                  "--log-format", "text"),
                          capture_output=True, text=True, cwd=ROOT, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"newest clean restore point: {before}" in done.stdout
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"{newest}: FAIL: scan: restore point is infected: 1 hit(s)")
    assert lines[1].startswith(f"{before}: PASS: restore point scans clean")
    folders = sorted(p for p in (tmp_path / "r").iterdir() if p.is_dir() and "find-clean" in p.name)
    assert len(folders) == 2  # a report for each point scanned, the oldest never scanned
    infected = json.loads((folders[0] / "report.json").read_text())
    assert infected["backup"]["details"]["snapshot"] == newest
    assert infected["scans"][0]["hits"][0]["path"].endswith("/www/eicar.com")
    clean = json.loads((folders[1] / "report.json").read_text())
    assert (clean["verdict"], clean["scans"][0]["files_scanned"]) == ("PASS", 1)
    assert clean["rto"]["passed"] is None  # nothing restored: no recovery time claimed
    backup = clean["backup"]  # nothing booted: proven by every file's stat facts, as here
    assert (backup["unchanged"], backup["unchanged_by"]) == (True, "stat")
    assert backup["identity_after"] == backup["identity_before"] == asdict(identity(repo))
