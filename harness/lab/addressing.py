"""Which address each lab machine has, and which production subnets the lab replicates.

Pure: from what the scenario states and what each boot disk's own configuration says
(:mod:`harness.guest.netconf`), decide every machine's address and how it was found, and the
subnets the lab's side must hold (with the gateway address it takes there). A lab where no
machine has a static address is a plain DHCP lab, as before; one where any has is a
*replicated* lab (:mod:`harness.lab.netns`), where DHCP machines get a fixed lease in the
first replicated subnet.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from harness.errors import PhaseFailed
from harness.guest.netconf import NetworkConfig

PHASE = "network"


@dataclass(frozen=True)
class MachineNet:
    """What the plan is given of one machine."""

    name: str
    stated: str | None  # ``address:`` in the scenario
    config: NetworkConfig | None  # as its boot disk says (None: not read)
    why_unread: str = ""  # why ``config`` is None


@dataclass(frozen=True)
class MachineAddress:
    """One machine's lab address and how it was found."""

    machine: str
    ip: str | None  # None: a DHCP lease in a plain lab (known only after boot)
    cidr: str | None
    interface: str | None  # the interface the guest puts it on (None: not known)
    found: str  # how the address was found, in words
    dhcp: bool = False
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabSubnet:
    """A production subnet held by the lab's side, at ``gateway``."""

    cidr: str
    gateway: str
    found: str  # where the gateway address came from

    @property
    def lab_address(self) -> str:
        """The lab side's address with the subnet's prefix: ``192.168.10.1/24``."""
        return f"{self.gateway}/{ipaddress.IPv4Network(self.cidr).prefixlen}"


@dataclass(frozen=True)
class Addressing:
    machines: tuple[MachineAddress, ...]
    subnets: tuple[LabSubnet, ...] = ()
    #: the resolvers the static machines ask, ``(address, where it is named)``: a lab that
    #: serves names answers there too, so a server keeps its own resolver configuration
    nameservers: tuple[tuple[str, str], ...] = ()

    @property
    def replicated(self) -> bool:
        return bool(self.subnets)

    def of(self, machine: str) -> MachineAddress:
        return next(m for m in self.machines if m.machine == machine)


def plan(machines: Sequence[MachineNet],
         stated: Sequence[tuple[str, str | None]] = ()) -> Addressing:  # fmt: skip
    """Every machine's address; the subnets to replicate (none: a plain DHCP lab).
    ``stated``: the scenario's subnets, ``(cidr, gateway or None)``."""
    found = [_machine(m) for m in machines]
    subnets = _subnets(found, machines, stated)
    if not subnets:
        return Addressing(tuple(found))
    used = {m.ip for m in found if m.ip} | {s.gateway for s in subnets}
    first = ipaddress.IPv4Network(subnets[0].cidr)
    free = (str(h) for h in reversed(list(first.hosts())) if str(h) not in used)
    leased = []
    for m in found:
        if m.ip is not None:
            leased.append(m)
            continue
        ip = next(free, None)  # DHCP: a fixed lease in the first subnet, known in advance
        if ip is None:
            raise PhaseFailed(PHASE, f"no free address left in {first} for {m.machine}")
        leased.append(MachineAddress(m.machine, ip, f"{ip}/{first.prefixlen}", m.interface,
                                     f"{m.found}: the lab's DHCP gives it {ip}", True,
                                     m.notes))  # fmt: skip
    taken = {m.ip for m in leased} | {s.gateway for s in subnets}
    resolvers = {n: src for m in machines if m.config is not None
                 for n, src in reversed(m.config.nameservers)
                 if ipaddress.ip_address(n).version == 4 and n not in taken}  # fmt: skip
    return Addressing(tuple(leased), tuple(subnets), tuple(resolvers.items()))


def _machine(m: MachineNet) -> MachineAddress:
    if m.stated:
        stated = ipaddress.IPv4Interface(m.stated)
        return MachineAddress(m.name, str(stated.ip), str(stated), None, "stated in the scenario")
    if m.config is None:
        return MachineAddress(m.name, None, None, None,
                              f"DHCP ({m.why_unread or 'configuration not read'})", True)
    config = m.config
    notes = [f"IPv6 {a.cidr} on {a.interface} ({a.source}): detected, not replicated (the "
             "lab is IPv4)" for a in config.ipv6]  # fmt: skip
    if not config.ipv4:
        if config.unsupported and not config.dhcp:
            raise PhaseFailed(PHASE, f"{m.name}: the restored system's network is "
                              + "; ".join(config.unsupported)
                              + ": it cannot come up in the lab (state address: and "
                              "network.subnets if the server has a plain interface too)")
        notes += [f"unsupported, left out: {u}" for u in config.unsupported]
        how = ("DHCP, " + "; ".join(config.dhcp) if config.dhcp
               else "DHCP assumed: no network configuration found on its disk")  # fmt: skip
        return MachineAddress(m.name, None, None, None, how, True, tuple(notes))
    first = config.ipv4[0]
    for other in config.ipv4[1:]:
        where = "also" if other.interface == first.interface else "not in the lab (one NIC)"
        notes.append(f"{other.cidr} on {other.interface}: {where}")
    notes += [f"unsupported, left out: {u}" for u in config.unsupported]
    return MachineAddress(m.name, first.ip, first.cidr, first.interface,
                          f"static, on {first.interface} in {first.source}",
                          notes=tuple(notes))  # fmt: skip


def _subnets(found: Sequence[MachineAddress], machines: Sequence[MachineNet],
             stated: Sequence[tuple[str, str | None]]) -> list[LabSubnet]:  # fmt: skip
    statics = [m for m in found if m.ip is not None]
    if not statics and not stated:
        return []
    gateways = _configured_gateways(machines)
    nets: list[tuple[ipaddress.IPv4Network, str | None, str]] = [
        (ipaddress.IPv4Network(cidr), gateway, "stated in the scenario")
        for cidr, gateway in stated]
    for m in statics:
        assert m.cidr is not None  # noqa: S101 - a static address has its prefix
        net = ipaddress.IPv4Interface(m.cidr).network
        if not any(net.overlaps(n) for n, _, _ in nets):
            nets.append((net, None, ""))
    used = {m.ip for m in statics}
    out = []
    for net, stated_gateway, stated_how in nets:
        gateway, how = stated_gateway, stated_how
        if gateway is None:
            gateway, how = next(((g, f"the gateway in {src}") for g, src in gateways
                                 if ipaddress.IPv4Address(g) in net), (None, ""))  # fmt: skip
        if gateway is None:
            gateway = next(str(h) for h in net.hosts() if str(h) not in used)
            how = "no gateway configured: the first free address"
        if gateway in used:
            who = next(m.machine for m in statics if m.ip == gateway)
            raise PhaseFailed(PHASE, f"the lab's side of {net} would take {gateway}, which is "
                              f"{who}'s address: state another gateway in network.subnets")
        out.append(LabSubnet(str(net), gateway, how))
    return out


def _configured_gateways(machines: Sequence[MachineNet]) -> list[tuple[str, str]]:
    return [(a.gateway, a.source) for m in machines if m.config is not None
            for a in m.config.ipv4 if a.gateway]  # fmt: skip
