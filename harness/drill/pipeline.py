"""The drill's pipeline: verify → prepare → network → provision → boot → ssh → settle → restore →
steps → checks → testinfra → isolation → verdict, always torn down.

The *measured recovery time* runs from the start of the drill until every check has run:
the moment the service is verified (or found broken). One drill is one boundary: whatever
goes wrong inside it ends this drill with a result, never the run.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import platform
import socket
import sys
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import asdict, dataclass
from typing import Any

from harness import __version__, qemu_img
from harness.checks.declarative import Connector, run_check
from harness.checks.isolation import host_listener, host_targets, lab_host_targets, probe_egress
from harness.checks.session import testinfra_host
from harness.checks.testfiles import run_testfiles
from harness.data.stream import StreamHasher, placement
from harness.drill.baremetal import bootloader, key_change, partition
from harness.drill.clock import Clock, utc_now
from harness.drill.dataproof import prove, prove_stream, read_manifests, stream_not_proven
from harness.drill.machines import Guest, join_polling, start_machines
from harness.drill.proof import Stop, prove_unchanged, start_hashing
from harness.drill.recovery import recover, restore
from harness.drill.verdict import bug_reason, judge, tally
from harness.durations import format_duration
from harness.errors import Aborted, DrillError, ExitCode, PhaseFailed
from harness.evidence.model import CheckResult, RunResult, Verdict
from harness.guest.inject import inject_key
from harness.guest.network import read_config
from harness.hosts.inventory import HostSpec
from harness.interrupts import Interrupts
from harness.lab import accel, firmware, netns
from harness.lab.access import unreadable
from harness.lab.addressing import Addressing, MachineNet, plan
from harness.lab.host import LabHost, RemoteHost, lab_host
from harness.lab.hypervisor import CALL_TIMEOUT_S, Hypervisor
from harness.lab.lifecycle import (
    ExtraDisk,
    KeptVm,
    Lab,
    LabVm,
    VmDisk,
    bridge_name,
    guard_applies,
    reap,
    state_root,
)
from harness.lab.sniff import Watch
from harness.output.events import Sink
from harness.remote.commands import run_polled, run_step, stream_into
from harness.remote.host import session
from harness.remote.jump import Jump
from harness.remote.namespace import entered
from harness.remote.reach import wait_for_address
from harness.remote.shell import as_user
from harness.remote.ssh import Target, public_key_line, wait_for_ssh, wait_until_settled
from harness.scenario.model import Scenario
from harness.sources import BootDisk, open_source
from harness.sources.disk_image import DiskImageSource
from harness.sources.files import FileLevelSource
from harness.sources.host_identity import HostReader
from harness.sources.pgbackrest import PgBackRestSource

CONSOLE_KEEP_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True)
class DrillOptions:
    """How to run a drill (as opposed to what to drill, which is the scenario)."""

    uri: str = "qemu:///system"
    keep: bool = False
    accelerator: str | None = None  # overrides the scenario's
    libvirt_timeout_s: float = CALL_TIMEOUT_S  # one libvirt call longer than this: hung
    host: HostSpec | None = None  # an inventory's host (its uri is ``uri``); None: this machine


@dataclass
class DrillOutcome:
    """The result plus the artefacts the evidence writer stores beside it."""

    result: RunResult
    console_log: bytes
    kept_hint: str = ""


def run_drill(
    scenario: Scenario, options: DrillOptions, sink: Sink, interrupts: Interrupts
) -> DrillOutcome:
    """Run one drill. Never raises for a failed drill: the verdict is in the result."""
    return Run(scenario, options, sink, interrupts).execute()


class Run:
    """One drill's state; each phase is a method, teardown undoes whatever exists."""

    def __init__(
        self, scenario: Scenario, options: DrillOptions, sink: Sink, interrupts: Interrupts
    ) -> None:
        self.scenario, self.options = scenario, options
        self.interrupts = interrupts
        self.started = utc_now()
        self.result = RunResult(
            run_id="", scenario=scenario.name, description=scenario.description,
            scenario_file=str(scenario.source), started_at=self.started.isoformat(),
        )  # fmt: skip
        self.clock = Clock(self.result, sink)
        self.clock.say("drill", f"drill started ({scenario.source})", rto_s=scenario.targets.rto_s)
        self.outcome = DrillOutcome(self.result, b"")
        self.guests: list[Guest] = []
        self.primary: Guest | None = None
        self.hv: Hypervisor | None = None
        self.lab: Lab | None = None
        self.powered_on = 0  # VMs started: none means nothing ever ran on the backup
        self.stop_hashing = Stop()
        self.hash_errors: list[BaseException] = []
        self.failure: BaseException | None = None
        self.verified_at: float | None = None
        self.addressing: Addressing | None = None
        self.namespace: str | None = None  # a replicated lab's: the harness's sockets go there
        self.host: LabHost | None = None  # where the lab runs: this machine or a remote host

    def execute(self) -> DrillOutcome:
        """The drill's one boundary: whatever goes wrong inside, a bug of ours included,
        ends this drill (ERROR, with its traceback in the evidence) and returns a result."""
        try:
            with self.interrupts.armed():
                self._open()
                self._pipeline()
        except (DrillError, Aborted) as exc:
            self.failure = exc
        except Exception as exc:
            self._unexpected(exc, "the drill")
        finally:
            self._teardown()  # not interruptible: signals are only remembered here
        if self.failure is None and self.hash_errors:
            self.failure = self.hash_errors[0]
        if self.failure is None and self.interrupts.received:
            self.failure = Aborted(self.interrupts.received)
        try:
            judge(self.result, self.scenario, self.started, self.verified_at, self.failure,
                   [g.evidence for g in self.guests if g.evidence is not None])  # fmt: skip
        except Exception as exc:
            self._unexpected(exc, "the verdict")
            self.result.verdict, self.result.exit_code = Verdict.ERROR, ExitCode.INFRA
            self.result.reason = bug_reason(exc)
        self.result.finished_at = utc_now().isoformat()
        tail = self.outcome.console_log[-8192:]
        self.result.console_tail = tail.decode("utf-8", errors="replace")
        return self.outcome

    def _open(self) -> None:
        """Facts of the host and each machine's backup source: inside the drill's boundary."""
        self.result.environment = _environment(self.options)
        several = len(self.scenario.machines) > 1
        self.guests = [
            Guest(m, open_source(m.backup, m.vm), f" {m.name}" if several else "")
            for m in self.scenario.machines
        ]
        host = self.options.host
        for guest in self.guests:  # a remote host's QEMU reads the backup: proven there
            if host is not None and host.remote and isinstance(guest.source, DiskImageSource):
                guest.source.reader = HostReader(host)
        self.primary = next(g for g in self.guests if g.machine is self.scenario.primary)

    def _unexpected(self, exc: BaseException, during: str) -> None:
        """A bug of ours: this drill's failure (the first one wins the verdict), its
        traceback in the evidence and on stderr (cron mail shows it)."""
        text = "".join(traceback.format_exception(exc)).rstrip()
        self.result.tracebacks.append(f"during {during}:\n{text}")
        self.clock.say("traceback", f"unexpected error during {during}:\n{text}")
        if self.failure is None:
            self.failure = exc

    def _safely(self, during: str, step: Callable[[], None]) -> None:
        """One teardown step: its failure is recorded, and the next steps still run."""
        try:
            step()
        except DrillError as exc:
            self.failure = self.failure or exc
        except Exception as exc:
            self._unexpected(exc, during)

    def _pipeline(self) -> None:
        scenario, clock, result = self.scenario, self.clock, self.result
        with clock.phase("verify") as phase:
            details = []
            for guest in self.guests:
                guest.evidence, guest.disk = guest.source.verify()
                check = guest.evidence.image_check
                if not isinstance(guest.source, FileLevelSource):
                    check = f"{guest.disk.image.format}, {check}"
                details.append(f"{guest.machine.name}: {check}" if guest.label else check)
                disk = guest.disk
                closed = unreadable(disk.files, self.options.uri)
                if closed:
                    raise PhaseFailed("verify", "; ".join(closed))
                self._firmware(guest, disk)
                guest.expected = read_manifests(guest.machine.expect)
            result.backup = self._primary().evidence
            phase.detail = "; ".join(details)
        for guest in self.guests:
            assert guest.evidence is not None  # noqa: S101 - set just above
            for warning in guest.evidence.warnings:
                clock.say("note", f"warning{guest.label}: {warning}")
        self._integrity()
        for guest in self.guests:
            assert guest.evidence is not None  # noqa: S101 - set just above
            guest.hasher = start_hashing(guest.source, guest.evidence, result, clock,
                                          self.hash_errors, self.stop_hashing,
                                          f"hash{guest.label}")  # fmt: skip
        chosen = self._prepare()
        self.addressing = addressing = self._network(tcg=chosen != "kvm")
        hv = self.hv
        assert hv is not None  # noqa: S101 - connected by _prepare
        with clock.phase("provision") as phase:
            self.lab = lab = Lab(hv, scenario.name, host=self.host)
            disks = [_vm_disk(g) for g in self.guests]
            made = lab.provision(disks, "kvm" if chosen == "kvm" else "qemu", addressing)
            self.namespace = made.namespace or None
            for guest, vm in zip(self.guests, made.vms, strict=True):
                guest.vm = vm
                guest.facts.update(name=guest.machine.name, domain=vm.domain_name, mac=vm.mac,
                                   depends_on=list(guest.machine.depends_on),
                                   hostnames=list(guest.machine.hostnames))  # fmt: skip
            first = made.vms[0]
            result.lab = {
                "lab_id": lab.lab_id, "network": made.network_name,
                "network_xml": made.network_xml,
                "network_xml_sha256": hashlib.sha256(made.network_xml.encode()).hexdigest(),
                "domain": first.domain_name, "mac": first.mac, "accelerator": chosen,
                "gateway": made.gateway, "host_guard": made.host_guard,
                "security_driver": made.security_driver,
                "firmware": self._primary().facts.get("firmware", ""),
                "addressing": _addressing_facts(addressing, made.namespace,
                                                made.namespace_guard),
            }  # fmt: skip
            phase.detail = f"lab {lab.lab_id}, {len(made.vms)} VM(s), {chosen}"
        self._prepare_guests(tcg=chosen != "kvm")
        self._start_machines()
        self._checks()
        self.verified_at = clock.elapsed()
        # Proof of isolation is the harness's own work, not part of the recovery: after the clock.
        for guest in self.guests:
            self._isolation(guest)
        for guest in self.guests:
            join_polling(guest.hasher, self.interrupts)

    def _prepare(self) -> str:
        """libvirt on the lab's host, what an earlier drill left there, the accelerator."""
        scenario, clock, result = self.scenario, self.clock, self.result
        with clock.phase("prepare") as phase:
            self.hv = hv = Hypervisor(self.options.uri, self.options.libvirt_timeout_s)
            self.host = host = lab_host(hv, self.options.host, state_root() / "labs")
            for removed in reap(hv, include_kept=False, host=host):
                clock.say("note", f"cleanup: removed {removed} left by an earlier drill")
            requested = self.options.accelerator or scenario.primary.vm.accelerator
            if isinstance(host, RemoteHost):
                facts = hv.host_facts()
                result.environment.update(libvirt=facts["libvirt"], qemu=facts["qemu"])
                result.environment["lab_host"] = _host_facts(host, facts)
                chosen, phase.detail = accel.choose_remote(requested, host.spec.accelerator,
                                                           hv.kvm_supported())  # fmt: skip
            else:
                result.environment.update(libvirt=hv.version(), qemu=accel.qemu_version())
                chosen, phase.detail = accel.choose(requested, state_root())
            result.environment.update(accelerator=chosen, accelerator_reason=phase.detail)
        return chosen

    def _integrity(self) -> None:
        """Each backup tool's own check where the scenario asks (``backup.integrity``): drill
        work before boot, timed as a phase of its own and not counted in the RTO."""
        guests = [g for g in self.guests if g.machine.backup.integrity is not None]
        if not guests:
            return
        with self.clock.phase("integrity") as phase:
            said = []
            for guest in guests:
                assert isinstance(guest.source, FileLevelSource)  # noqa: S101 - the loader
                assert guest.evidence is not None  # noqa: S101 - verified before
                found = guest.source.check_integrity()
                guest.evidence.details["integrity check"] = found
                said.append(f"{guest.machine.name}: {found}" if guest.label else found)
            phase.detail = "; ".join(said)
        self.result.preparation_s += phase.duration_s

    def _network(self, tcg: bool) -> Addressing:
        """Each machine's address: as the scenario states it, else as its boot disk's own
        network configuration says (read read-only before boot), else DHCP. Drill work, not
        recovery: left out of the measured recovery time like key injection."""
        spec = self.scenario.network
        with self.clock.phase("network") as phase:
            # each machine's disks read at once (one libguestfs appliance each, a few at a time)
            with ThreadPoolExecutor(max_workers=4, thread_name_prefix="network") as pool:
                machines = list(pool.map(lambda g: self._machine_network(g, tcg), self.guests))
            addressing = plan(machines, [(s.cidr, s.gateway) for s in spec.subnets])
            if addressing.replicated and any(g.machine.vm.disk for g in self.guests):
                raise PhaseFailed("network", "a whole-system restore needs the lab's DHCP for "
                                             "its rescue system, and this lab replicates "
                                             "production subnets (no DHCP there)")  # fmt: skip
            for guest in self.guests:
                guest.facts["address"] = asdict(addressing.of(guest.machine.name))
            phase.detail = "; ".join(
                (f"{m.machine}: " if len(addressing.machines) > 1 else "")
                + (f"{m.cidr}, " if m.cidr else "") + m.found
                for m in addressing.machines
            ) + ("; lab replicates " + ", ".join(f"{s.cidr} (lab side {s.gateway})"
                                                   for s in addressing.subnets)
                 if addressing.replicated else "")  # fmt: skip
        self.result.preparation_s += phase.duration_s
        return addressing

    def _machine_network(self, guest: Guest, tcg: bool) -> MachineNet:
        """What the scenario states of one machine's address, or what its disks say."""
        machine, disk, spec = guest.machine, guest.disk, self.scenario.network
        assert disk is not None  # noqa: S101 - verified before
        # libvirt's test driver boots nothing; a remote host's guests boot (the backup is
        # read here for its network configuration, as for a lab on this machine)
        boots = guard_applies(self.options.uri) or bool(self.options.host
                                                        and self.options.host.remote)
        if machine.vm.disk is not None:
            return MachineNet(machine.name, None, None, "a whole-system restore: the rescue "
                                                        "system's lease, then the rebuilt "
                                                        "system's")  # fmt: skip
        if machine.address or not spec.detect or not boots:
            why = ("" if machine.address else "network.detect is off" if boots
                   else f"nothing boots under {self.options.uri}")  # fmt: skip
            return MachineNet(machine.name, machine.address, None, why)
        disks = [(disk.path, disk.image.format), *((d.path, d.image.format) for d in disk.extra)]
        config, why = read_config(disks, disk.files, tcg, state_root() / "cache" / "network")
        if config is not None:
            guest.facts["network_config"] = config.summary()
        return MachineNet(machine.name, None, config, why)

    @staticmethod
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

    def _prepare_guests(self, tcg: bool) -> None:
        """The drill's key into each lab copy that asks for it (``login.inject_key``). Timed
        as a phase of its own and left out of the measured recovery time: it is work the
        drill does to reach the restored system, not work of the recovery."""
        guests = [g for g in self.guests if g.machine.login.inject_key and g.vm is not None
                  and g.vm.rescue is None]  # a rebuilt disk gets it from the rescue system
        if not guests:
            return
        with self.clock.phase("prepare guest") as phase:
            said: list[str] = []
            for guest in guests:
                assert guest.vm is not None  # noqa: S101 - filtered above
                login = guest.machine.login
                changes, notes = inject_key(
                    guest.machine.name, guest.vm.overlay, login.user,
                    public_key_line(login.key_file), create_user=login.create_user, tcg=tcg,
                )  # fmt: skip
                self.result.guest_changes += changes
                said += [f"{guest.machine.name}: {n}" if guest.label else n for n in notes]
            phase.detail = "; ".join([
                f"{len(self.result.guest_changes)} file(s) added or changed in the lab copy "
                "(the overlay; the backup is opened read-only); not counted in the RTO", *said])
        self.result.preparation_s += phase.duration_s

    def _start_machines(self) -> None:
        """Power on each machine once the machines it depends on are ready (see
        :mod:`.machines`); the first failure decides the verdict."""
        start_machines(self.guests, self._boot, self._ready, self.interrupts,
                       lambda message: self.clock.say("note", message))  # fmt: skip

    def _boot(self, guest: Guest, check: Callable[[], None]) -> None:
        assert self.lab is not None  # noqa: S101 - provisioned before any boot
        assert self.hv is not None  # noqa: S101
        assert guest.vm is not None  # noqa: S101
        vm, limit = guest.vm, guest.machine.vm.boot_timeout_s
        hv, name = self.hv, f"boot{guest.label}"
        if vm.rescue is not None:
            self._rebuild(guest, check)
        with self.clock.phase(name) as phase:
            watch = self._watch(vm)
            try:
                self.lab.start(vm)
                self.powered_on += 1
                seen = watch.stop if watch else (lambda: "")
                if self.namespace and vm.ip:
                    port = guest.machine.login.port
                    self.clock.say("note", f"{name}: VM powered on, waiting up to "
                                           f"{format_duration(limit)} for {vm.ip} to answer "
                                           f"on port {port}")  # fmt: skip
                    wait_for_address(self.namespace, vm.ip, port, limit, check,
                                     lambda: hv.is_running(vm.domain_name),
                                     lambda: self._unanswered(guest, seen()), name)  # fmt: skip
                    guest.ip = vm.ip
                else:
                    self.clock.say("note", f"{name}: VM powered on, waiting up to "
                                           f"{format_duration(limit)} for its DHCP lease")
                    guest.ip = hv.wait_for_lease(vm.domain_name, vm.mac, limit, check, seen)
            finally:
                if watch:
                    watch.stop()
            guest.facts["ip"] = phase.detail = guest.ip

    def _rebuild(self, guest: Guest, check: Callable[[], None]) -> None:
        """restore: system: the rescue system boots beside the blank disk, partitions it,
        restores every file, installs the restored system's own boot loader, and is powered
        off; the rebuilt disk then boots alone (:meth:`_boot`). Each a phase of the recovery."""
        assert self.lab is not None  # noqa: S101 - provisioned
        assert self.hv is not None  # noqa: S101
        vm, source = guest.vm, guest.source
        assert vm is not None  # noqa: S101
        assert vm.rescue is not None  # noqa: S101 - only called for one
        assert isinstance(source, FileLevelSource)  # noqa: S101 - restore: system is
        assert source.system is not None  # noqa: S101 - planned at verify
        rescue, label, machine = vm.rescue, guest.label, guest.machine
        login, limit = machine.login, machine.backup.restore_timeout_s
        with self.clock.phase(f"rescue boot{label}") as phase:
            self.lab.start(vm, rescue=True)
            self.powered_on += 1
            self.clock.say("note", f"{phase.name}: rescue system powered on, waiting up to "
                                   f"{format_duration(machine.vm.boot_timeout_s)} for its "
                                   "DHCP lease")  # fmt: skip
            ip = self.hv.wait_for_lease(vm.domain_name, rescue.mac, machine.vm.boot_timeout_s,
                                        check)  # fmt: skip
            target = Target(ip, 22, "root", login.key_file, None, self.namespace)
            client, key = wait_for_ssh(target, login.timeout_s, check)
            guest.client = client
            guest.facts["rescue"] = {"ip": ip, "mac": rescue.mac, "image": str(guest.disk.path
                                     if guest.disk else ""),
                                     "host_key": {"type": key.type,
                                                  "fingerprint": key.fingerprint}}  # fmt: skip
            phase.detail = f"rescue system at {ip}, {key.type} {key.fingerprint}"
        disk, boot = source.system
        with self.clock.phase(f"partition{label}") as phase:
            phase.detail = partition(client, disk, phase.name, limit, check)
        self._restore(guest, source, check)
        with self.clock.phase(f"bootloader{label}") as phase:
            inject = (login.user, public_key_line(login.key_file)) if login.inject_key else None
            phase.detail, phase.output = bootloader(client, boot, phase.name, limit, check,
                                                    inject)  # fmt: skip
            change = key_change(phase.output, machine.name) if inject else None
            if change is not None:
                self.result.guest_changes.append(change)
        client.close()
        guest.client = None
        self.lab.power_off(vm)  # the rebuilt disk is unmounted and flushed

    def _watch(self, vm: LabVm) -> Watch | None:
        """Watch what the guest's NIC sends while it boots (for a failure's reason): on the
        lab side of a replicated lab, else on the lab bridge; not where there is no bridge
        here (another libvirt driver) or no right to watch."""
        lab = self.lab
        if lab is None or not guard_applies(self.options.uri):
            return None
        iface = netns.lab_end(lab.lab_id) if self.namespace else bridge_name(lab.lab_id)
        try:
            return Watch(self.namespace, iface, vm.mac)
        except OSError:
            return None

    @staticmethod
    def _unanswered(guest: Guest, seen: str) -> str:
        """What was seen, and what the guest's own configuration says, for a boot that never
        answered in a replicated lab."""
        address = guest.facts.get("address", {})
        iface = address.get("interface")
        if seen.startswith("no frame at all") and iface:
            return (f"{seen}: the guest puts {address.get('cidr')} on {iface} "
                    f"({address.get('found')}), and no interface of that name seems to exist "
                    "in the lab, which gives each machine one virtio NIC (named eth0, ens3 "
                    "or enp1s0 by the guest, depending on its naming scheme)")  # fmt: skip
        return seen

    def _ready(self, guest: Guest, check: Callable[[], None]) -> None:
        """ssh → settle → restore → steps: the machine is ready for its dependents."""
        clock, label, machine = self.clock, guest.label, guest.machine
        with clock.phase(f"ssh{label}") as phase:
            login = machine.login
            guest.target = Target(guest.ip, login.port, login.user, login.key_file,
                                  login.password, self.namespace, self._jump())  # fmt: skip
            guest.client, key = wait_for_ssh(guest.target, login.timeout_s, check)
            guest.host_key = key
            guest.facts["host_key"] = {"type": key.type, "fingerprint": key.fingerprint}
            phase.detail = f"{key.type} {key.fingerprint}"
        with clock.phase(f"settle{label}") as phase:
            phase.detail = wait_until_settled(guest.client, machine.vm.settle_timeout_s, check)
            guest.facts["system_state"] = phase.detail
        source = guest.source
        if isinstance(source, PgBackRestSource):
            self._recover(guest, source, check)
        elif isinstance(source, FileLevelSource) and source.system is None:
            self._restore(guest, source, check)
        for step in machine.restore_steps:
            with clock.phase(f"step{label}: {step.name}") as phase:
                phase.output = run_step(guest.client, phase.name, as_user(step.run, step.user),
                                        step.timeout_s, check)  # fmt: skip
                phase.detail = "exit 0"
        guest.host = testinfra_host(guest.client, guest.target, key)

    def _restore(self, guest: Guest, source: FileLevelSource, check: Callable[[], None]) -> None:
        """The backup's files streamed into the guest, each hashed here as it passes; then
        the same files hashed in the guest and compared (the restore proves its own bytes)."""
        clock, label, machine = self.clock, guest.label, guest.machine
        hasher = StreamHasher(placement(*source.layout()))
        try:
            with clock.phase(f"restore{label}") as phase, source.restore_stream() as tar:
                limit = machine.backup.restore_timeout_s
                sent = stream_into(guest.client, source.target, tar, limit, check,
                                   source.extract_args(), hasher.feed)  # fmt: skip
                sub = machine.backup.subpath
                into = (f"the rebuilt disk (mounted at {source.target} in the rescue system)"
                        if source.system else source.target)  # fmt: skip
                phase.detail = (f"{sent} bytes of tar restored into {into}"
                                + (f" (the backup's {sub})" if sub else ""))  # fmt: skip
        finally:
            entries, problem = hasher.finish()
        if source.system is not None:  # extracted --numeric-owner: owners compared by number
            entries = [e._replace(user="", group="") for e in entries]
        with clock.phase(f"restore proof{label}") as phase:
            if problem:
                phase.detail = f"not proven: {problem}"
                self._record(stream_not_proven(source.target, machine.name, bool(label),
                                               problem))  # fmt: skip
                return
            root = machine.login.user == "root" or source.system is not None  # the rescue's
            fat = tuple(f"{f.mount.strip('/')}/".encode() for f in source.system[0].filesystems
                        if f.fstype == "vfat") if source.system else ()  # fmt: skip
            proof, result = prove_stream(guest.client, entries, source.target, machine.name,
                                         bool(label), root, phase.name,
                                         check, machine.backup.restore_timeout_s,
                                         fat)  # fmt: skip
            self.result.data.append(proof)
            self._record(result)
            phase.detail = result.observed
            if not proof.passed:
                phase.status = "failed"

    def _recover(self, guest: Guest, source: PgBackRestSource,
                 check: Callable[[], None]) -> None:  # fmt: skip
        """The server's own pgBackRest restore and PostgreSQL's WAL replay, each a phase of
        the recovery; the restore point becomes what PostgreSQL says it recovered to."""
        clock, label, machine = self.clock, guest.label, guest.machine
        root, limit = machine.login.user == "root", machine.backup.restore_timeout_s
        evidence = guest.evidence
        assert evidence is not None  # noqa: S101 - verified before
        with clock.phase(f"restore{label}") as phase:
            phase.detail = restore(guest.client, source, root, phase.name, limit, check)
        with clock.phase(f"recovery{label}") as phase:
            got = recover(guest.client, source, root, phase.name, limit, check)
            assert source.chosen is not None  # noqa: S101 - verified before
            if got.restore_point is not None:
                evidence.restore_point = got.restore_point.isoformat()
                evidence.restore_point_source = ("PostgreSQL: the last transaction it "
                                                 "replayed (pg_last_xact_replay_timestamp)")
            else:
                evidence.restore_point = source.chosen.stopped.isoformat()
                evidence.restore_point_source = (f"the end of backup set {source.chosen.label}"
                                                 ": PostgreSQL replayed no transaction after "
                                                 "it")  # fmt: skip
            stopped = got.stopped_before()
            evidence.details["recovered to"] = evidence.restore_point + (
                f" (PostgreSQL {got.version}: {stopped})" if stopped
                else f" (PostgreSQL {got.version})")  # fmt: skip
            if got.log:
                evidence.details["PostgreSQL recovery log"] = " | ".join(got.log)
            phase.detail = (f"PostgreSQL {got.version} promoted; restore point "
                            f"{evidence.restore_point} ({evidence.restore_point_source})")

    def _checks(self) -> None:
        """Each machine's data against its manifests; the scenario's checks, each on its
        machine; then the user's testinfra files."""
        scenario, clock, result = self.scenario, self.clock, self.result
        by_name = {g.machine.name: g for g in self.guests}
        for guest in self.guests:
            if guest.expected:
                self._data(guest)
        with clock.phase("checks") as phase:
            for spec in scenario.checks:
                guest = by_name.get(spec.machine or "", self._primary())
                with entered(self.namespace):  # an http check's socket goes into the lab
                    outcome = run_check(guest.host, spec, guest.ip, self._via())
                self._record(outcome)
            phase.detail = tally(result.checks)
        if scenario.testinfra:
            guest = by_name.get(scenario.testinfra.machine or "", self._primary())
            assert guest.target is not None  # noqa: S101 - every machine is ready by now
            assert guest.host_key is not None  # noqa: S101
            with clock.phase("testinfra") as phase:
                files, limit = scenario.testinfra.files, scenario.testinfra.timeout_s
                tests = run_testfiles(files, guest.target, guest.host_key, limit)
                for check in tests:
                    self._record(check)
                phase.detail = tally(tests)

    def _data(self, guest: Guest) -> None:
        """The guest's restored folders against the manifests recorded at backup time."""
        with self.clock.phase(f"data{guest.label}") as phase:
            proofs = []
            for expected in guest.expected:
                proof, check = prove(guest.client, expected, guest.machine.name,
                                     bool(guest.label), guest.machine.login.user == "root",
                                     phase.name, self.interrupts.check)  # fmt: skip
                proofs.append(proof)
                self.result.data.append(proof)
                self._record(check)
            phase.detail = "; ".join(f"{p.root}: {p.files_matching}/{p.files_expected} files "
                                     "identical" for p in proofs)  # fmt: skip
            if not all(p.passed for p in proofs):
                phase.status = "failed"

    def _isolation(self, guest: Guest) -> None:
        with self.clock.phase(f"isolation{guest.label}") as phase:

            def run(command: str, limit: float) -> tuple[int, str]:
                assert guest.client is not None  # noqa: S101 - connected by _ready
                return run_polled(guest.client, phase.name, command, limit, self.interrupts.check)

            provisioned = self.lab.provisioned if self.lab else None
            gateway = provisioned.gateway if provisioned else ""
            with host_listener() as port:
                if isinstance(self.host, RemoteHost):  # its host, and no way to the controller
                    there = self.host.session
                    host = lab_host_targets(self.host.name, gateway, there.addresses(),
                                            there.local_address(), port)  # fmt: skip
                    attempts = probe_egress(run, self.scenario.isolation_probe, host)
                elif self.namespace:  # the lab's side, then the drill host on its own addresses
                    # listed here, outside the lab: a command started inside it would list the
                    # lab side's addresses as the drill host's
                    own = netns.host_addresses()
                    with entered(self.namespace), host_listener() as lab_port:
                        host = host_targets(gateway, lab_port, "the lab's side")
                        host |= {f"drill host {a}:{port} (a listener on 0.0.0.0)": f"{a}:{port}"
                                 for a in own}  # fmt: skip
                        attempts = probe_egress(run, self.scenario.isolation_probe, host)
                else:
                    host = host_targets(gateway, port) if gateway else {}
                    attempts = probe_egress(run, self.scenario.isolation_probe, host)
            prefix = f"{guest.machine.name}: " if guest.label else ""
            records = [{**asdict(a), "target": prefix + a.target} for a in attempts]
            self.result.isolation += records
            leaks = [a for a in records if a["outcome"] != "blocked"]
            phase.detail = (
                f"{len(attempts)} attempts to leave the lab, all blocked" if not leaks
                else "not proven isolated: " + "; ".join(f"{a['target']} {a['outcome']}"
                                                         for a in leaks)
            )  # fmt: skip
            if leaks:
                phase.status = "failed"

    def _jump(self) -> Jump | None:
        """A remote lab's host: its guests are reachable only through it."""
        return self.host.jump if isinstance(self.host, RemoteHost) else None

    def _via(self) -> Connector | None:
        """How the harness's own connections (http checks) reach a remote lab's guests."""
        jump = self._jump()
        if jump is None:
            return None
        return lambda ip, port, limit: session(jump).channel_to(ip, port, limit)

    def _record(self, check: CheckResult) -> None:
        self.result.checks.append(check)
        status = check.status.lower()
        self.clock.say("check", f"  {check.status.upper()} {check.name}: {check.observed}",
                       status=status)  # fmt: skip

    def _primary(self) -> Guest:
        assert self.primary is not None  # noqa: S101 - set by _open before any phase
        return self.primary

    def _teardown(self) -> None:
        """Undo whatever exists, each step on its own: one that fails (a bug included) is
        recorded and the others still run. A second signal cuts the waits short."""
        for guest in self.guests:
            if guest.client is not None:
                with suppress(Exception):
                    guest.client.close()
        if self.lab is not None:
            self._safely("teardown of the lab", self._remove_lab)
        if self.hv is not None:
            self._safely("closing libvirt", self.hv.close)
        self._safely("the proof that the backup is unchanged", self._prove_unchanged)
        if self.primary is not None:  # the report's lab section shows the first machine's
            first = self.primary.facts
            self.result.lab.update({k: first[k] for k in ("ip", "host_key", "system_state",
                                                          "rescue")
                                    if k in first})  # fmt: skip
        if len(self.guests) > 1:
            self.result.machines = [
                {**g.facts, "backup": asdict(g.evidence) if g.evidence else None}
                for g in self.guests
            ]

    def _remove_lab(self) -> None:
        lab = self.lab
        assert lab is not None  # noqa: S101 - called only with a lab
        self.outcome.console_log = _read_console(lab)
        kept = [
            KeptVm(g.machine.name, g.ip, t.port, t.user, t.key_file, f"{k.type} {k.base64}")
            for g in self.guests
            if (t := g.target) is not None and (k := g.host_key) is not None
        ]
        if self.options.keep and kept:
            lab.keep(kept)
            self.outcome.kept_hint = _kept_hint(lab, self.options.uri)
            return
        for removed in lab.teardown():
            self.clock.say("note", f"teardown: removed {removed}")

    def _prove_unchanged(self) -> None:
        aborted = isinstance(self.failure, Aborted) or bool(self.interrupts.received)
        failure = prove_unchanged(self.guests, self.stop_hashing, self.interrupts.forced,
                                  vm_ran=self.powered_on > 0, aborted=aborted)  # fmt: skip
        self.failure = self.failure or failure


