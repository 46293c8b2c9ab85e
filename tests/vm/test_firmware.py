"""A UEFI server, booted as it is: the demo web backup rebuilt with GPT, an EFI System
Partition and GRUB for x86_64-efi (no BIOS boot loader at all) PASSes under software
emulation with vm.firmware auto, which reads the partition table before boot; the lab's
UEFI variables are its own and go with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.vm.conftest import (
    ROOT,
    Drill,
    Together,
    assert_backup_untouched,
    drills_together,
    leftovers,
)
from tests.vm.images import uefi_web


@pytest.fixture(scope="module")
def booted(tmp_path_factory: pytest.TempPathFactory, module_scratch: Path) -> Together[Drill]:
    """Both UEFI drills, side by side."""
    backup = str(uefi_web())
    runs = {
        "uefi": (str(ROOT / "scenarios" / "demo-web.yaml"), "--var", f"backup={backup}",
                 "--var", "name=demo-web-uefi"),
        "secure boot": (str(secure_boot_scenario(module_scratch)), "--var", f"backup={backup}",
                        "--var", "name=demo-web-secure"),
    }  # fmt: skip
    return drills_together(runs, tmp_path_factory.mktemp("firmware"))


def test_a_uefi_server_boots_with_uefi_found_before_boot(booted: Together[Drill]) -> None:
    drill = booted["uefi"]
    assert drill.exit_code == 0, drill.stderr
    report = drill.report
    assert report["lab"]["firmware"] == "uefi (auto: GPT with an EFI system partition)"
    assert all(c["passed"] for c in report["checks"])
    assert_backup_untouched(report)
    assert leftovers() == []  # the lab's NVRAM file went with its folder
    assert not list(Path("/var/lib/libvirt/qemu/nvram").glob("rdrill-*"))  # never libvirt's
    assert "Firmware" in drill.file("report.html")


def secure_boot_scenario(scratch: Path) -> Path:
    text = (ROOT / "scenarios" / "demo-web.yaml").read_text()
    text = text.replace("  boot_timeout: 5m\n", "  boot_timeout: 60s\n  secure_boot: true\n")
    scenario = scratch / "secure.yaml"
    scenario.write_text(text)
    (scratch / "tests").symlink_to(ROOT / "scenarios" / "tests")  # its testinfra file
    return scenario


def test_secure_boot_is_really_on_an_unsigned_boot_loader_is_refused(
    booted: Together[Drill],
) -> None:
    """``secure_boot: true`` boots OVMF's Secure Boot build with Microsoft's keys enrolled: the
    demo's own GRUB is unsigned, so the firmware refuses it and the drill FAILs at boot, the
    refusal in the console log. (A signed shim + GRUB would boot; this proves the switch.)"""
    drill = booted["secure boot"]
    assert drill.exit_code == 1, drill.stderr
    report = drill.report
    assert report["lab"]["firmware"] == ("uefi with Secure Boot (auto: GPT with an EFI system "
                                         "partition)")
    # What the NIC sent, not a guess ("the guest did not bring up its network", said before):
    # the firmware refused the loader, so no system ever asked for an address (OVMF's own
    # network stack sends a few IPv6 frames, and the reason counts them).
    assert report["reason"].startswith("boot: no DHCP lease within 60s: ")
    assert "from the guest's NIC" in report["reason"]
    assert "DHCP request" not in report["reason"]
    console = drill.file("console.log")
    assert "Access Denied" in console or "Security Violation" in console, console[-2000:]
    assert [s["when"] for s in report["screens"]] == ["boot timed out"]  # the refusal on screen
    assert_backup_untouched(report)
    assert leftovers() == []
