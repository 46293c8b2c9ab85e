"""Phases prepare, network, provision and prepare guest: libvirt on the lab's host and what an
earlier drill left there, each machine's address, the lab itself, the drill's key in the
lab copies that ask for it. Drill work: network and prepare guest are not counted in the RTO."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

from harness.drill.context import Drill
from harness.drill.machines import Guest
from harness.errors import PhaseFailed
from harness.guest.inject import inject_key
from harness.guest.network import read_config
from harness.lab import accel
from harness.lab.addressing import Addressing, MachineNet, plan
from harness.lab.host import RemoteHost, lab_host
from harness.lab.hypervisor import Hypervisor
from harness.lab.lifecycle import (
    ExtraDisk,
    Lab,
    VmDisk,
    guard_applies,
    reap,
    state_root,
)
from harness.remote.ssh import public_key_line
from harness.sources.pgbackrest import PgBackRestSource


def prepare(d: Drill) -> str:
    """libvirt on the lab's host, what an earlier drill left there, the accelerator."""
    scenario, clock, result = d.scenario, d.clock, d.result
    with clock.phase("prepare") as phase:
        d.hv = hv = Hypervisor(d.options.uri, d.options.libvirt_timeout_s)
        d.host = host = lab_host(hv, d.options.host, state_root() / "labs")
        for removed in reap(hv, include_kept=False, host=host):
            clock.say("note", f"cleanup: removed {removed} left by an earlier drill")
        requested = d.options.accelerator or scenario.primary.vm.accelerator
        if isinstance(host, RemoteHost):
            facts = hv.host_facts()
            result.environment.update(libvirt=facts["libvirt"], qemu=facts["qemu"])
            result.environment["lab_host"] = _host_facts(host, facts)
            chosen, phase.detail = accel.choose_remote(
                requested, host.spec.accelerator, hv.kvm_supported()
            )
        else:
            result.environment.update(libvirt=hv.version(), qemu=accel.qemu_version())
            chosen, phase.detail = accel.choose(requested, state_root())
        result.environment.update(accelerator=chosen, accelerator_reason=phase.detail)
    return chosen


def network(d: Drill, tcg: bool) -> Addressing:
    """Each machine's address: as the scenario states it, else as its boot disk's own
    network configuration says (read read-only before boot), else DHCP. Drill work, not
    recovery: left out of the measured recovery time like key injection."""
    spec = d.scenario.network
    with d.clock.phase("network") as phase:
        # each machine's disks read at once (one libguestfs appliance each, a few at a time)
        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="network") as pool:
            machines = list(pool.map(lambda g: _machine_network(d, g, tcg), d.guests))
        addressing = plan(machines, [(s.cidr, s.gateway) for s in spec.subnets])
        if addressing.replicated and any(g.machine.vm.disk for g in d.guests):
            raise PhaseFailed(
                "network",
                "a whole-system restore needs the lab's DHCP for "
                "its rescue system, and this lab replicates "
                "production subnets (no DHCP there)",
            )
        for guest in d.guests:
            guest.facts["address"] = asdict(addressing.of(guest.machine.name))
        phase.detail = "; ".join(
            (f"{m.machine}: " if len(addressing.machines) > 1 else "")
            + (f"{m.cidr}, " if m.cidr else "")
            + m.found
            for m in addressing.machines
        ) + (
            "; lab replicates "
            + ", ".join(f"{s.cidr} (lab side {s.gateway})" for s in addressing.subnets)
            if addressing.replicated
            else ""
        )
    d.result.preparation_s += phase.duration_s
    return addressing


def _machine_network(d: Drill, guest: Guest, tcg: bool) -> MachineNet:
    """What the scenario states of one machine's address, or what its disks say."""
    machine, disk, spec = guest.machine, guest.disk, d.scenario.network
    assert disk is not None  # noqa: S101 - verified before
    # libvirt's test driver boots nothing; a remote host's guests boot (the backup is
    # read here for its network configuration, as for a lab on this machine)
    boots = guard_applies(d.options.uri) or bool(d.options.host and d.options.host.remote)
    if machine.vm.disk is not None:
        return MachineNet(
            machine.name,
            None,
            None,
            "a whole-system restore: the rescue system's lease, then the rebuilt system's",
        )
    if machine.address or not spec.detect or not boots:
        why = (
            ""
            if machine.address
            else "network.detect is off"
            if boots
            else f"nothing boots under {d.options.uri}"
        )
        return MachineNet(machine.name, machine.address, None, why)
    disks = [(disk.path, disk.image.format), *((x.path, x.image.format) for x in disk.extra)]
    reading = read_config(disks, disk.files, tcg, state_root() / "cache" / "network")
    if reading.config is not None:
        guest.facts["network_config"] = reading.config.summary()
    guest.mounts = reading.mounts
    return MachineNet(machine.name, None, reading.config, reading.why)