def _vm_disk(guest: Guest) -> VmDisk:
    """What the lab boots for one machine (its verified disk), and how."""
    disk, machine = guest.disk, guest.machine
    assert disk is not None  # noqa: S101 - verified before
    more = tuple(ExtraDisk(d.path, d.image, d.chain) for d in disk.extra)
    shares = guest.source.shares() if isinstance(guest.source, PgBackRestSource) else ()
    blank = machine.vm.disk.size_bytes if machine.vm.disk else 0
    key = public_key_line(machine.login.key_file) if blank else ""
    return VmDisk(machine.name, disk.path, disk.image, machine.vm.memory_mib, machine.vm.vcpus,
                  machine.hostnames, disk.chain, more, guest.firmware, machine.vm.secure_boot,
                  shares, blank, key)  # fmt: skip


def _addressing_facts(addressing: Addressing, namespace: str, guard: str) -> dict[str, Any]:
    """The report's account of the lab network: replicated subnets or plain DHCP, and how
    each machine's address was found."""
    return {
        "mode": "replicated" if addressing.replicated else "dhcp",
        "namespace": namespace,
        "namespace_guard": guard,
        "subnets": [asdict(s) for s in addressing.subnets],
        "nameservers": [{"address": ip, "found": f"named in {src}"}
                        for ip, src in addressing.nameservers],
        "machines": [asdict(m) for m in addressing.machines],
    }


