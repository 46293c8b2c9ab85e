"""restore: system, before anything boots: the blank disk's plan from the backup's own fstab
(UUIDs and labels kept, layouts the rescue system can or cannot make), what the backup must
hold to boot, and the scenario keys. Real tar, restic and borg backups of a tiny system tree;
no VM (the VM tests rebuild the demo db server)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.data.compare import compare
from harness.data.manifest import Entry
from harness.data.tree import Found
from harness.drill.baremetal import key_change
from harness.errors import PhaseFailed, ScenarioError
from harness.evidence.model import DataProof
from harness.scenario.loader import load_scenario
from harness.scenario.model import DiskSpec
from harness.sources import open_source
from harness.sources.system import Filesystem, parse_fstab, plan_boot, plan_disk

ROOT_UUID = "8f3c2a61-5d0e-4b7a-9c1f-2e6d4a8b0c15"
GIB = 1024**3
FSTAB = f"""\
# <file system> <mount point> <type> <options> <dump> <pass>
UUID={ROOT_UUID} / ext4 defaults,errors=remount-ro 0 1
LABEL=swap none swap sw 0 0
proc /proc proc defaults 0 0
tmpfs /tmp tmpfs defaults 0 0
nas:/export /mnt/nas nfs defaults 0 0
"""
BOOTABLE = {"boot/vmlinuz-6.1.0-50-cloud-amd64", "boot/initrd.img-6.1.0-50-cloud-amd64",
            "usr/sbin/grub-install", "usr/lib/grub/i386-pc/boot.img", "etc/fstab"}  # fmt: skip


def test_fstab_block_devices_only_with_their_uuid_and_label() -> None:
    entries = parse_fstab(FSTAB)
    assert [(e.line, e.mount, e.fstype, e.uuid, e.label) for e in entries] == [
        (2, "/", "ext4", ROOT_UUID, None), (3, "swap", "swap", None, "swap")]  # fmt: skip


def test_auto_layout_root_and_swap_keep_fstabs_names() -> None:
    plan = plan_disk(parse_fstab(FSTAB), DiskSpec(8 * GIB))
    assert plan.filesystems == (
        Filesystem(1, "/", "ext4", ROOT_UUID, None, ("defaults", "errors=remount-ro")),
        Filesystem(2, "swap", "swap", None, "swap", ("sw",)))  # fmt: skip
    root_sectors = 8 * GIB // 512 - 2048 - GIB // 512
    assert plan.table == (f"label: dos\nstart=2048, size={root_sectors}, type=83, bootable\n"
                          f"start={2048 + root_sectors}, size={GIB // 512}, type=82\n")  # fmt: skip
    assert plan.filesystems[0].mkfs("/dev/vdb1") == ["mkfs.ext4", "-q", "-F", "-U", ROOT_UUID,
                                                     "/dev/vdb1"]  # fmt: skip
    assert plan.filesystems[1].mkfs("/dev/vdb2") == ["mkswap", "-L", "swap", "/dev/vdb2"]


@pytest.mark.parametrize(("line", "said"), [
    (f"UUID={ROOT_UUID} / ext4 defaults 0 1\nUUID=0a1b2c3d-0000-4000-8000-000000000001 /srv "
     "ext4 defaults 0 2", "fstab line 2 (UUID=0a1b2c3d-0000-4000-8000-000000000001 /srv ext4) "
     "needs a partition of its own, and disk.layout auto makes one root partition"),
    ("UUID=not-a-uuid / ext4 defaults 0 1", "UUID 'not-a-uuid' is not one a ext4 file system "
     "can be given (8-4-4-4-12 hex digits)"),
    ("/dev/sda1 / ext4 defaults 0 1", "names its device /dev/sda1: the rebuilt disk is "
     "/dev/vda in the lab"),
    ("/dev/mapper/vg-root / ext4 defaults 0 1", "LVM, RAID and encrypted devices"),
    (f"UUID={ROOT_UUID} / zfs defaults 0 1", "cannot make a zfs file system"),
    ("proc /proc proc defaults 0 0", "mounts no root file system (/)"),
])  # fmt: skip
def test_what_the_auto_layout_cannot_satisfy_fails_at_verify(line: str, said: str) -> None:
    with pytest.raises(PhaseFailed) as info:
        plan_disk(parse_fstab(line), DiskSpec(8 * GIB))
    assert info.value.phase == "verify"
    assert said in str(info.value)


def test_a_uefi_system_gets_a_gpt_with_its_efi_system_partition_first() -> None:
    fstab = parse_fstab(f"UUID={ROOT_UUID} / ext4 defaults 0 1\n"
                        "UUID=3A1F-9C2B /boot/efi vfat umask=0077 0 1\n")  # fmt: skip
    plan = plan_disk(fstab, DiskSpec(8 * GIB))
    esp = plan.esp
    assert esp == Filesystem(1, "/boot/efi", "vfat", "3A1F-9C2B", None, ("umask=0077",))
    assert esp.mkfs("/dev/vdb1") == ["mkfs.vfat", "-i", "3A1F9C2B", "/dev/vdb1"]
    root = 8 * GIB // 512 - 34 - 2048 - 256 * 1024 * 2
    assert plan.table == ("label: gpt\n"
                          "start=2048, size=524288, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\n"
                          f"start=526336, size={root}, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n")
    assert [f.mount for f in plan.mounted] == ["/", "/boot/efi"]
    assert plan_boot(BOOTABLE | {"usr/lib/grub/x86_64-efi/linux.mod"}, "uefi").loader == "grub-efi"
    with pytest.raises(PhaseFailed, match="no boot loader for UEFI"):
        plan_boot(BOOTABLE, "uefi")
    with pytest.raises(PhaseFailed, match="EFI system partition is /dev/vda1, root is /dev/vda2"):
        plan_disk(parse_fstab("/dev/vda1 / ext4 defaults 0 1\n"
                              "UUID=3A1F-9C2B /boot/efi vfat umask=0077 0 1\n"), DiskSpec(GIB))


def test_an_optional_entry_it_cannot_make_is_left_out_and_said() -> None:
    plan = plan_disk(parse_fstab(f"UUID={ROOT_UUID} / ext4 defaults 0 1\n"
                                 "/dev/sdb1 /data ext4 defaults,nofail 0 2\n"), DiskSpec(GIB))
    assert [f.mount for f in plan.filesystems] == ["/"]
    assert "fstab line 2" in plan.skipped[0]
    assert "nofail" in plan.skipped[0]


BIOS_BOOT = "21686148-6449-6E6F-744E-656564454649"
LINUX = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"


def test_a_layout_file_with_partitions_named(tmp_path: Path) -> None:
    dump = tmp_path / "sda.sfdisk"
    dump.write_text("label: gpt\nlabel-id: 5E1F2C4A-0000-4000-8000-00000000AAAA\n"
                    "device: /dev/sda\nunit: sectors\nfirst-lba: 34\nlast-lba: 16777182\n"
                    "sector-size: 512\n\n"
                    f"/dev/sda1 : start=2048, size=2048, type={BIOS_BOOT}\n"
                    f"/dev/sda2 : start=4096, size=1048576, type={LINUX}\n"
                    f"/dev/sda3 : start=1052672, size=8388608, type={LINUX}\n")
    fstab = parse_fstab(f"UUID={ROOT_UUID} / ext4 defaults 0 1\nLABEL=boot /boot ext2 "
                        "defaults 0 2\n")  # fmt: skip
    plan = plan_disk(fstab, DiskSpec(8 * GIB, dump, {"/": 3, "/boot": 2}))
    assert plan.label == "gpt"
    assert "device:" not in plan.table
    assert "last-lba" not in plan.table
    assert "/dev/sda3 : start=1052672" in plan.table
    assert [(f.partition, f.mount) for f in plan.filesystems] == [(2, "/boot"), (3, "/")]
    assert [f.mount for f in plan.mounted] == ["/", "/boot"]  # parents first
    with pytest.raises(PhaseFailed, match="beyond the blank disk's"):
        plan_disk(fstab, DiskSpec(GIB, dump, {"/": 3, "/boot": 2}))
    with pytest.raises(PhaseFailed, match=r"not say which partition of sda\.sfdisk holds /boot"):
        plan_disk(fstab, DiskSpec(8 * GIB, dump, {"/": 3}))
    with pytest.raises(PhaseFailed, match="has no partition 7"):
        plan_disk(fstab, DiskSpec(8 * GIB, dump, {"/": 7, "/boot": 2}))


def test_boot_needs_a_kernel_and_a_boot_loader() -> None:
    assert plan_boot(BOOTABLE).loader == "grub"
    assert plan_boot(BOOTABLE).kernels == ("vmlinuz-6.1.0-50-cloud-amd64",)
    extlinux = {n for n in BOOTABLE if "grub" not in n} | {
        "usr/bin/extlinux", "usr/lib/EXTLINUX/mbr.bin", "boot/extlinux/extlinux.conf"}
    assert plan_boot(extlinux).loader == "extlinux"
    with pytest.raises(PhaseFailed, match="no kernel"):
        plan_boot({n for n in BOOTABLE if "vmlinuz" not in n})
    with pytest.raises(PhaseFailed, match="no boot loader for BIOS"):
        plan_boot({n for n in BOOTABLE if "grub" not in n})
    with pytest.raises(PhaseFailed, match=r"no /boot/extlinux/extlinux\.conf"):
        plan_boot(extlinux - {"boot/extlinux/extlinux.conf"})


# -- real backups of a tiny system tree ----------------------------------------------------


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A system tree (fstab, a kernel, GRUB's files) as a tar made like the README says, a
    restic snapshot and a borg archive of it, and one of it below /mnt/snap (backup.root)."""
    base = tmp_path_factory.mktemp("system")
    tree = base / "tree"
    for name in BOOTABLE:
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text(f"{name}\n")
    (tree / "etc/fstab").write_text(FSTAB)
    subprocess.run(["tar", "-C", str(tree), "-czpf", str(base / "system.tar.gz"), "."],
                   check=True)  # fmt: skip
    snap = base / "snap"
    (snap / "mnt").mkdir(parents=True)
    (snap / "mnt/snap").symlink_to(tree)
    subprocess.run(["tar", "-C", str(snap), "-hczpf", str(base / "snapshot.tar.gz"), "mnt/snap"],
                   check=True)  # fmt: skip
    env = {**os.environ, "RESTIC_PASSWORD": "pw", "BORG_PASSPHRASE": "pw",
           "BORG_BASE_DIR": str(base / "borg-home")}  # fmt: skip
    (base / "pw").write_text("pw\n")
    subprocess.run(["restic", "-q", "-r", str(base / "restic"), "init"], env=env, check=True)
    subprocess.run(["restic", "-q", "-r", str(base / "restic"), "backup", "--host", "srv", "."],
                   env=env, check=True, cwd=tree)  # fmt: skip
    subprocess.run(["borg", "init", "-e", "repokey", str(base / "borg")], env=env,
                   check=True)  # fmt: skip
    subprocess.run(["borg", "create", f"{base / 'borg'}::srv-1", "."], env=env,
                   check=True, cwd=tree)  # fmt: skip
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / "key")],
                   check=True)  # fmt: skip
    (base / "rescue.qcow2").write_bytes(b"")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base / "rescue.qcow2"), "64M"],
                   check=True)  # fmt: skip
    return base


