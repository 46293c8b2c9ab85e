"""A server of several disks: each image attached in production order through an overlay of
its own (vda, vdb, …), each verified, hashed and proven unchanged in the evidence; a change
to any disk is a change to the backup."""

from __future__ import annotations

import re
import subprocess
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.errors import PhaseFailed, ScenarioError
from harness.lab.xml import DomainPlan, domain_xml
from harness.qemu_img import Layer
from harness.scenario.loader import load_scenario
from harness.sources import Proof, open_source
from harness.sources.disk_image import DiskImageSource


def scenario(folder: Path, backup: str) -> Path:
    for name in ("os.qcow2", "data.qcow2"):
        if not (folder / name).exists():
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(folder / name), "16M"],
                           check=True)  # fmt: skip
    (folder / "key").write_text("")
    (folder / "s.yaml").write_text(f"version: 1\nname: unit-disks\nbackup:\n{backup}"
                                   "targets: {rto: 15m, rpo: 3650d}\n"
                                   "login: {user: root, key_file: key}\n")  # fmt: skip
    return folder / "s.yaml"


TWO = "  disks:\n    - {path: os.qcow2}\n    - {path: data.qcow2, format: qcow2}\n"


def source(folder: Path, backup: str = TWO) -> DiskImageSource:
    machine = load_scenario(scenario(folder, backup)).primary
    made = open_source(machine.backup, machine.vm)
    assert isinstance(made, DiskImageSource)
    return made


def test_each_disk_is_verified_hashed_and_proven_in_order(tmp_path: Path) -> None:
    src = source(tmp_path)
    evidence, disk = src.verify()
    assert disk.path == tmp_path / "os.qcow2"
    assert [d.path for d in disk.extra] == [tmp_path / "data.qcow2"]
    assert disk.files == [tmp_path / "os.qcow2", tmp_path / "data.qcow2"]
    [data] = evidence.disks
    assert data.path == str(tmp_path / "data.qcow2")
    src.hash(evidence, threading.Event())
    assert len(data.sha256) == 64
    src.confirm_unchanged(evidence, Proof())
    assert evidence.unchanged is True
    assert data.unchanged is True


def test_a_change_to_the_second_disk_is_a_change_to_the_backup(tmp_path: Path) -> None:
    src = source(tmp_path)
    evidence, _ = src.verify()
    src.hash(evidence, threading.Event())
    with (tmp_path / "data.qcow2").open("r+b") as fh:
        fh.seek(0, 2)
        fh.write(b"\0" * 512)
    src.confirm_unchanged(evidence, Proof())
    assert evidence.disks[0].unchanged is False
    assert evidence.unchanged is False


def test_a_damaged_second_disk_fails_verify_naming_it(tmp_path: Path) -> None:
    scenario(tmp_path, TWO)
    (tmp_path / "data.qcow2").write_bytes(b"not an image")
    with pytest.raises(PhaseFailed, match=r"disk 2 \(.*data.qcow2\): qemu-img info rejected"):
        source(tmp_path).verify()


@pytest.mark.parametrize(("backup", "words"), [
    ("  path: os.qcow2\n" + TWO, "needs 'path' (one disk) or 'disks' (several), not both"),
    ("  format: qcow2\n" + TWO, "give each disk its own format"),
    ("  disks:\n    - {path: missing.qcow2}\n", "no such file"),
])  # fmt: skip
def test_disk_list_mistakes_are_named(tmp_path: Path, backup: str, words: str) -> None:
    with pytest.raises(ScenarioError, match=re.escape(words)):
        load_scenario(scenario(tmp_path, backup))


def test_the_domain_attaches_each_disk_through_its_own_overlay(tmp_path: Path) -> None:
    plan = DomainPlan(
        name="rdrill-x-main", lab_id="x", scenario="s", domain_type="qemu", memory_mib=512,
        vcpus=1, overlay=tmp_path / "main.qcow2",
        backing=(Layer(tmp_path / "os.qcow2", "qcow2"),), network="n", mac="52:54:00:00:00:01",
        console_log=tmp_path / "c.log",
        more_disks=((tmp_path / "main.disk2.qcow2", (Layer(tmp_path / "data.raw", "raw"),)),),
    )  # fmt: skip
    disks = ET.fromstring(domain_xml(plan)).findall("./devices/disk")
    assert [d.find("target").get("dev") for d in disks] == ["vda", "vdb"]  # type: ignore[union-attr]
    second = disks[1]
    assert second.find("source").get("file") == str(tmp_path / "main.disk2.qcow2")  # type: ignore[union-attr]
    store = second.find("backingStore")
    assert store is not None
    assert store.find("source").get("file") == str(tmp_path / "data.raw")  # type: ignore[union-attr]
    assert store.find("source/seclabel").get("relabel") == "no"  # type: ignore[union-attr]
    assert store.find("backingStore") is not None  # the chain ends: libvirt probes nothing