def provision(d: Drill, chosen: str) -> None:
    """The lab on its host: overlays, the isolated network, each machine's domain."""
    scenario, clock, result = d.scenario, d.clock, d.result
    addressing, hv = d.addressing, d.hv
    assert addressing is not None  # noqa: S101 - planned by network()
    assert hv is not None  # noqa: S101 - connected by prepare()
    with clock.phase("provision") as phase:
        d.lab = lab = Lab(hv, scenario.name, host=d.host)
        disks = [_vm_disk(g) for g in d.guests]
        made = lab.provision(disks, "kvm" if chosen == "kvm" else "qemu", addressing)
        d.namespace = made.namespace or None
        for guest, vm in zip(d.guests, made.vms, strict=True):
            guest.vm = vm
            guest.facts.update(
                name=guest.machine.name,
                domain=vm.domain_name,
                mac=vm.mac,
                depends_on=list(guest.machine.depends_on),
                hostnames=list(guest.machine.hostnames),
            )
        first = made.vms[0]
        result.lab = {
            "lab_id": lab.lab_id,
            "network": made.network_name,
            "network_xml": made.network_xml,
            "network_xml_sha256": hashlib.sha256(made.network_xml.encode()).hexdigest(),
            "domain": first.domain_name,
            "mac": first.mac,
            "accelerator": chosen,
            "gateway": made.gateway,
            "host_guard": made.host_guard,
            "security_driver": made.security_driver,
            "firmware": d.primary_guest().facts.get("firmware", ""),
            "addressing": _addressing_facts(addressing, made.namespace, made.namespace_guard),
        }
        phase.detail = f"lab {lab.lab_id}, {len(made.vms)} VM(s), {chosen}"


def prepare_guests(d: Drill, tcg: bool) -> None:
    """The drill's key into each lab copy that asks for it (``login.inject_key``). Timed
    as a phase of its own and left out of the measured recovery time: it is work the
    drill does to reach the restored system, not work of the recovery."""
    guests = [
        g
        for g in d.guests
        if g.machine.login.inject_key and g.vm is not None and g.vm.rescue is None
    ]  # a rebuilt disk gets it from the rescue system
    if not guests:
        return
    with d.clock.phase("prepare guest") as phase:
        said: list[str] = []
        for guest in guests:
            assert guest.vm is not None  # noqa: S101 - filtered above
            assert guest.disk is not None  # noqa: S101 - verified before
            assert d.lab is not None  # noqa: S101 - provisioned before
            login, disk = guest.machine.login, guest.disk
            edit = d.lab.host.editable(d.lab.lab_id, guest.vm.overlay, disk.path, disk.image)
            with edit as overlay:
                changes, notes = inject_key(
                    guest.machine.name,
                    overlay,
                    login.user,
                    public_key_line(login.key_file),
                    create_user=login.create_user,
                    tcg=tcg,
                    mounts=guest.mounts,
                )
            d.result.guest_changes += changes
            said += [f"{guest.machine.name}: {n}" if guest.label else n for n in notes]
        phase.detail = "; ".join(
            [
                f"{len(d.result.guest_changes)} file(s) added or changed in the lab copy "
                "(the overlay; the backup is opened read-only); not counted in the RTO",
                *said,
            ]
        )
    d.result.preparation_s += phase.duration_s


def _vm_disk(guest: Guest) -> VmDisk:
    """What the lab boots for one machine (its verified disk), and how."""
    disk, machine = guest.disk, guest.machine
    assert disk is not None  # noqa: S101 - verified before
    more = tuple(ExtraDisk(d.path, d.image, d.chain) for d in disk.extra)
    shares = guest.source.shares() if isinstance(guest.source, PgBackRestSource) else ()
    blank = machine.vm.disk.size_bytes if machine.vm.disk else 0
    key = public_key_line(machine.login.key_file) if blank else ""
    return VmDisk(
        machine.name,
        disk.path,
        disk.image,
        machine.vm.memory_mib,
        machine.vm.vcpus,
        machine.hostnames,
        disk.chain,
        more,
        guest.firmware,
        machine.vm.secure_boot,
        shares,
        blank,
        key,
    )


def _addressing_facts(addressing: Addressing, namespace: str, guard: str) -> dict[str, Any]:
    """The report's account of the lab network: replicated subnets or plain DHCP, and how
    each machine's address was found."""
    return {
        "mode": "replicated" if addressing.replicated else "dhcp",
        "namespace": namespace,
        "namespace_guard": guard,
        "subnets": [asdict(s) for s in addressing.subnets],
        "nameservers": [
            {"address": ip, "found": f"named in {src}"} for ip, src in addressing.nameservers
        ],
        "machines": [asdict(m) for m in addressing.machines],
    }


def _host_facts(host: RemoteHost, facts: dict[str, str]) -> dict[str, str]:
    """The remote host that ran the lab, for the report."""
    key = host.session.host_key
    return {
        "name": host.name,
        "uri": host.spec.uri,
        "ssh": host.jump.describe(),
        "host_key": f"{key.type} {key.fingerprint}",
        **facts,
        "cpu_model": host.cpu_model(),
    }
