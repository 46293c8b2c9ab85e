"""Bare-metal recovery (backup.restore: system) of the demo db server from its whole-system
tar and restic backups and from the tar of the same server installed for UEFI, side by side:
a blank disk, the rescue system, the partition table and file systems with the UUIDs the
backup's fstab names, every file, the backup's own GRUB (for BIOS, or for EFI onto the ESP)
installed from a chroot, then the rebuilt disk boots alone and passes the db checks. And
two backups that cannot be rebuilt, refused before anything boots: one without its kernel,
one whose fstab names a UUID no file system can be given."""

from __future__ import annotations

import gzip
import io
import shutil
import tarfile
from pathlib import Path

from tests.vm.conftest import DEMO, ROOT, assert_backup_untouched, drills_together, run_cli

SCENARIO = str(ROOT / "scenarios" / "demo-db-system.yaml")
ROOT_UUID = "8f3c2a61-5d0e-4b7a-9c1f-2e6d4a8b0c15"


def derived(out: Path, drop: str, fstab: bytes | None = None) -> Path:
    """The demo's system tar without the members whose name starts with ``drop`` (and with
    another /etc/fstab if given), uncompressed."""
    with gzip.open(DEMO / "db-system.tar.gz") as raw, tarfile.open(fileobj=raw, mode="r|") as src, \
            tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as dst:  # fmt: skip
        for member in src:
            if member.name.startswith(drop):
                continue
            data = src.extractfile(member) if member.isfile() else None
            if fstab is not None and member.name == "etc/fstab":
                member.size = len(fstab)
                data = io.BytesIO(fstab)
            dst.addfile(member, data)
    return out


def test_bare_metal_recovery_from_tar_and_restic(tmp_path: Path) -> None:
    runs = {"tar": ("--var", "from=tar"),
            "restic": ("--var", "from=restic", "--var", "inject_key=true"),
            "uefi": ("--var", "from=uefi")}  # fmt: skip
    drills = drills_together({k: (SCENARIO, *args) for k, args in runs.items()}, tmp_path,
                             timeout=1800)  # fmt: skip
    for kind in runs:
        drill = drills[kind]
        assert drill.exit_code == 0, (kind, drill.stderr)
        report = drill.report
        assert all(c["passed"] for c in report["checks"]), report["checks"]
        names = [p["name"] for p in report["phases"]]
        order = ["verify", "provision", "rescue boot", "partition", "restore", "restore proof",
                 "bootloader", "boot", "ssh", "settle", "checks"]  # fmt: skip
        assert [n for n in names if n in order] == order, names
        phases = {p["name"]: p for p in report["phases"]}
        assert f"ext4 for / (UUID {ROOT_UUID})" in phases["partition"]["detail"]
        assert "all identical to the backup" in phases["restore proof"]["detail"]
        assert phases["restore"]["detail"].endswith("over a TCP connection of its own")
        uefi = kind == "uefi"
        assert phases["bootloader"]["detail"].startswith("GRUB for UEFI" if uefi
                                                         else "GRUB for BIOS")  # fmt: skip
        assert report["lab"]["firmware"].startswith("uefi (auto: the backup's fstab mounts an "
                                                    "EFI system partition" if uefi else "bios")
        if uefi:
            assert "a GPT" in phases["partition"]["detail"]
            assert "vfat for /boot/efi (UUID 5D2E-8A41)" in phases["partition"]["detail"]
        assert "restored system's own" in phases["bootloader"]["detail"]
        assert phases["rescue boot"]["detail"].startswith("rescue system at ")
        backup = report["backup"]
        assert backup["details"]["boot loader"].startswith("grub")
        assert "onto a blank disk" in backup["details"]["restored"]
        assert report["lab"]["rescue"]["ip"]
        # the RTO runs over the whole procedure: verify to the last check
        assert report["rto"]["measured_s"] >= sum(
            phases[n]["duration_s"] for n in ("rescue boot", "partition", "restore",
                                              "bootloader", "boot"))  # fmt: skip
        console = drill.file("console.log")
        assert "===== rescue system =====" in console
        assert "===== rebuilt system =====" in console
        assert "db login:" in console  # the rebuilt system's own getty on its serial console
        assert_backup_untouched(report)
    # the restic drill added the drill's key on the rebuilt disk, and says so
    [change] = drills["restic"].report["guest_changes"]
    assert (change["path"], change["action"]) == ("/root/.ssh/authorized_keys", "modified")
    assert change["before"]["sha256"] != change["after"]["sha256"]
    assert change["after"]["mode"] == "600"
    assert drills["tar"].report["guest_changes"] == []
    assert "the rescue system added it to the rebuilt disk" in drills["restic"].file(
        "report.html")


def test_unbuildable_backups_fail_before_anything_boots(tmp_path: Path) -> None:
    nokernel = derived(tmp_path / "nokernel.tar", "boot/vmlinuz")
    badfstab = derived(tmp_path / "badfstab.tar", "\0",
                       b"UUID=8f3c2a61-not-a-uuid / ext4 defaults 0 1\n")  # fmt: skip
    for path, said in ((nokernel, "the backup holds no kernel (/boot/vmlinuz-*)"),
                       (badfstab, "fstab line 1 (UUID=8f3c2a61-not-a-uuid / ext4): UUID "
                                  "'8f3c2a61-not-a-uuid' is not one a ext4 file system can be "
                                  "given")):  # fmt: skip
        before = path.stat()
        drill = run_cli(SCENARIO, "--var", f"backup={path}", "--var", f"name=bad-{path.stem}",
                        reports=tmp_path / path.stem)  # fmt: skip
        after = path.stat()
        assert (after.st_mtime_ns, after.st_ctime_ns, after.st_size, after.st_mode) == (
            before.st_mtime_ns, before.st_ctime_ns, before.st_size, before.st_mode)  # fmt: skip
        report = drill.report
        assert drill.exit_code == 1, drill.stderr
        assert report["verdict"] == "FAIL"
        assert said in report["reason"], report["reason"]
        assert report["reason"].startswith("verify")
        names = [p["name"] for p in report["phases"]]
        assert "rescue boot" not in names
        assert "provision" not in names  # nothing created
        path.unlink()
    shutil.rmtree(tmp_path, ignore_errors=True)
