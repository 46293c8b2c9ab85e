"""Every kind of backup restored into a real VM and checked, all at once (six labs side by
side), including a restic repository with a damaged pack: FAIL at the restore phase, with
restic's own error in the evidence."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.unit.test_sources import corrupt_largest_file
from tests.vm.conftest import DEMO, ROOT, Drill, assert_backup_untouched, run_cli

FILES = str(ROOT / "scenarios" / "demo-web-files.yaml")
WEB = str(ROOT / "scenarios" / "demo-web.yaml")
DUMP = str(ROOT / "scenarios" / "demo-db-dump.yaml")


def test_every_kind_restores_and_a_damaged_repository_fails_at_restore(
    tmp_path: Path, scratch: Path
) -> None:
    damaged_repository = scratch / "restic-site"
    subprocess.run(["cp", "-a", str(DEMO / "restic-site"), str(damaged_repository)], check=True)
    corrupt_largest_file(damaged_repository / "data")
    vmdk = scratch / "web.vmdk"  # the web disk image as VMware would hold it
    subprocess.run(["qemu-img", "convert", "-O", "vmdk", str(DEMO / "web.qcow2"), str(vmdk)],
                   check=True)  # fmt: skip
    vmdk.chmod(0o644)
    runs = {
        "vmdk": (WEB, "--var", f"backup={vmdk}", "--var", "name=demo-web-vmdk"),
        "tar": (FILES, "--var", "kind=tar"),
        "restic": (FILES, "--var", "kind=restic"),
        "borg": (FILES, "--var", "kind=borg"),
        "dump": (DUMP,),
        "damaged": (FILES, "--var", "kind=restic", "--var", f"repository={damaged_repository}",
                    "--var", "name=demo-web-damaged"),
    }  # fmt: skip
    with ThreadPoolExecutor(len(runs)) as pool:
        futures = {k: pool.submit(run_cli, *args, reports=tmp_path / k) for k, args in runs.items()}
        drills: dict[str, Drill] = {k: f.result() for k, f in futures.items()}

    for kind in ("vmdk", "tar", "restic", "borg", "dump"):
        drill = drills[kind]
        assert drill.exit_code == 0, f"{kind}: {drill.stderr}"
        report = drill.report
        phases = {p["name"]: p for p in report["phases"]}
        assert all(c["passed"] for c in report["checks"])
        assert_backup_untouched(report)
        if kind == "vmdk":  # a disk image: booted, nothing to restore into it
            assert "restore" not in phases
            continue
        assert phases["restore"]["status"] == "ok"
        # The data restore is part of the measured recovery: it ends before the checks.
        assert phases["restore"]["start_s"] < phases["checks"]["start_s"] < report["rto"][
            "measured_s"]  # fmt: skip
    dump = drills["dump"].report
    steps = [p for p in dump["phases"] if p["name"].startswith("step: ")]
    assert [s["name"] for s in steps] == ["step: create the database", "step: pg_restore the dump"]
    assert drills["vmdk"].report["backup"]["format"] == "vmdk"
    assert drills["restic"].report["backup"]["restore_point_source"] == "restic snapshot time"
    for kind in ("restic", "borg"):  # a repository the mail server shares, newer snapshots
        backup = drills[kind].report["backup"]
        assert backup["details"]["hostname"] == "web"
        assert backup["details"]["selector"] == "host=web"
        assert backup["details"]["subpath"] == "/var/www/html"
        assert backup["warnings"] == []
    assert drills["borg"].report["backup"]["restore_point_source"] == "borg archive time"
    borg_pass = (DEMO / "borg.pass").read_text().strip()
    for file in drills["borg"].folders[0].iterdir():
        assert borg_pass not in file.read_text(errors="replace"), file.name

    damaged = drills["damaged"]
    assert damaged.exit_code == 1, damaged.stderr
    report = damaged.report
    assert report["verdict"] == "FAIL"
    assert report["reason"].startswith("restore: restic failed (exit "), report["reason"]
    restore = next(p for p in report["phases"] if p["name"] == "restore")
    assert restore["status"] == "failed"
    assert not report["checks"]  # never reached
    assert_backup_untouched(report)  # not even a failed restore writes to the repository
