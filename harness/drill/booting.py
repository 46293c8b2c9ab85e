"""Phases boot, ssh, settle (and a whole-system restore's rescue boot, partition and boot
loader): each machine powered on once the machines it depends on are ready, reached, and
restored into where its backup is restored."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from harness.drill import screens
from harness.drill.baremetal import bootloader, key_change, partition
from harness.drill.checking import ask_ahead
from harness.drill.context import Drill
from harness.drill.machines import Guest, start_machines
from harness.drill.restoring import recover_database, restore_files
from harness.durations import format_duration
from harness.errors import PhaseFailed, PhaseTimeout
from harness.lab import netns
from harness.lab.lifecycle import (
    LabVm,
    bridge_name,
    guard_applies,
)
from harness.lab.sniff import Watch
from harness.remote.commands import can_listen, run_step
from harness.remote.reach import wait_for_address
from harness.remote.shell import as_user
from harness.remote.ssh import (
    Target,
    guest_socket,
    public_key_line,
    wait_for_ssh,
    wait_until_settled,
)
from harness.sources.files import FileLevelSource
from harness.sources.pgbackrest import PgBackRestSource


def start(d: Drill) -> None:
    """Power on each machine once the machines it depends on are ready (see
    :mod:`.machines`); the first failure decides the verdict."""
    start_machines(
        d.guests,
        lambda g, c: boot(d, g, c),
        lambda g, c: ready(d, g, c),
        d.interrupts,
        lambda message: d.clock.say("note", message),
    )


def boot(d: Drill, guest: Guest, check: Callable[[], None]) -> None:
    assert d.lab is not None  # noqa: S101 - provisioned before any boot
    assert d.hv is not None  # noqa: S101
    assert guest.vm is not None  # noqa: S101
    vm, limit = guest.vm, guest.machine.vm.boot_timeout_s
    hv, name = d.hv, f"boot{guest.label}"
    if vm.rescue is not None:
        _rebuild(d, guest, check)
    with d.clock.phase(name) as phase:
        watch = _watch(d, vm)
        try:
            d.lab.start(vm)
            d.powered_on += 1
            seen = watch.stop if watch else (lambda: "")
            if d.namespace and vm.ip:
                port = guest.machine.login.port
                d.clock.say(
                    "note",
                    f"{name}: VM powered on, waiting up to "
                    f"{format_duration(limit)} for {vm.ip} to answer "
                    f"on port {port}",
                )
                wait_for_address(
                    d.namespace,
                    vm.ip,
                    port,
                    limit,
                    check,
                    lambda: hv.is_running(vm.domain_name),
                    lambda: _unanswered(guest, seen()),
                    name,
                )
                guest.ip = vm.ip
            else:
                d.clock.say(
                    "note",
                    f"{name}: VM powered on, waiting up to "
                    f"{format_duration(limit)} for its DHCP lease",
                )
                guest.ip = hv.wait_for_lease(vm.domain_name, vm.mac, limit, check, seen)
        except PhaseTimeout:
            _screen(d, guest, "boot timed out")
            raise
        finally:
            if watch:
                watch.stop()
        guest.facts["ip"] = phase.detail = guest.ip


def _reach(d: Drill, guest: Guest, check: Callable[[], None]) -> None:
    """ssh, then settle: the machine answers, and its boot has finished."""
    clock, label, machine = d.clock, guest.label, guest.machine
    with clock.phase(f"ssh{label}") as phase:
        login = machine.login
        guest.target = Target(
            guest.ip, login.port, login.user, login.key_file, login.password, d.namespace, d.jump()
        )
        guest.client, key = wait_for_ssh(guest.target, login.timeout_s, check)
        guest.host_key = key
        guest.facts["host_key"] = {"type": key.type, "fingerprint": key.fingerprint}
        phase.detail = f"{key.type} {key.fingerprint}"
    with clock.phase(f"settle{label}") as phase:
        if not _restored_after_settle(guest):
            guest.known = ask_ahead(d, guest)
        phase.detail = wait_until_settled(guest.client, machine.vm.settle_timeout_s, check)
        guest.facts["system_state"] = phase.detail


def _restored_after_settle(guest: Guest) -> bool:
    """Whether :func:`ready` changes the guest after settle: a restore or a step (the two
    kept in step: a check's facts asked at settle must still be true when it runs)."""
    source = guest.source
    return (
        isinstance(source, PgBackRestSource)
        or (isinstance(source, FileLevelSource) and source.system is None)
        or bool(guest.machine.restore_steps)
    )


def _screen(d: Drill, guest: Guest, when: str) -> None:
    if guest.vm is not None:
        screens.take(d, guest.vm.domain_name, _who(d, guest), when)


def _who(d: Drill, guest: Guest) -> str:
    return guest.machine.name if len(d.guests) > 1 else ""


def _rebuild(d: Drill, guest: Guest, check: Callable[[], None]) -> None:
    """restore: system: the rescue system boots beside the blank disk, partitions it,
    restores every file, installs the restored system's own boot loader, and is powered
    off; the rebuilt disk then boots alone (:meth:`_boot`). Each a phase of the recovery."""
    assert d.lab is not None  # noqa: S101 - provisioned
    assert d.hv is not None  # noqa: S101
    vm, source = guest.vm, guest.source
    assert vm is not None  # noqa: S101
    assert vm.rescue is not None  # noqa: S101 - only called for one
    assert isinstance(source, FileLevelSource)  # noqa: S101 - restore: system is
    assert source.system is not None  # noqa: S101 - planned at verify
    rescue, label, machine = vm.rescue, guest.label, guest.machine
    login, limit = machine.login, machine.backup.restore_timeout_s
    with d.clock.phase(f"rescue boot{label}") as phase:
        d.lab.start(vm, rescue=True)
        d.powered_on += 1
        d.clock.say(
            "note",
            f"{phase.name}: rescue system powered on, waiting up to "
            f"{format_duration(machine.vm.boot_timeout_s)} for its "
            "DHCP lease",
        )
        ip = d.hv.wait_for_lease(vm.domain_name, rescue.mac, machine.vm.boot_timeout_s, check)
        target = Target(ip, 22, "root", login.key_file, None, d.namespace)
        client, key = wait_for_ssh(target, login.timeout_s, check)
        guest.client = client
        guest.facts["rescue"] = {
            "ip": ip,
            "mac": rescue.mac,
            "image": str(guest.disk.path if guest.disk else ""),
            "host_key": {"type": key.type, "fingerprint": key.fingerprint},
        }
        phase.detail = f"rescue system at {ip}, {key.type} {key.fingerprint}"
    disk, loader = source.system
    with d.clock.phase(f"partition{label}") as phase:
        phase.detail = partition(client, disk, phase.name, limit, check)
    # The bytes skip SSH's encryption, which the rescue system pays in emulated instructions
    # under TCG (6 MB/s against 90 MB/s; docs/decisions.md), where it has perl (ours has).
    link = partial(guest_socket, target) if can_listen(client, check) else None
    if link is None:
        d.clock.say("note", f"restore{label}: the rescue system has no perl with "
                            "IO::Socket::INET: the files go through SSH")  # fmt: skip
    restore_files(d, guest, source, check, link)
    with d.clock.phase(f"bootloader{label}") as phase:
        inject = (login.user, public_key_line(login.key_file)) if login.inject_key else None
        phase.detail, phase.output = bootloader(client, loader, phase.name, limit, check, inject)
        change = key_change(phase.output, machine.name) if inject else None
        if change is not None:
            d.result.guest_changes.append(change)
    client.close()
    guest.client = None
    d.lab.power_off(vm)  # the rebuilt disk is unmounted and flushed


def _watch(d: Drill, vm: LabVm) -> Watch | None:
    """Watch what the guest's NIC sends while it boots (for a failure's reason): on the
    lab side of a replicated lab, else on the lab bridge; not where there is no bridge
    here (another libvirt driver) or no right to watch."""
    lab = d.lab
    if lab is None or not guard_applies(d.options.uri):
        return None
    iface = netns.lab_end(lab.lab_id) if d.namespace else bridge_name(lab.lab_id)
    try:
        return Watch(d.namespace, iface, vm.mac)
    except OSError:
        return None


def _unanswered(guest: Guest, seen: str) -> str:
    """What was seen, and what the guest's own configuration says, for a boot that never
    answered in a replicated lab."""
    address = guest.facts.get("address", {})
    iface = address.get("interface")
    if seen.startswith("no frame at all") and iface:
        return (
            f"{seen}: the guest puts {address.get('cidr')} on {iface} "
            f"({address.get('found')}), and no interface of that name seems to exist "
            "in the lab, which gives each machine one virtio NIC (named eth0, ens3 "
            "or enp1s0 by the guest, depending on its naming scheme)"
        )
    return seen


def ready(d: Drill, guest: Guest, check: Callable[[], None]) -> None:
    """ssh → settle → restore → steps: the machine is ready for its dependents."""
    clock, label, machine = d.clock, guest.label, guest.machine
    try:
        _reach(d, guest, check)
    except PhaseFailed as exc:  # what the screen shows of a system that cannot be reached
        ended = "timed out" if isinstance(exc, PhaseTimeout) else "failed"
        _screen(d, guest, f"{exc.phase.split()[0]} {ended}")
        raise
    _screen(d, guest, "end of boot")  # settled: a login prompt, not the boot loader's screen
    source = guest.source
    if isinstance(source, PgBackRestSource):
        recover_database(d, guest, source, check)
    elif isinstance(source, FileLevelSource) and source.system is None:
        restore_files(d, guest, source, check)
    for step in machine.restore_steps:
        with clock.phase(f"step{label}: {step.name}") as phase:
            phase.output = run_step(
                guest.client, phase.name, as_user(step.run, step.user), step.timeout_s, check
            )
            phase.detail = "exit 0"
