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
