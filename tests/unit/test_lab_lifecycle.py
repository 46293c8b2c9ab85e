"""Provision, teardown and reaping against libvirt's built-in test:///default driver."""

from __future__ import annotations

import errno
import json
import subprocess
from pathlib import Path

import pytest

from harness import qemu_img
from harness.errors import InfraError
from harness.lab import share
from harness.lab.hypervisor import Hypervisor, LabObject
from harness.lab.lifecycle import KeptVm, Lab, VmDisk, list_labs, reap
from harness.lab.share import Share, mounts_under

URI = "test:///default"


@pytest.fixture
def hv() -> Hypervisor:
    return Hypervisor(URI)


@pytest.fixture
def backup(tmp_path: Path) -> Path:
    path = tmp_path / "backup.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True)
    path.chmod(0o640)
    return path


def provision(hv: Hypervisor, backup: Path, root: Path, machines: tuple[str, ...] = ("main",)
              ) -> Lab:  # fmt: skip
    lab = Lab(hv, "unit", root)
    made = lab.provision([VmDisk(m, backup, qemu_img.info(backup), 256, 1) for m in machines],
                         "qemu")  # fmt: skip
    for vm in made.vms:
        lab.start(vm)
    return lab


def names(hv: Hypervisor) -> set[str]:
    return {o.name for o in hv.lab_objects()}


def test_provision_then_teardown_removes_everything(
    hv: Hypervisor, backup: Path, tmp_path: Path
) -> None:
    before = backup.stat()
    lab = provision(hv, backup, tmp_path / "state")
    made = lab.provisioned
    assert made is not None
    [vm] = made.vms
    assert names(hv) >= {vm.domain_name, made.network_name}
    info = qemu_img.info(vm.overlay)
    assert info.backing_file == str(backup)
    assert "<forward" not in made.network_xml
    assert vm.ip is None  # its address comes from DHCP
    removed = lab.teardown()
    assert f"domain {vm.domain_name}" in removed
    assert f"network {made.network_name}" in removed
    assert not lab.dir.exists()
    assert lab.teardown() == []  # idempotent
    after = backup.stat()
    assert (after.st_mode, after.st_uid, after.st_ctime_ns) == (
        before.st_mode,
        before.st_uid,
        before.st_ctime_ns,
    )


def test_reap_spares_live_drills_and_removes_dead_ones(
    hv: Hypervisor, backup: Path, tmp_path: Path
) -> None:
    root = tmp_path / "state"
    live = provision(hv, backup, root)
    dead = provision(hv, backup, root)
    record = json.loads((dead.dir / "lab.json").read_text())
    record["pid"], record["pid_start"] = 999999, "1"  # as after a kill -9
    (dead.dir / "lab.json").write_text(json.dumps(record))
    removed = reap(hv, include_kept=False, root=root)
    assert any(dead.lab_id in r for r in removed)
    assert not any(live.lab_id in r for r in removed)
    assert [r.lab_id for r in list_labs(root)] == [live.lab_id]
    live.teardown()


def test_kept_labs_survive_runs_but_not_cleanup(
    hv: Hypervisor, backup: Path, tmp_path: Path
) -> None:
    root = tmp_path / "state"
    lab = provision(hv, backup, root)
    lab.keep([KeptVm("main", "10.213.1.10", 22, "root", tmp_path / "key", "ssh-ed25519 AAAA")])
    assert reap(hv, include_kept=False, root=root) == []
    removed = reap(hv, include_kept=True, root=root)
    assert f"domain rdrill-{lab.lab_id}-main" in removed
    assert names(hv) == set()


def test_stray_libvirt_objects_without_a_folder_are_reaped(
    hv: Hypervisor, backup: Path, tmp_path: Path
) -> None:
    root = tmp_path / "state"
    lab = provision(hv, backup, root)
    subprocess.run(["rm", "-rf", str(lab.dir)], check=True)
    removed = reap(hv, include_kept=False, root=root)
    assert f"network rdrill-{lab.lab_id}" in removed
    assert names(hv) == set()