def scenario(folder: Path, backup: str, vm: str = "  disk: {size: 8GiB}\n") -> Path:
    path = folder / f"s{abs(hash(backup + vm))}.yaml"
    path.write_text(f"version: 1\nname: bare\nbackup:\n{backup}  restore: system\n"
                    "targets: {rto: 30m, rpo: 3650d}\n"
                    f"vm:\n{vm}  rescue_image: rescue.qcow2\n"
                    "login: {user: root, key_file: key}\nchecks: []\n")  # fmt: skip
    return path


BACKUPS = {
    "tar": "  kind: tar\n  path: system.tar.gz\n",
    "restic": "  kind: restic\n  repository: restic\n  password_file: pw\n",
    "borg": "  kind: borg\n  repository: borg\n  password_file: pw\n",
    "tar below a root": "  kind: tar\n  path: snapshot.tar.gz\n  root: /mnt/snap\n",
}


@pytest.mark.parametrize("kind", list(BACKUPS))
def test_verify_plans_the_disk_from_the_backups_own_fstab(system: Path, kind: str) -> None:
    loaded = load_scenario(scenario(system, BACKUPS[kind]))
    machine = loaded.primary
    assert machine.vm.rescue_image == system / "rescue.qcow2"
    source = open_source(machine.backup, machine.vm)
    evidence, disk = source.verify()
    assert disk.path == system / "rescue.qcow2"
    assert evidence.details["file systems"] == (f"partition 1: ext4 for / (UUID {ROOT_UUID}); "
                                                "partition 2: swap for swap (label swap)")
    assert evidence.details["boot loader"].startswith("grub")
    assert evidence.details["kernels"] == "vmlinuz-6.1.0-50-cloud-amd64"
    assert "rescue image qcow2" in evidence.image_check
    assert source.extract_args()[:2] == ["--numeric-owner", "--xattrs"]  # type: ignore[attr-defined]


