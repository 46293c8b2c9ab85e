"""BIOS or UEFI, read from the boot disk before boot: real partition tables made with sfdisk,
read back through qemu-img (read-only) and judged; and the UEFI domain the lab then defines
(OVMF chosen against or for Secure Boot, variables in the lab's own folder)."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness import qemu_img
from harness.lab.firmware import choose, detect
from harness.lab.xml import DomainPlan, domain_xml
from harness.qemu_img import Layer
from harness.sources.identity import identity

TABLES = {
    "gpt-esp": ("label: gpt\nstart=2048, size=204800, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\n"
                "start=206848, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n",
                ("uefi", "GPT with an EFI system partition")),
    "gpt-bios-boot": ("label: gpt\n"
                      "start=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649\n"
                      "start=4096, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n",
                      ("bios", "GPT with a BIOS boot partition and no EFI system partition")),
    "mbr": ("label: dos\nstart=2048, type=83, bootable\n",
            ("bios", "MBR partition table without an EFI system partition")),
    "mbr-esp": ("label: dos\nstart=2048, size=204800, type=ef\nstart=206848, type=83\n",
                ("uefi", "MBR with an EFI system partition (type 0xEF)")),
}  # fmt: skip


@pytest.mark.parametrize("table", sorted(TABLES))
def test_the_partition_table_says_how_the_disk_boots(tmp_path: Path, table: str) -> None:
    script, expected = TABLES[table]
    raw = tmp_path / "disk.raw"
    subprocess.run(["truncate", "-s", "256M", str(raw)], check=True)
    subprocess.run(["sfdisk", "-q", str(raw)], input=script, text=True, check=True)
    image = tmp_path / "disk.qcow2"  # as a backup holds it: through qcow2 and its chain
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(image)], check=True)
    top = tmp_path / "top.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(image),
                    str(top)], check=True)  # fmt: skip
    before = identity(top), identity(image)
    assert detect(qemu_img.head(top, "qcow2")) == expected
    assert (identity(top), identity(image)) == before  # read-only: not even its ctime moved


def test_a_blank_disk_and_a_scenarios_word_decide_without_a_table() -> None:
    assert detect(b"\0" * 17408)[0] == "bios"
    assert choose("uefi", None) == ("uefi", "set in the scenario (vm.firmware)")
    assert choose("auto", b"\0" * 17408)[1].startswith("auto: no partition table")
    # Secure Boot is UEFI's, and the reason says it was the scenario's switch, not the disk
    assert choose("auto", b"\0" * 17408, secure_boot=True) == (
        "uefi", "secure_boot: true, though the disk shows no partition table found: booted as "
        "BIOS")


@pytest.mark.parametrize("secure", [False, True])
def test_a_uefi_domain_asks_ovmf_for_or_against_secure_boot(tmp_path: Path, secure: bool) -> None:
    plan = DomainPlan(
        name="rdrill-x-main", lab_id="x", scenario="s", domain_type="qemu", memory_mib=512,
        vcpus=1, overlay=tmp_path / "main.qcow2", backing=(Layer(tmp_path / "b.qcow2", "qcow2"),),
        network="n", mac="52:54:00:00:00:01", console_log=tmp_path / "c.log",
        firmware="uefi", secure_boot=secure, nvram=tmp_path / "main.VARS.fd",
    )  # fmt: skip
    dom = ET.fromstring(domain_xml(plan))
    os_el = dom.find("os")
    assert os_el is not None
    assert os_el.get("firmware") == "efi"
    assert os_el.find("type").get("machine") == "q35"  # type: ignore[union-attr]
    features = {f.get("name"): f.get("enabled") for f in os_el.findall("firmware/feature")}
    state = "yes" if secure else "no"
    assert features == {"secure-boot": state, "enrolled-keys": state}
    assert os_el.findtext("nvram") == str(tmp_path / "main.VARS.fd")  # the lab's own
    assert (dom.find("features/smm") is not None) is secure
    bios = DomainPlan(**{**plan.__dict__, "firmware": "bios", "secure_boot": False, "nvram": None})
    assert ET.fromstring(domain_xml(bios)).find("os").get("firmware") is None  # type: ignore[union-attr]
