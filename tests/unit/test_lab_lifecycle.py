"""Provision, teardown and reaping against libvirt's built-in test:///default driver."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from harness import qemu_img
from harness.errors import InfraError
from harness.lab.hypervisor import Hypervisor
from harness.lab.lifecycle import Lab, list_labs, reap

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


def provision(hv: Hypervisor, backup: Path, root: Path) -> Lab:
    lab = Lab(hv, "unit", root)
    lab.provision(backup, qemu_img.info(backup), 256, 1, "qemu")
    lab.start()
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
    assert names(hv) >= {made.domain_name, made.network_name}
    info = qemu_img.info(made.overlay)
    assert info.backing_file == str(backup)
    assert "<forward" not in made.network_xml
    removed = lab.teardown()
    assert f"domain {made.domain_name}" in removed
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
    lab.keep("10.213.1.10", 22, "root", tmp_path / "key", "ssh-ed25519 AAAA")
    assert reap(hv, include_kept=False, root=root) == []
    removed = reap(hv, include_kept=True, root=root)
    assert f"domain rdrill-{lab.lab_id}-vm" in removed
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


def test_unreachable_libvirt_is_an_infra_error_with_a_hint() -> None:
    with pytest.raises(InfraError, match="is libvirtd running"):
        Hypervisor("qemu+unix:///system?socket=/nonexistent/sock")
