"""Phase verify: each machine's backup checked before anything is created (readable by QEMU,
sound, BIOS or UEFI, its manifests read); the backup tools' own integrity checks; the
hashing that runs beside the boot."""

from __future__ import annotations

from harness import qemu_img
from harness.drill.context import Drill
from harness.drill.dataproof import read_manifests
from harness.drill.machines import Guest
from harness.drill.proof import start_hashing
from harness.errors import PhaseFailed
from harness.lab import firmware
from harness.lab.access import unreadable
from harness.sources import BootDisk
from harness.sources.files import FileLevelSource


def verify(d: Drill) -> None:
    """Each machine's backup: readable, sound, what to boot and how; the report's
    backup evidence. Its warnings are said."""
    clock, result = d.clock, d.result
    with clock.phase("verify") as phase:
        details = []
        for guest in d.guests:
            guest.evidence, guest.disk = guest.source.verify()
            check = guest.evidence.image_check
            if not isinstance(guest.source, FileLevelSource):
                check = f"{guest.disk.image.format}, {check}"
            details.append(f"{guest.machine.name}: {check}" if guest.label else check)
            disk = guest.disk
            closed = unreadable(disk.files, d.options.uri)
            if closed:
                raise PhaseFailed("verify", "; ".join(closed))
            _firmware(guest, disk)
            guest.expected = read_manifests(guest.machine.expect)
        result.backup = d.primary_guest().evidence
        phase.detail = "; ".join(details)
    for guest in d.guests:
        assert guest.evidence is not None  # noqa: S101 - set just above
        for warning in guest.evidence.warnings:
            clock.say("note", f"warning{guest.label}: {warning}")


def start_hashing_all(d: Drill) -> None:
    """Each backup hashed in a thread of its own, beside the boot."""
    clock, result = d.clock, d.result
    for guest in d.guests:
        assert guest.evidence is not None  # noqa: S101 - verified before
        guest.hasher = start_hashing(
            guest.source,
            guest.evidence,
            result,
            clock,
            d.hash_errors,
            d.stop_hashing,
            f"hash{guest.label}",
        )


def integrity(d: Drill) -> None:
    """Each backup tool's own check where the scenario asks (``backup.integrity``): drill
    work before boot, timed as a phase of its own and not counted in the RTO."""
    guests = [g for g in d.guests if g.machine.backup.integrity is not None]
    if not guests:
        return
    with d.clock.phase("integrity") as phase:
        said = []
        for guest in guests:
            assert isinstance(guest.source, FileLevelSource)  # noqa: S101 - the loader
            assert guest.evidence is not None  # noqa: S101 - verified before
            found = guest.source.check_integrity()
            guest.evidence.details["integrity check"] = found
            said.append(f"{guest.machine.name}: {found}" if guest.label else found)
        phase.detail = "; ".join(said)
    d.result.preparation_s += phase.duration_s


def _firmware(guest: Guest, disk: BootDisk) -> None:
    """BIOS or UEFI, as the scenario says or as the boot disk's partition table shows."""
    spec, source = guest.machine.vm, guest.source
    if isinstance(source, FileLevelSource) and source.system is not None:  # the rebuilt disk
        assert guest.evidence is not None  # noqa: S101 - verified before
        guest.firmware = source.system[1].firmware
        guest.facts["firmware"] = guest.evidence.details["firmware"]  # "uefi (why)"
        return
    head = qemu_img.head(disk.path, disk.image.format) if spec.firmware == "auto" else None
    guest.firmware, why = firmware.choose(spec.firmware, head, spec.secure_boot)
    secure = " with Secure Boot" if spec.secure_boot else ""
    guest.facts["firmware"] = f"{guest.firmware}{secure} ({why})"
