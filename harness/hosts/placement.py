"""Which host runs which drill: simple and deterministic, no scheduler beyond this.

At the start of a run each host is asked once for its free memory (libvirt's figure); a host
that does not answer is left out, said in one line. A host's *budget* for drills is that
figure minus its reserve, capped by its ``memory``. A drill (all of its VMs: a lab's isolated
network lives on one host) goes to the host with a free slot and room in its budget that is
least loaded (running drills per slot), the inventory's order breaking ties. A drill no
answering host could hold even when idle is refused with its reason; one that fits waits
for a slot or for memory another drill frees.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from harness.errors import DrillError
from harness.hosts.inventory import HostSpec
from harness.kinds import REGISTRY
from harness.scenario.model import Scenario


@dataclass
class HostLoad:
    """One host as placement sees it."""

    host: HostSpec
    budget_mib: int
    running: int = 0
    used_mib: int = 0
    down: str = ""  # why it is left out

    def room(self, need_mib: int) -> bool:
        return self.running < self.host.slots and self.used_mib + need_mib <= self.budget_mib


class Placement:
    """The run's hosts and what each runs; ``free_mib`` asks one host for its free memory
    (raising :class:`DrillError` if it does not answer)."""

    def __init__(self, hosts: Sequence[HostSpec], free_mib: Callable[[HostSpec], int],
                 say: Callable[[str], None]) -> None:  # fmt: skip
        self.loads: list[HostLoad] = []
        for host in hosts:
            try:
                free = free_mib(host)
            except DrillError as exc:
                self.loads.append(HostLoad(host, 0, down=str(exc)))
                say(f"host {host.name} ({host.uri}) does not answer, left out of this run: {exc}")
                continue
            budget = free - host.reserve_mib
            if host.memory_mib is not None:
                budget = min(budget, host.memory_mib)
            self.loads.append(HostLoad(host, max(budget, 0)))

    def _eligible(self, local_only: str) -> list[HostLoad]:
        return [h for h in self.loads if not h.down and not (local_only and h.host.remote)]

    def never(self, need_mib: int, local_only: str = "") -> str:
        """Why no host could ever run a drill that needs ``need_mib`` (and, if
        ``local_only`` says why, this machine's own libvirt); "" if one could."""
        eligible = self._eligible(local_only)
        if any(need_mib <= h.budget_mib for h in eligible):
            return ""
        if not eligible:
            if local_only and any(not h.down for h in self.loads):
                return (f"it needs this machine's own libvirt ({local_only}), and the "
                        "inventory has no answering local host (qemu:///system)")
            return "no host of the inventory answers"
        budgets = ", ".join(f"{h.host.name} {h.budget_mib} MiB" for h in eligible)
        return f"it needs {need_mib} MiB and no host has that much for drills ({budgets})"

    def place(self, need_mib: int, local_only: str = "") -> HostSpec | None:
        """The host that takes the drill now (its slot and memory taken), or None: wait."""
        free = [h for h in self._eligible(local_only) if h.room(need_mib)]
        if not free:
            return None
        best = min(free, key=lambda h: (h.running / h.host.slots, self.loads.index(h)))
        best.running += 1
        best.used_mib += need_mib
        return best.host

    def release(self, host: HostSpec, need_mib: int) -> None:
        """A drill on ``host`` ended: its slot and memory are free again."""
        for load in self.loads:
            if load.host == host:
                load.running -= 1
                load.used_mib -= need_mib
                return

    def waiting_for(self, need_mib: int, local_only: str = "") -> str:
        """What a drill that cannot be placed now waits for, in words."""
        parts = [f"{h.host.name}: {h.running}/{h.host.slots} slots, "
                 f"{max(h.budget_mib - h.used_mib, 0)} of {h.budget_mib} MiB free"
                 for h in self._eligible(local_only)]  # fmt: skip
        return f"waits for a host with a free slot and {need_mib} MiB ({'; '.join(parts)})"


def needs_local(scenario: Scenario) -> str:
    """What in a scenario a lab on a remote host cannot do yet (it needs this machine's own
    libvirt), in words; "" if it may run anywhere."""
    needs = []
    machines = scenario.machines
    if any(m.vm.disk is not None for m in machines):
        needs.append("a whole-system restore")
    if any(m.backup.kind == "pgbackrest" for m in machines):
        needs.append("a pgBackRest repository shared into the guest")
    if scenario.network.subnets:
        needs.append("a lab that replicates production subnets")
    if any(m.scan is not None and not REGISTRY[m.backup.kind].restored for m in machines):
        needs.append("a malware scan of a disk image (read on this machine)")
    return ", ".join(needs)