def test_a_backup_without_its_kernel_or_fstab_fails_at_verify(system: Path) -> None:
    tree = system / "tree"
    kernel = tree / "boot/vmlinuz-6.1.0-50-cloud-amd64"
    kernel.rename(system / "kernel")
    try:
        subprocess.run(["tar", "-C", str(tree), "-czpf", str(system / "nokernel.tar.gz"), "."],
                       check=True)  # fmt: skip
    finally:
        (system / "kernel").rename(kernel)
    loaded = load_scenario(scenario(system, "  kind: tar\n  path: nokernel.tar.gz\n"))
    with pytest.raises(PhaseFailed, match=r"the backup holds no kernel \(/boot/vmlinuz-\*\)"):
        open_source(loaded.primary.backup, loaded.primary.vm).verify()
    loaded = load_scenario(scenario(system, "  kind: tar\n  path: snapshot.tar.gz\n"))
    with pytest.raises(PhaseFailed, match="holds no /etc/fstab"):  # its root is /mnt/snap
        open_source(loaded.primary.backup, loaded.primary.vm).verify()


@pytest.mark.parametrize(("backup", "vm", "said"), [
    ("  kind: tar\n  path: system.tar.gz\n", "  memory: 1GiB\n",
     "vm: a whole-system restore needs vm.disk"),
    ("  kind: tar\n  path: system.tar.gz\n  target: /srv\n", "  disk: {size: 8GiB}\n",
     "backup.target: not with restore: system"),
    ("  kind: tar\n  path: system.tar.gz\n", "  disk: {size: 8GiB}\n  image: rescue.qcow2\n",
     "vm.image: a whole-system restore boots a rescue system"),
    ("  kind: tar\n  path: system.tar.gz\n", "  disk: {size: 8GiB}\n  secure_boot: true\n",
     "vm.secure_boot: a whole-system restore rebuilds without Secure Boot"),
    ("  kind: tar\n  path: system.tar.gz\n", "  disk: {size: 8GiB, partitions: {/: 1}}\n",
     "vm.disk.partitions: only with a layout file"),
    ("  kind: tar\n  path: system.tar.gz\n", "  disk: {size: 8GiB, layout: none.sfdisk}\n",
     "vm.disk.layout"),
    ("  kind: file\n  path: system.tar.gz\n  target: /x\n", "  disk: {size: 8GiB}\n",
     "backup.restore: not used by a file backup"),
])  # fmt: skip
def test_bad_system_scenarios_are_refused_with_the_field(
    system: Path, backup: str, vm: str, said: str
) -> None:  # fmt: skip
    with pytest.raises(ScenarioError) as info:
        load_scenario(scenario(system, backup, vm))
    assert any(said in str(p) for p in info.value.problems), info.value.problems


