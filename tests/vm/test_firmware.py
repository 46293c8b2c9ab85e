"""A UEFI server, booted as it is: the demo web backup rebuilt with GPT, an EFI System
Partition and GRUB for x86_64-efi (no BIOS boot loader at all) PASSes under software
emulation with vm.firmware auto, which reads the partition table before boot; the lab's
UEFI variables are its own and go with it."""

from __future__ import annotations

from pathlib import Path

from tests.vm.conftest import ROOT, assert_backup_untouched, leftovers, run_cli
from tests.vm.images import uefi_web


def test_a_uefi_server_boots_with_uefi_found_before_boot(reports: Path) -> None:
    backup = uefi_web()
    drill = run_cli(str(ROOT / "scenarios" / "demo-web.yaml"), "--var", f"backup={backup}",
                    "--var", "name=demo-web-uefi", reports=reports)  # fmt: skip
    assert drill.exit_code == 0, drill.stderr
    report = drill.report
    assert report["lab"]["firmware"] == "uefi (auto: GPT with an EFI system partition)"
    assert all(c["passed"] for c in report["checks"])
    assert_backup_untouched(report)
    assert leftovers() == []  # the lab's NVRAM file went with its folder
    assert not list(Path("/var/lib/libvirt/qemu/nvram").glob("rdrill-*"))  # never libvirt's
    assert "Firmware" in drill.file("report.html")


def test_secure_boot_is_really_on_an_unsigned_boot_loader_is_refused(
    reports: Path, scratch: Path
) -> None:
    """``secure_boot: true`` boots OVMF's Secure Boot build with Microsoft's keys enrolled: the
    demo's own GRUB is unsigned, so the firmware refuses it and the drill FAILs at boot, the
    refusal in the console log. (A signed shim + GRUB would boot; this proves the switch.)"""
    text = (ROOT / "scenarios" / "demo-web.yaml").read_text()
    text = text.replace("  boot_timeout: 5m\n", "  boot_timeout: 60s\n  secure_boot: true\n")
    scenario = scratch / "secure.yaml"
    scenario.write_text(text)
    (scratch / "tests").symlink_to(ROOT / "scenarios" / "tests")  # its testinfra file
    drill = run_cli(str(scenario), "--var", f"backup={uefi_web()}", "--var",
                    "name=demo-web-secure", reports=reports)  # fmt: skip
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
