"""``restore-drill find-clean``: the newest restore point that scans clean. Restore points are
walked newest to oldest (restic snapshots or borg archives the scenario's selector takes, or
disk image files given on the command line, by modification time), each scanned as the
scenario's ``scan:`` says, with nothing restored or booted; each point scanned gets its own
report (scenario ``<name>-find-clean``: a clean scan is not a verified restore, and the
scenario's own history says only what its drills showed). The walk stops at the first clean
point."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from harness.batch import Plan, drill_one
from harness.errors import ConfigError
from harness.finished import Finished
from harness.interrupts import Interrupts
from harness.output.events import Event, Sink
from harness.scenario.model import BackupSpec, Machine, Scenario
from harness.sources import open_source
from harness.sources.files import FileLevelSource

SUFFIX = "-find-clean"
INFECTED = "restore point is infected"  # harness.drill.scanning's word for a hit


@dataclass
class Walk:
    """What the walk found: each point scanned (newest first) and the clean one, if any."""

    points: list[tuple[str, Finished]]
    clean: str | None


def restore_points(scenario: Scenario, images: list[Path]) -> list[tuple[str, Scenario]]:
    """Each restore point to scan, newest first, with the scenario pinned to it."""
    machine = scenario.primary
    if machine.scan is None:
        raise ConfigError(f"{scenario.source}: find-clean needs scan: in the scenario (which "
                          "signatures to scan with)")  # fmt: skip
    if len(scenario.machines) > 1:
        raise ConfigError(f"{scenario.source}: find-clean walks one machine's restore points; "
                          "this scenario has several")  # fmt: skip
    spec = machine.backup
    if images:
        if spec.kind != "disk-image":
            raise ConfigError(f"image files are restore points of a disk-image backup; "
                              f"{scenario.source} has a {spec.kind} backup")  # fmt: skip
        missing = [str(i) for i in images if not i.is_file()]
        if missing:
            raise ConfigError(f"no such image file: {', '.join(missing)}")
        newest = sorted(images, key=lambda i: i.stat().st_mtime, reverse=True)
        return [(str(i), _pinned(scenario, machine, replace(spec, path=i.resolve(),
                                                            sha256=None)))
                for i in newest]  # fmt: skip
    if spec.kind == "disk-image":
        return [(str(spec.path), _pinned(scenario, machine, spec))]
    source = open_source(spec, machine.vm)
    assert isinstance(source, FileLevelSource)  # noqa: S101 - every other kind is one
    return [(point or str(spec.path), _pinned(scenario, machine, source.pinned(point)))
            for point in source.restore_points()]  # fmt: skip


def _pinned(scenario: Scenario, machine: Machine, spec: BackupSpec) -> Scenario:
    return replace(scenario, name=scenario.name + SUFFIX,
                   machines=(replace(machine, backup=spec),))  # fmt: skip


def walk(points: list[tuple[str, Scenario]], plan: Plan, sink: Sink,
         interrupts: Interrupts) -> Walk:  # fmt: skip
    """Scan each point until one is clean (or one could not be scanned: the walk stops
    there, since an older point found clean would not be the newest clean one)."""
    found = Walk([], None)
    plan = replace(plan, options=replace(plan.options, scan_only=True))
    for n, (point, scenario) in enumerate(points, 1):
        sink(Event("batch", scenario.name, f"restore point {n} of {len(points)}: {point}"))
        done = drill_one(scenario, plan, sink, interrupts)
        found.points.append((point, done))
        if done.verdict == "PASS":
            found.clean = point
            break
        if done.verdict != "FAIL" or INFECTED not in done.reason:
            break  # not scanned (an error, an interrupt): nothing older can be called newest
    return found