def test_disk_and_rescue_image_belong_to_system_restores(scenario_dir: Path) -> None:
    text = (scenario_dir / "scenario.yaml").read_text()
    path = scenario_dir / "x.yaml"
    path.write_text(text.replace("  vcpus: 1\n", "  vcpus: 1\n  disk: {size: 8GiB}\n"))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert any("vm.disk: only for a whole-system restore" in str(p)
               for p in info.value.problems)  # fmt: skip


def test_the_key_added_on_the_rebuilt_disk_is_a_listed_change() -> None:
    said = ("boot loader: grub-install (GRUB) 2.06\n"
            "key before: /root/.ssh/authorized_keys 600 0 0 100 " + "a" * 64 + "\n"
            "key after: /root/.ssh/authorized_keys 600 0 0 200 " + "b" * 64 + "\n")  # fmt: skip
    change = key_change(said, "db")
    assert change is not None
    assert (change.machine, change.path, change.action) == ("db", "/root/.ssh/authorized_keys",
                                                            "modified")  # fmt: skip
    assert change.before == {"mode": "600", "uid": 0, "gid": 0, "size": 100, "sha256": "a" * 64}
    assert change.after is not None
    assert change.after["size"] == 200
    fresh = key_change("key before: /home/ops/.ssh/authorized_keys\n"
                       "key after: /home/ops/.ssh/authorized_keys 600 1000 1000 81 " + "c" * 64,
                       "db")  # fmt: skip
    assert fresh is not None
    assert (fresh.action, fresh.before) == ("added", None)
    assert key_change("boot loader: extlinux 6.04\n", "db") is None


