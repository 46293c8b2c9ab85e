"""The scan's read-only view of a disk image (partitions, the system's fstab) and the reaping
of what a killed scan left: real sfdisk on real image files, real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from harness.processes import process_start
from harness.scan.isolated import reap, run_isolated
from harness.scan.view import Part, _fstab, _names, partitions
from harness.scenario.model import ScanSpec


def test_an_fstab_spec_names_its_partition_every_way_a_server_writes_it() -> None:
    part = Part(disk=0, number=2, offset=1 << 20, size=1 << 30, partuuid="0badc0de-02")
    probe = {"TYPE": "ext4", "UUID": "4E2A-11", "LABEL": "home"}
    for spec in ("UUID=4e2a-11", "LABEL=home", "PARTUUID=0BADC0DE-02", "/dev/vda2", "/dev/sda2",
                 "/dev/xvda2"):  # fmt: skip
        assert _names(spec, part, probe), spec
    for spec in ("UUID=other", "LABEL=Home", "PARTUUID=0badc0de-01", "/dev/vdb2", "/dev/vda1",
                 "/dev/mapper/vg-home", "tmpfs"):  # fmt: skip
        assert not _names(spec, part, probe), spec
    second_disk = Part(disk=1, number=0, offset=0, size=1 << 30)
    assert _names("/dev/vdb", second_disk, {})


def test_the_fstab_gives_each_mount_point_but_root_parents_first(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "fstab").write_text(
        "# static file system information\n"
        "UUID=r / ext4 errors=remount-ro 0 1\n"
        "UUID=h /home/shared\\040files ext4 defaults 0 2\n"
        "LABEL=boot /boot ext2 defaults 0 2\n"
        "/dev/vda3 none swap sw 0 0\n"
        "  \n"
        "UUID=x /home ext4 defaults 0 2\n"
    )
    assert _fstab(tmp_path) == [("LABEL=boot", "/boot"), ("UUID=x", "/home"),
                                ("UUID=h", "/home/shared files")]  # fmt: skip
    assert _fstab(tmp_path / "nothing") == []


def test_partitions_of_an_mbr_disk_and_of_a_disk_without_a_table(tmp_path: Path) -> None:
    disk = tmp_path / "disk.raw"
    disk.write_bytes(bytes(32 << 20))
    subprocess.run(["sfdisk", "-q", str(disk)], input="label: dos\nlabel-id: 0x0badc0de\n"
                   "start=2048, size=20480, type=83\nstart=22528, type=83\n", text=True,
                   check=True)  # fmt: skip
    first, second = partitions(disk, 0)
    assert (first.number, first.offset, first.size, first.partuuid) == (
        1, 2048 * 512, 20480 * 512, "0badc0de-01")
    assert (second.number, second.offset, second.partuuid) == (2, 22528 * 512, "0badc0de-02")
    assert second.label() == "disk 1 partition 2"
    bare = tmp_path / "bare.raw"
    bare.write_bytes(bytes(4 << 20))
    [whole] = partitions(bare, 1)
    assert (whole.number, whole.offset, whole.size, whole.label()) == (0, 0, 4 << 20, "disk 2")


def _fake_daemon(folder: Path) -> subprocess.Popen[bytes]:
    """A process that looks like the scan's qemu-storage-daemon serving ``folder``."""
    return subprocess.Popen(["bash", "-c", 'exec -a qemu-storage-daemon "$0" -c '
                             '"import time; time.sleep(60)" --pidfile "$1"', sys.executable,
                             str(folder / "qsd.pid")])  # fmt: skip


