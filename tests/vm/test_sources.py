"""Every kind of backup restored into a real VM and checked, all at once (six labs side by
side), including a restic repository with a damaged pack: FAIL at the restore phase, with
restic's own error in the evidence. Each proves its data too: every file-level restore its
own bytes, the web root against the signed manifest recorded with the backups (borg: one
that drifted from the backup, FAIL naming each difference; restic: a swapped one, FAIL before
boot), the disk image's /etc against a manifest taken from the backup."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.unit.test_sources import corrupt_largest_file
from tests.vm.conftest import DEMO, ROOT, Drill, Together, assert_backup_untouched, drills_together
from tests.vm.images import ENV as GUESTFS_ENV

FILES = str(ROOT / "scenarios" / "demo-web-files.yaml")
WEB = str(ROOT / "scenarios" / "demo-web.yaml")
DUMP = str(ROOT / "scenarios" / "demo-db-dump.yaml")


def drifted_manifest(scratch: Path) -> Path:
    """The site's manifest as it would be if the site had changed between the manifest and
    the backup: index.html edited, assets/logo.png added (the backup lacks it), and
    assets/VERSION removed (the backup has it); signed by the backup host's key."""
    site = scratch / "drifted-site"
    subprocess.run(["cp", "-a", str(DEMO / "www" / "var" / "www" / "html"), str(site)],
                   check=True)  # fmt: skip
    (site / "index.html").write_text("<p>edited after the backup</p>\n")
    (site / "assets" / "logo.png").write_bytes(b"\x89PNG not in the backup")
    (site / "assets" / "VERSION").unlink()
    out = scratch / "drifted.manifest"
    run_tool("manifest", str(site), "--as", "/var/www/html", "--sign",
             str(DEMO / "manifest.key"), "-o", str(out))  # fmt: skip
    return out


def swapped_manifest(scratch: Path) -> Path:
    """A manifest of the real site, signed by a key that is not the backup host's."""
    run_tool("keygen", str(scratch / "intruder.key"))
    out = scratch / "swapped.manifest"
    run_tool("manifest", str(DEMO / "www" / "var" / "www" / "html"), "--as", "/var/www/html",
             "--sign", str(scratch / "intruder.key"), "-o", str(out))  # fmt: skip
    return out


def etc_manifest(scratch: Path) -> Path:
    """The manifest of /etc as the web backup holds it (copied out read-only)."""
    subprocess.run(["guestfish", "--ro", "-a", str(DEMO / "web.qcow2"), "-i", "copy-out", "/etc",
                    str(scratch)], check=True, env=GUESTFS_ENV)  # fmt: skip
    out = scratch / "etc.manifest"
    run_tool("manifest", str(scratch / "etc"), "--as", "/etc", "-o", str(out))
    return out


def run_tool(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "harness", *args], check=True, capture_output=True)


def test_every_kind_restores_and_a_damaged_repository_fails_at_restore(
    tmp_path: Path, scratch: Path
) -> None:
    drifted, swapped, etc = drifted_manifest(scratch), swapped_manifest(scratch), etc_manifest(
        scratch)  # fmt: skip
    damaged_repository = scratch / "restic-site"
    subprocess.run(["cp", "-a", str(DEMO / "restic-site"), str(damaged_repository)], check=True)
    corrupt_largest_file(damaged_repository / "data")
    vmdk = scratch / "web.vmdk"  # the web disk image as VMware would hold it
    subprocess.run(["qemu-img", "convert", "-O", "vmdk", str(DEMO / "web.qcow2"), str(vmdk)],
                   check=True)  # fmt: skip
    vmdk.chmod(0o644)
    runs = {
        "vmdk": (WEB, "--var", f"backup={vmdk}", "--var", "name=demo-web-vmdk",
                 "--var", f"etc_manifest={etc}"),
        "tar": (FILES, "--var", "kind=tar"),
        "restic": (FILES, "--var", "kind=restic"),
        "borg": (FILES, "--var", "kind=borg", "--var", f"manifest={drifted}"),
        "swapped": (FILES, "--var", "kind=restic", "--var", f"manifest={swapped}",
                    "--var", "name=demo-web-swapped"),
        "dump": (DUMP,),
        "damaged": (FILES, "--var", "kind=restic", "--var", f"repository={damaged_repository}",
                    "--var", "name=demo-web-damaged"),
    }  # fmt: skip
    drills = drills_together(runs, tmp_path)

    for kind in ("vmdk", "tar", "restic", "borg", "dump"):
        assert_restored(kind, drills[kind])
    assert_manifest_failures(drills, swapped)
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


def assert_manifest_failures(drills: Together[Drill], swapped: Path) -> None:
    # The site drifted from its manifest: FAIL naming the changed and the missing file, and
    # listing the one the manifest does not know, while every service check passed.
    borg = drills["borg"].report
    site = next(d for d in borg["data"] if d["source"] == "manifest")
    assert not site["passed"]
    assert site["missing"] == ["assets/logo.png"]
    assert [(c["path"], [w.split(":")[0] for w in c["what"]]) for c in site["changed"]] == [
        ("index.html", ["content", "size", "mtime"])]  # fmt: skip
    assert site["unexpected"] == ["assets/VERSION", "index.nginx-debian.html"]
    assert borg["verdict"] == "FAIL"
    assert borg["reason"].startswith("check 'data: /var/www/html matches drifted.manifest' "
                                     "failed: 0 of 2 files identical"), borg["reason"]
    assert ("1 missing (assets/logo.png); 1 changed (index.html: content, size, mtime)"
            in borg["reason"])
    swapped_drill = drills["swapped"]
    assert swapped_drill.exit_code == 1, swapped_drill.stderr
    report = swapped_drill.report
    assert report["reason"].startswith(f"verify: manifest {swapped}: the manifest is signed by "
                                       "ed25519:"), report["reason"]
    assert "not by the scenario's key" in report["reason"]
    assert [p["name"] for p in report["phases"]] == ["verify"]  # nothing booted


def assert_restored(kind: str, drill: Drill) -> None:
    """A drill of one kind restored, its checks passed, its data proven."""
    assert drill.exit_code == (1 if kind == "borg" else 0), f"{kind}: {drill.stderr}"
    report = drill.report
    phases = {p["name"]: p for p in report["phases"]}
    assert all(c["passed"] for c in report["checks"] if c["kind"] != "data" or kind != "borg")
    assert_backup_untouched(report)
    if kind == "vmdk":  # a disk image: booted, nothing to restore into it
        assert "restore" not in phases
        [etc_proof] = report["data"]
        assert etc_proof["root"] == "/etc"
        assert etc_proof["passed"], etc_proof
        assert etc_proof["files_matching"] == etc_proof["files_expected"] > 100
        return
    assert phases["restore"]["status"] == "ok"
    # The data restore and its proof are part of the measured recovery: before the checks.
    assert phases["restore"]["start_s"] < phases["restore proof"]["start_s"] < phases[
        "checks"]["start_s"] < report["rto"]["measured_s"]  # fmt: skip
    stream = next(d for d in report["data"] if d["source"] == "restore stream")
    assert stream["passed"], stream
    assert stream["files_matching"] == stream["files_expected"] >= 1
    assert phases["restore proof"]["detail"].endswith("restored, all identical to the backup")
    if kind == "dump":
        return
    site = next(d for d in report["data"] if d["source"] == "manifest")
    assert site["signature"].endswith("the scenario's public key: verified")
    if kind != "borg":
        assert site["passed"], site
        assert (site["files_expected"], site["files_matching"]) == (2, 2)
        assert site["unexpected"] == ["index.nginx-debian.html"]  # the base image's, allowed