def _host_facts(host: RemoteHost, facts: dict[str, str]) -> dict[str, str]:
    """The remote host that ran the lab, for the report."""
    key = host.session.host_key
    return {"name": host.name, "uri": host.spec.uri, "ssh": host.jump.describe(),
            "host_key": f"{key.type} {key.fingerprint}", **facts,
            "cpu_model": host.cpu_model()}  # fmt: skip


def _read_console(lab: Lab) -> bytes:
    """The serial console of every VM (each headed by its machine's name if several)."""
    if lab.provisioned is None:
        return b""
    vms = lab.provisioned.vms
    logs = [(f"{vm.machine}: " if len(vms) > 1 else "", vm) for vm in vms]
    files = [(f"{who}rescue system", vm.rescue.console_log) for who, vm in logs if vm.rescue]
    files += [(f"{who}rebuilt system" if vm.rescue else who.rstrip(": "), vm.console_log)
              for who, vm in logs]  # fmt: skip
    out = b""
    for title, path in files:
        data = lab.read_console(path, CONSOLE_KEEP_BYTES // len(files))
        out += f"===== {title} =====\n".encode() + data if len(files) > 1 else data
    return out


def _kept_hint(lab: Lab, uri: str) -> str:
    several = len(lab.record.machines) > 1
    which = " --vm NAME" if several else ""
    return (
        f"lab {lab.lab_id} kept ({lab.record.login}): restore-drill ssh {lab.lab_id}{which}\n"
        f"  console: virsh -c {uri} console {lab.record.domains[0]}\n"
        f"  remove:  restore-drill cleanup"
    )


def _environment(options: DrillOptions) -> dict[str, str]:
    return {
        "harness": f"restore-drill {__version__}",
        "python": platform.python_version(),
        "host": socket.getfqdn(),
        "kernel": platform.release(),
        "user": getpass.getuser(),
        "pid": str(os.getpid()),
        "command": " ".join(sys.argv),
        "libvirt_uri": options.uri,
        "qemu_img": qemu_img.version(),
    }