def test_a_lab_made_while_another_drill_reaps_is_spared(
    hv: Hypervisor, backup: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Six drills starting together: one reaps while another provisions. Whatever object the
    reaper sees, it also sees that object's record, so it never takes a live drill's network."""
    root = tmp_path / "state"
    list_objects = hv.lab_objects
    racing: list[Lab] = []

    def provision_then_list() -> list[LabObject]:
        if not racing:
            racing.append(provision(hv, backup, root))  # another drill, just in time
        return list_objects()

    monkeypatch.setattr(hv, "lab_objects", provision_then_list)
    assert reap(hv, include_kept=False, root=root) == []
    [lab] = racing
    assert names(hv) == {f"rdrill-{lab.lab_id}", f"rdrill-{lab.lab_id}-main"}
    lab.teardown()


def test_unreachable_libvirt_is_an_infra_error_with_a_hint() -> None:
    with pytest.raises(InfraError, match="is libvirtd running"):
        Hypervisor("qemu+unix:///system?socket=/nonexistent/sock")


def test_several_vms_share_one_network_with_fixed_addresses_and_lab_only_names(
    hv: Hypervisor, backup: Path, tmp_path: Path
) -> None:
    lab = provision(hv, backup, tmp_path / "state", ("db", "web"))
    made = lab.provisioned
    assert made is not None
    db, web = made.vms
    assert (db.domain_name, web.domain_name) == (f"rdrill-{lab.lab_id}-db",
                                                 f"rdrill-{lab.lab_id}-web")  # fmt: skip
    assert db.ip is not None
    assert db.ip.endswith(".10")
    assert web.ip is not None
    assert web.ip.endswith(".11")
    assert db.overlay != web.overlay
    xml = made.network_xml.replace("'", '"')  # as libvirt gives it back
    assert f'<host mac="{db.mac}" name="db" ip="{db.ip}"' in xml
    assert f'<host ip="{web.ip}">' in xml
    assert "<hostname>web</hostname>" in xml
    assert "<forward" not in xml
    assert names(hv) >= {db.domain_name, web.domain_name, made.network_name}
    removed = lab.teardown()
    assert {f"domain {db.domain_name}", f"domain {web.domain_name}"} <= set(removed)


def test_a_shared_folder_is_a_read_only_view_and_a_killed_drills_share_is_reaped(
    hv: Hypervisor, backup: Path, tmp_path: Path
) -> None:
    """A pgBackRest repository owned by another user, mode 0640: the lab's view of it is
    readable by anyone and refuses writes (EROFS), virtiofsd serves it, and after a kill -9
    a later run stops virtiofsd, unmounts the view and removes the folder; the repository
    keeps every file's mode, owner and ctime."""
    repo = tmp_path / "repo"
    (repo / "backup").mkdir(parents=True)
    info = repo / "backup" / "backup.info"
    info.write_text("[db]\n")
    for path in (repo, repo / "backup"):
        path.chmod(0o750)
    info.chmod(0o640)
    subprocess.run(["chown", "-R", "nobody:nogroup", str(repo)], check=True)
    before = {p: p.stat() for p in (repo, repo / "backup", info)}
    root = tmp_path / "state"
    lab = Lab(hv, "unit", root)
    made = lab.provision([VmDisk("db", backup, qemu_img.info(backup), 256, 1,
                                 shares=(Share("rdrill-pgbackrest", repo),))], "qemu")  # fmt: skip
    [vm] = made.vms
    view = lab.dir / "share-db-rdrill-pgbackrest"
    socket = lab.dir / "vfs1.sock"
    assert f'<source socket="{socket}" />' in vm.domain_xml
    assert '<target dir="rdrill-pgbackrest" />' in vm.domain_xml
    assert '<access mode="shared" />' in vm.domain_xml  # virtiofs needs shared memory
    assert (view / "backup" / "backup.info").stat().st_mode & 0o777 == 0o444
    assert (view / "backup").stat().st_mode & 0o777 == 0o555
    with pytest.raises(OSError, match="Read-only file system") as refused:
        (view / "backup" / "written").write_text("x")
    assert refused.value.errno == errno.EROFS
    [pid] = json.loads((lab.dir / "lab.json").read_text())["share_pids"]
    assert b"virtiofsd" in Path(f"/proc/{pid}/cmdline").read_bytes()
    lab.start(vm)

    record = json.loads((lab.dir / "lab.json").read_text())
    record["pid"], record["pid_start"] = 999999, "1"  # as after a kill -9
    (lab.dir / "lab.json").write_text(json.dumps(record))
    orphan = share._children.pop(pid)  # a later run did not start it: found by its pid
    removed = reap(hv, include_kept=False, root=root)
    assert orphan.wait(timeout=10) == -9
    assert f"virtiofsd {pid}" in removed
    assert "share view share-db-rdrill-pgbackrest" in removed
    assert not lab.dir.exists()
    assert not mounts_under(root)
    for path, was in before.items():
        now = path.stat()
        assert (now.st_mode, now.st_uid, now.st_gid, now.st_ctime_ns) == (
            was.st_mode, was.st_uid, was.st_gid, was.st_ctime_ns)  # fmt: skip
    assert info.read_text() == "[db]\n"


def test_a_whole_system_restore_boots_its_rescue_system_then_the_rebuilt_disk_alone(
    hv: Hypervisor, backup: Path, tmp_path: Path
) -> None:
    """The rescue system (an overlay of its image, the blank disk second, the drill's key in
    its SMBIOS strings, a MAC of its own) and then the same domain from the blank disk alone,
    on the machine's MAC, with a VGA adapter (GRUB hangs without one) and its own console log;
    the blank disk goes with the lab."""
    lab = Lab(hv, "unit", tmp_path)
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDrill drill@host"
    made = lab.provision([VmDisk("main", backup, qemu_img.info(backup), 256, 1,
                                 blank_bytes=8 << 30, rescue_key=key)], "qemu")  # fmt: skip
    [vm] = made.vms
    assert vm.rescue is not None
    blank = lab.dir / "main.rebuilt.qcow2"
    info = qemu_img.info(blank)
    assert (info.format, info.virtual_size, info.backing_file) == ("qcow2", 8 << 30, None)
    rescue = vm.rescue.domain_xml
    assert f"<entry>rdrill-authorized-key={key}</entry>" in rescue
    assert '<smbios mode="sysinfo" />' in rescue
    assert rescue.index(str(lab.dir / "main.qcow2")) < rescue.index(str(blank))  # vda, vdb
    assert f'<mac address="{vm.rescue.mac}" />' in rescue
    assert vm.rescue.mac != vm.mac
    assert "main.rescue.console.log" in rescue
    assert "<video>" in rescue  # every lab VM has one: its screen for the report
    rebuilt = vm.domain_xml
    assert str(blank) in rebuilt
    assert "main.qcow2" not in rebuilt  # the rescue system's overlay
    assert str(backup) not in rebuilt  # nor the rescue image
    assert f'<mac address="{vm.mac}" />' in rebuilt
    assert "rdrill-authorized-key" not in rebuilt
    assert '<model type="vga" />' in rebuilt
    assert "main.console.log" in rebuilt
    lab.start(vm, rescue=True)
    lab.power_off(vm)
    lab.start(vm)
    lab.teardown()
    assert not lab.dir.exists()
    assert names(hv) == set()


def test_a_rebuilt_machine_beside_a_disk_image_machine_keeps_its_reserved_address(
    hv: Hypervisor, backup: Path, tmp_path: Path
) -> None:
    """In a lab of several machines, the rebuilt system boots on the MAC its address and names
    are reserved for; its rescue system takes a lease from the pool, on a MAC of its own."""
    lab = Lab(hv, "unit", tmp_path)
    info = qemu_img.info(backup)
    made = lab.provision([VmDisk("db", backup, info, 256, 1, blank_bytes=1 << 30,
                                 rescue_key="ssh-ed25519 AAAA drill"),
                          VmDisk("web", backup, info, 256, 1)], "qemu")  # fmt: skip
    db, web = made.vms
    assert db.rescue is not None
    assert web.rescue is None
    assert f"<host mac='{db.mac}' name='db' ip='{db.ip}'/>" in made.network_xml
    assert db.rescue.mac not in made.network_xml
    assert "db.rebuilt.qcow2" in db.domain_xml
    assert "web.rebuilt.qcow2" not in web.domain_xml
    lab.teardown()