def test_a_uefi_system_boots_uefi_and_a_bios_one_cannot_be_made_uefi(system: Path) -> None:
    tree = system / "uefi-tree"
    shutil.copytree(system / "tree", tree, symlinks=True)
    (tree / "etc/fstab").write_text(FSTAB + "UUID=3A1F-9C2B /boot/efi vfat umask=0077 0 1\n")
    (tree / "usr/lib/grub/x86_64-efi").mkdir(parents=True)
    (tree / "usr/lib/grub/x86_64-efi/linux.mod").write_text("module\n")
    (tree / "boot/efi").mkdir()
    subprocess.run(["tar", "-C", str(tree), "-czpf", str(system / "uefi.tar.gz"), "."], check=True)
    loaded = load_scenario(scenario(system, "  kind: tar\n  path: uefi.tar.gz\n"))
    source = open_source(loaded.primary.backup, loaded.primary.vm)
    evidence, _ = source.verify()
    assert evidence.details["firmware"] == ("uefi (auto: the backup's fstab mounts an EFI system "
                                            "partition)")  # fmt: skip
    assert evidence.details["boot loader"].startswith("grub-efi")
    assert "partition 1: vfat for /boot/efi (UUID 3A1F-9C2B)" in evidence.details["file systems"]
    loaded = load_scenario(scenario(system, "  kind: tar\n  path: system.tar.gz\n",
                                    "  disk: {size: 8GiB}\n  firmware: uefi\n"))  # fmt: skip
    with pytest.raises(PhaseFailed, match=r"vm\.firmware: uefi, but the backup's /etc/fstab "
                                          "mounts no EFI system partition"):  # fmt: skip
        open_source(loaded.primary.backup, loaded.primary.vm).verify()


def test_files_on_fat_are_proven_by_content_and_size_only() -> None:
    """FAT keeps no owner or mode and times to 2 s: the ESP's files are compared by content and
    size; a file elsewhere with the same differences is changed."""
    digest = "d" * 64
    wrote = [Entry(b"boot/efi/EFI/debian/grubx64.efi", digest, 10, 0o600, 0, 0, "", "", 3 * 10**9),
             Entry(b"etc/hostname", digest, 10, 0o600, 0, 0, "", "", 3 * 10**9)]  # fmt: skip
    seen = Found(10, 0o755, 0, 0, "", "", 4 * 10**9, digest)
    proof = compare(DataProof(machine="db", source="restore stream", root="/",
                              expected_from="the stream"), wrote,
                    {e.path: seen for e in wrote}, coarse=(b"boot/efi/",))  # fmt: skip
    assert proof.files_matching == 1
    assert proof.changed == [{"path": "etc/hostname",
                              "what": ["mode: 0600 → 0755", "mtime: 1970-01-01 00:00:03 → "
                                       "1970-01-01 00:00:04"]}]  # fmt: skip