def test_reap_stops_a_killed_scans_daemon_and_removes_its_folder(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    left = tmp_path / "scans" / "0badc0de"
    left.mkdir(parents=True)
    (left / "owner.json").write_text(json.dumps({"pid": dead.pid, "start": "1"}))
    daemon = _fake_daemon(left)
    (left / "qsd.pid").write_text(f"{daemon.pid}\n")
    running = tmp_path / "scans" / "c0ffee00"
    running.mkdir()
    me = {"pid": os.getpid(), "start": process_start(os.getpid())}
    (running / "owner.json").write_text(json.dumps(me))
    time.sleep(0.2)  # the daemon's command line is in place
    removed = reap(tmp_path)
    assert removed == [f"qemu-storage-daemon {daemon.pid}", f"scan folder {left}"]
    assert daemon.wait(timeout=10) == -9
    assert not left.exists()
    assert running.exists()  # its drill still runs


def test_reap_never_kills_a_process_the_pid_file_no_longer_names(tmp_path: Path) -> None:
    left = tmp_path / "scans" / "0badc0de"
    left.mkdir(parents=True)
    (left / "owner.json").write_text(json.dumps({"pid": 0, "start": None}))
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    (left / "qsd.pid").write_text(f"{stranger.pid}\n")  # its pid was reused by another
    try:
        assert reap(tmp_path) == [f"scan folder {left}"]
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def _ext4(folder: Path, label: str, files: dict[str, bytes], mib: int = 8) -> Path:
    """An ext4 file system image holding ``files`` (mkfs.ext4 -d: no mount, no root)."""
    tree = folder / f"{label}-tree"
    for name, content in files.items():
        path = tree / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if content.startswith(b"->"):
            path.symlink_to(content[2:].decode())
        else:
            path.write_bytes(content)
    tree.mkdir(exist_ok=True)
    image = folder / f"{label}.ext4"
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", label, "-d", str(tree), str(image),
                    f"{mib}M"], check=True)  # fmt: skip
    return image


def test_a_disk_image_is_scanned_as_its_system_mounts_it(tmp_path: Path) -> None:
    """A real four-partition disk, read through qemu-storage-daemon and loop mounts in the
    scan worker's namespace: the root, /home where fstab puts it, a mount point that is a
    symbolic link (never followed out of the view) and a file system fstab does not name
    (both said, not scanned); the hit's path is as in the restored system."""
    fstab = (b"LABEL=root / ext4 defaults 0 1\nLABEL=home /home ext4 defaults 0 2\n"
             b"LABEL=linked /linked/tmp ext4 defaults 0 2\n")  # fmt: skip
    parts = [
        _ext4(tmp_path, "root", {"etc/fstab": fstab, "etc/hostname": b"web\n",
                                 "home/.keep": b"", "linked": b"->/"}),
        _ext4(tmp_path, "home", {"ada/README_RESTORE.txt": b"YOUR FILES HAVE BEEN ENCRYPTED\n"}),
        _ext4(tmp_path, "linked", {"x": b"x\n"}),
        _ext4(tmp_path, "orphan", {"y": b"y\n"}),
    ]  # fmt: skip
    disk = tmp_path / "disk.raw"
    disk.write_bytes(bytes(40 << 20))
    layout = "label: dos\n" + "".join(f"start={2048 + i * 18432}, size=16384, type=83\n"
                                      for i in range(4))  # fmt: skip
    subprocess.run(["sfdisk", "-q", str(disk)], input=layout, text=True, check=True)
    for i, part in enumerate(parts):
        subprocess.run(["dd", f"if={part}", f"of={disk}", "bs=512", f"seek={2048 + i * 18432}",
                        "conv=notrunc", "status=none"], check=True)  # fmt: skip
    rule = tmp_path / "ransom.yar"
    rule.write_text('rule ransom_note { strings: $a = "FILES HAVE BEEN ENCRYPTED" '
                    "condition: $a }\n")  # fmt: skip
    before = disk.stat()
    spec = ScanSpec(yara=(rule,), timeout_s=120)
    report = run_isolated(spec, tmp_path / "state", lambda: None, disks=[(str(disk), "raw")])
    assert report["mounted"] == ["disk 1 partition 1 (ext4) at /",
                                 "disk 1 partition 2 (ext4) at /home"]  # fmt: skip
    assert report["not_scanned"] == [
        "disk 1 partition 3 (ext4): its mount point /linked/tmp is not a folder of the restored "
        "system (a symbolic link, or missing)",
        "disk 1 partition 4 (ext4): not in the system's /etc/fstab"]
    assert [(h["path"], h["signature"]) for h in report["hits"]] == [
        ("/home/ada/README_RESTORE.txt", "ransom_note")]
    assert report["files_scanned"] == 3  # fstab, hostname, the note (/home hides .keep)
    after = disk.stat()
    assert (after.st_mtime_ns, after.st_ctime_ns, after.st_size) == (
        before.st_mtime_ns, before.st_ctime_ns, before.st_size)  # read, never written
    assert list((tmp_path / "state" / "scans").iterdir()) == []  # nothing left
