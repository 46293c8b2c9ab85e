"""A lab's life: provision (overlay, isolated network, transient VM), teardown, keep, reap.

Every lab has a folder ``<state>/labs/<lab id>/`` holding its overlay, console log and a
``lab.json`` written *before* anything is created, naming the process that owns it. A later
``cleanup`` (or the start of any run) removes labs whose owner is gone: a ``kill -9`` leaves
nothing behind for long. libvirt objects carry the ``rdrill-<lab id>`` prefix, so even a lab
whose folder was lost is found.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shlex
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from harness import qemu_img
from harness.errors import LabError
from harness.lab import guard, netns, share
from harness.lab.addressing import Addressing
from harness.lab.host import LabHost, LocalHost, give_to_qemu
from harness.lab.hypervisor import Hypervisor, LabObject
from harness.lab.xml import (
    NAME_PREFIX,
    DomainPlan,
    NetworkHost,
    NetworkPlan,
    domain_xml,
    network_xml,
)
from harness.processes import process_start
from harness.remote.jump import Jump
from harness.scan.isolated import reap as reap_scans


def state_root() -> Path:
    """Where labs live: ``$RESTORE_DRILL_STATE_DIR``, /var/lib/restore-drill for root, else XDG."""
    if env := os.environ.get("RESTORE_DRILL_STATE_DIR"):
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/restore-drill")
    return Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local/state")) / "restore-drill"


@dataclass
class LabRecord:
    """``lab.json``: who owns the lab and what it is made of."""

    lab_id: str
    scenario: str
    uri: str
    pid: int
    pid_start: str | None
    created: float
    kept: bool = False
    domains: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    ip: str | None = None
    login: str | None = None
    ssh: list[str] | None = None  # for ``restore-drill ssh``: OpenSSH arguments, host key pinned
    machines: dict[str, list[str]] = field(default_factory=dict)  # the same, for each VM
    guarded: bool = False  # an nftables table blocks guest → host traffic (lab.guard)
    netns: bool = False  # the lab's side of a replicated network: a namespace (lab.netns)
    dnsmasq_pid: int | None = None  # its DHCP and DNS
    share_pids: list[int] = field(default_factory=list)  # virtiofsd of each share (lab.share)
    host: str = ""  # the inventory's host it runs on ("": this machine, no inventory)

    def owner_alive(self) -> bool:
        return self.pid_start is not None and process_start(self.pid) == self.pid_start


@dataclass(frozen=True)
class ExtraDisk:
    """A disk of a VM: its image and the backing files below it."""

    backing: Path
    image: qemu_img.ImageInfo
    chain: tuple[qemu_img.Layer, ...] = ()


@dataclass(frozen=True)
class VmDisk:
    """What a lab VM boots and how big it is: the input to :meth:`Lab.provision`."""

    machine: str
    backing: Path
    image: qemu_img.ImageInfo
    memory_mib: int
    vcpus: int
    hostnames: tuple[str, ...] = ()
    chain: tuple[qemu_img.Layer, ...] = ()  # the backing files below ``backing``, top down
    more: tuple[ExtraDisk, ...] = ()  # the server's further disks, in production order
    firmware: str = "bios"  # or "uefi"
    secure_boot: bool = False
    shares: tuple[share.Share, ...] = ()  # host folders the VM reads in place, read-only
    #: a whole-system restore: the blank disk's size; ``backing`` is then the rescue system,
    #: which boots first beside the blank disk and lets in ``rescue_key``
    blank_bytes: int = 0
    rescue_key: str = ""


@dataclass(frozen=True)
class LabVm:
    """One provisioned VM; ``ip`` is fixed in advance in a lab of several VMs."""

    machine: str
    domain_name: str
    domain_xml: str
    overlay: Path
    console_log: Path
    mac: str
    ip: str | None = None
    rescue: RescueVm | None = None  # a whole-system restore: the rescue system's domain


@dataclass(frozen=True)
class RescueVm:
    """The rescue system of a whole-system restore: the same domain name, booted first from
    an overlay of the rescue image with the blank disk as its second disk, on a MAC of its
    own (the rebuilt system's lease is then its own, and in a lab of several machines its
    reserved address); ``domain_xml`` of the :class:`LabVm` then boots the rebuilt disk alone."""

    domain_xml: str
    console_log: Path
    mac: str


@dataclass(frozen=True)
class Provisioned:
    """What provisioning made, for the evidence."""

    network_name: str
    network_xml: str
    vms: tuple[LabVm, ...]
    gateway: str = ""  # the host's address on the lab network
    host_guard: str = ""  # the nftables rules that block guest → host, or why there are none
    security_driver: str = ""  # libvirt's, whose labels every backup layer keeps
    namespace: str = ""  # a replicated lab's namespace, where the harness's sockets go
    namespace_guard: str = ""  # its nftables rules


@dataclass(frozen=True)
class KeptVm:
    """How to reach a kept VM: for ``restore-drill ssh``, with its host key pinned."""

    machine: str
    ip: str
    port: int
    user: str
    key_file: Path
    host_key: str  # "<type> <base64>", as recorded at the drill's first login


class Lab:
    """One drill's lab. ``teardown`` is idempotent and safe after a partial provision."""

    def __init__(self, hv: Hypervisor, scenario: str, root: Path | None = None,
                 host: LabHost | None = None) -> None:  # fmt: skip
        self.hv = hv
        self.lab_id = secrets.token_hex(4)
        labs = (root or state_root()) / "labs"
        self.dir = labs / self.lab_id  # the record; on this machine, the lab's files too
        self.host = host or LocalHost(labs, hv.uri)
        self.files = self.host.folder(self.lab_id)  # the lab's files, as its host sees them
        self.record = LabRecord(
            lab_id=self.lab_id, scenario=scenario, uri=hv.uri, pid=os.getpid(),
            pid_start=process_start(os.getpid()), created=time.time(), host=self.host.name,
        )  # fmt: skip
        self.provisioned: Provisioned | None = None

    def _save(self) -> None:
        tmp = self.dir / "lab.json.tmp"
        tmp.write_text(json.dumps(asdict(self.record), indent=2))
        tmp.replace(self.dir / "lab.json")

    def provision(self, disks: list[VmDisk], domain_type: str,
                  addressing: Addressing | None = None) -> Provisioned:  # fmt: skip
        """Overlays, one isolated network, domain XML for each VM. No VM is started yet.

        With several VMs (or host names) each VM gets a fixed address and its names resolve
        inside the lab; a single VM gets its address from DHCP as it would anywhere. A lab
        whose ``addressing`` replicates production subnets is a bare bridge joined to a
        namespace holding the lab's side (:mod:`.netns`); every VM keeps its address."""
        try:
            self.dir.mkdir(parents=True, mode=0o755)
            for parent in (self.dir.parent, self.dir.parent.parent):
                parent.chmod(0o755)  # QEMU runs as its own user and must reach the overlay
        except OSError as exc:
            raise LabError(f"cannot create the lab folder {self.dir}: {exc.strerror}") from exc
        name = f"{NAME_PREFIX}{self.lab_id}"
        self.record.networks.append(name)
        domains = [f"{name}-{d.machine}" for d in disks]
        self.record.domains += domains
        self._save()  # before anything exists: a kill -9 from here on is reapable
        if self.host.remote and (any(d.blank_bytes or d.shares for d in disks)
                                 or (addressing is not None and addressing.replicated)):
            raise LabError("a whole-system restore, a shared repository and a lab that "
                           "replicates production subnets run only on this machine's own "
                           "libvirt, not on a remote host")  # fmt: skip
        self.host.make_folder(self.lab_id)

        security_driver = self.hv.security_model()
        keep_labels = kept_labels(security_driver)
        macs = [_mac() for _ in disks]
        named = len(disks) > 1 or any(d.hostnames for d in disks)
        hosts = [(mac, (d.machine, *d.hostnames)) for mac, d in zip(macs, disks, strict=True)]
        replicated = addressing is not None and addressing.replicated
        net_xml, plan = self._create_network(name, hosts if named and not replicated else [],
                                             replicated)  # fmt: skip
        host_guard = self._guard(plan.bridge, dns=named and not replicated,
                                 dhcp=not replicated)  # fmt: skip
        namespace, namespace_guard = "", ""
        if addressing is not None and replicated:
            namespace, namespace_guard = self._namespace(plan.bridge, addressing, hosts, macs)
        vms = []
        for i, (disk, mac, domain) in enumerate(zip(disks, macs, domains, strict=True)):
            overlay, backing = self._overlay(f"{disk.machine}.qcow2",
                                             ExtraDisk(disk.backing, disk.image, disk.chain))
            more = [self._overlay(f"{disk.machine}.disk{n}.qcow2", further)
                    for n, further in enumerate(disk.more, 2)]  # one overlay per further disk
            console_log = self.files / f"{disk.machine}.console.log"
            served = [self._share(f"{disk.machine}-{s.tag}", s) for s in disk.shares]
            dom_plan = DomainPlan(
                name=domain, lab_id=self.lab_id,
                scenario=self.record.scenario, domain_type=domain_type,
                memory_mib=disk.memory_mib, vcpus=disk.vcpus, overlay=overlay,
                backing=backing,
                network=name, mac=mac, console_log=console_log, keep_labels=keep_labels,
                more_disks=tuple(more), firmware=disk.firmware,
                secure_boot=disk.secure_boot,
                nvram=self.files / f"{disk.machine}.VARS.fd" if disk.firmware == "uefi" else None,
                shares=tuple((s.tag, s.socket) for s in served),
            )  # fmt: skip
            ip = plan.address(i) if named else None
            if addressing is not None and replicated:
                ip = addressing.of(disk.machine).ip
            vm = LabVm(disk.machine, domain, domain_xml(dom_plan), overlay, console_log, mac, ip)
            vms.append(self._rebuilt(vm, disk, dom_plan) if disk.blank_bytes else vm)
        gateway = addressing.subnets[0].gateway if addressing and replicated else plan.gateway
        self.provisioned = Provisioned(name, net_xml, tuple(vms), gateway, host_guard,
                                       security_driver, namespace, namespace_guard)  # fmt: skip
        return self.provisioned

    def _rebuilt(self, vm: LabVm, disk: VmDisk, plan: DomainPlan) -> LabVm:
        """A whole-system restore's two boots of one domain: the rescue system (BIOS, its
        overlay first, the blank disk second, the drill's key in its SMBIOS strings, a MAC of
        its own), then the blank disk alone once the rescue system has rebuilt it (BIOS or
        UEFI, as the rebuilt system boots)."""
        blank = self.dir / f"{disk.machine}.rebuilt.qcow2"
        qemu_img.create_blank(blank, disk.blank_bytes)
        give_to_qemu(blank, self.hv.uri)
        mac = _mac()
        while mac == vm.mac:
            mac = _mac()
        rescue_log = self.dir / f"{disk.machine}.rescue.console.log"
        rescue_xml = domain_xml(replace(
            plan, mac=mac, console_log=rescue_log, more_disks=((blank, ()),), firmware="bios",
            secure_boot=False, nvram=None,
            oem_strings=(f"rdrill-authorized-key={disk.rescue_key}",)))  # fmt: skip
        rebuilt_xml = domain_xml(replace(plan, overlay=blank, backing=()))
        return replace(vm, domain_xml=rebuilt_xml, overlay=blank,
                       rescue=RescueVm(rescue_xml, rescue_log, mac))  # fmt: skip

    def _namespace(self, bridge: str, addressing: Addressing,
                   hosts: list[tuple[str, tuple[str, ...]]],
                   macs: list[str]) -> tuple[str, str]:  # fmt: skip
        """The lab's side of a replicated network (recorded first, so a kill -9 from here
        on is reaped); its name and its guard's rules."""
        self.record.netns = True
        self._save()
        leases = [(mac, m.ip, m.machine) for mac, m in zip(macs, addressing.machines, strict=True)
                  if m.dhcp and m.ip]  # fmt: skip
        names = [(n, m.ip) for (_, labels), m in zip(hosts, addressing.machines, strict=True)
                 if m.ip for n in labels]  # fmt: skip
        several = len(addressing.machines) > 1 or any(len(labels) > 1 for _, labels in hosts)
        names = names if several else []
        addresses = [s.lab_address for s in addressing.subnets]
        if names:  # the lab's DNS answers where the servers' own resolver settings point
            addresses += [f"{ip}/32" for ip, _ in addressing.nameservers]
        ns = netns.create(self.lab_id, bridge, addresses, dhcp=bool(leases), dns=bool(names))
        if leases or names:
            first = addressing.subnets[0]
            self.record.dnsmasq_pid = netns.start_dnsmasq(self.lab_id, self.dir, first.gateway,
                                                          first.cidr, leases, names)  # fmt: skip
            self._save()
        return ns, netns.guard_rules(self.lab_id, bool(leases), bool(names))

    def _share(self, name: str, wanted: share.Share) -> share.Served:
        """A read-only view of a host folder, served to one VM (see :mod:`.share`). The view
        is a mount in the lab folder: teardown and reaping unmount it before removing the
        folder; virtiofsd's pid is recorded as soon as it runs."""
        view = self.dir / f"share-{name}"
        share.mount_view(wanted.source, view)
        socket = self.dir / f"vfs{len(self.record.share_pids) + 1}.sock"  # 107 bytes at most
        served = share.serve(wanted, view, socket, self.hv.uri)
        self.record.share_pids.append(served.pid)
        self._save()
        return served

    def _overlay(self, name: str, disk: ExtraDisk) -> tuple[Path, tuple[qemu_img.Layer, ...]]:
        """A qcow2 overlay in the lab's folder over ``disk``, QEMU's to write; the overlay and
        the layers below it (the disk's image, then its own backing files), each at the path
        the lab's host sees it."""
        there = self.host.host_path
        overlay = self.host.overlay(self.lab_id, name, there(disk.backing), disk.image)
        layers = (qemu_img.Layer(disk.backing, disk.image.format), *disk.chain)
        return overlay, tuple(qemu_img.Layer(there(layer.path), layer.format) for layer in layers)

    def _guard(self, bridge: str, dns: bool, dhcp: bool) -> str:
        """Block guest → host traffic on the lab bridge (see :mod:`.guard`), recorded first so
        a killed drill's table is reaped; the rules, or why none were needed."""
        if not self.host.remote and not guard_applies(self.hv.uri):
            return f"not applied: libvirt at {self.hv.uri} runs no lab bridge on this host"
        self.record.guarded = True
        self._save()
        return self.host.block_guest_to_host(self.lab_id, bridge, dns, dhcp)

    def _create_network(
        self, name: str, hosts: list[tuple[str, tuple[str, ...]]], replicated: bool
    ) -> tuple[str, NetworkPlan]:
        used = self.hv.used_subnets()
        candidates = [n for n in range(1, 255) if f"10.213.{n}" not in used]
        random.shuffle(candidates)
        last: LabError | None = None
        for subnet in candidates[:5]:  # another drill may take the same subnet meanwhile
            plan = NetworkPlan(name=name, bridge=bridge_name(self.lab_id), subnet=subnet,
                               replicated=replicated)  # fmt: skip
            plan = replace(plan, hosts=tuple(NetworkHost(mac, plan.address(i), names)
                                             for i, (mac, names) in enumerate(hosts)))  # fmt: skip
            try:
                return self.hv.create_network(network_xml(plan)), plan
            except LabError as exc:
                last = exc
        raise last or LabError("no free subnet in 10.213.0.0/16 for the lab network")

    def start(self, vm: LabVm, rescue: bool = False) -> None:
        """Power on one VM (``rescue``: its rescue system, see :class:`RescueVm`)."""
        self.hv.create_domain(vm.rescue.domain_xml if rescue and vm.rescue else vm.domain_xml)

    def power_off(self, vm: LabVm) -> None:
        """Cut the power of a VM (the rescue system, once it has flushed the rebuilt disk)."""
        self.hv.destroy_domain(vm.domain_name)

    def keep(self, vms: list[KeptVm]) -> None:
        """Leave the lab up on purpose; ``cleanup`` removes it later. Each VM's host key, as
        recorded at its first login, is pinned for ``restore-drill ssh``."""
        known_hosts = self.dir / "known_hosts"
        known_hosts.write_text("".join(
            f"{vm.ip if vm.port == 22 else f'[{vm.ip}]:{vm.port}'} {vm.host_key}\n" for vm in vms
        ))  # fmt: skip
        first = vms[0]
        self.record.kept, self.record.ip = True, first.ip
        self.record.login = ", ".join(f"{vm.user}@{vm.ip}" for vm in vms)
        via = _proxy(self.host.jump) if self.host.jump else []
        self.record.machines = {
            vm.machine: [
                "-i", str(vm.key_file), "-p", str(vm.port), "-o", "IdentitiesOnly=yes",
                "-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes",
                *via, f"{vm.user}@{vm.ip}",
            ]
            for vm in vms
        }  # fmt: skip
        self.record.ssh = self.record.machines[first.machine]
        self._save()

    def remove_machines(self) -> list[str]:
        """Remove the lab's VMs (QEMU has closed every backup once they are gone); what was
        removed, for the log. :meth:`teardown` removes the rest."""
        return _remove_objects(self.hv, self.record.domains, ())

    def remove_network(self) -> list[str]:
        """Remove the lab's network (and namespace), what was removed: beside
        :meth:`remove_machines` (see :func:`_remove_running`)."""
        return _remove_network(self.hv, self.record)

    def teardown(self) -> list[str]:
        """Remove domains, network, host guard and folder; what was removed, for the log."""
        return _remove(self.hv, self.host, self.record, self.dir)

    def read_console(self, path: Path, limit: int) -> bytes:
        """The last ``limit`` bytes of one of the lab's console logs."""
        return self.host.read_tail(path, limit)


def _proxy(jump: Jump) -> list[str]:
    """OpenSSH's way to a remote lab's guest: through its host (``ssh -W``), that host's key
    pinned from the inventory's known_hosts as well."""
    key = ["-i", jump.key_file, "-o", "IdentitiesOnly=yes"] if jump.key_file else []
    hop = ["ssh", *key, "-p", str(jump.port), "-o", f"UserKnownHostsFile={jump.known_hosts}",
           "-o", "StrictHostKeyChecking=yes", "-W", "%h:%p", f"{jump.user}@{jump.hostname}"]
    return ["-o", "ProxyCommand=" + " ".join(shlex.quote(a) for a in hop)]


def kept_labels(security_model: str) -> tuple[str, ...]:
    """The label models every backup layer keeps as it is (relabel='no'), for the host's
    libvirt security driver. DAC (ownership) always. SELinux would ``chcon`` each layer: kept
    too (QEMU then reads the backup only if its existing label allows it; libvirt says so).
    AppArmor writes a profile and labels no file. A driver we do not know might relabel the
    backup: refused, before anything is created."""
    if security_model in ("", "none", "apparmor", "testSecurity"):
        return ("dac",)
    if security_model == "selinux":
        return ("dac", "selinux")
    raise LabError(f"libvirt's security driver {security_model!r} may relabel the backup, "
                   "and restore-drill cannot tell it not to: refusing to boot the backup "
                   "(see docs/guarantees.md)")  # fmt: skip


def bridge_name(lab_id: str) -> str:
    return f"rd{lab_id}"


def _mac() -> str:
    return "52:54:00:" + ":".join(f"{random.randrange(256):02x}" for _ in range(3))  # noqa: S311


def guard_applies(uri: str) -> bool:
    """Labs on this host's own QEMU have a bridge here to guard; the test driver has none."""
    return uri.startswith("qemu:///")


def _remove(hv: Hypervisor, host: LabHost, record: LabRecord, folder: Path) -> list[str]:
    """Everything of one lab, on its host and here; what was removed."""
    removed = _remove_running(hv, record)
    if record.guarded and host.unblock(record.lab_id):
        removed.append(f"host guard {guard.table_name(record.lab_id)}")
    removed += [f"virtiofsd {pid}" for pid in record.share_pids if share.stop(pid, folder)]
    return removed + host.remove_folder(record.lab_id) + _remove_folder(folder)


def _remove_running(hv: Hypervisor, record: LabRecord) -> list[str]:
    """The lab's VMs and, beside them, its network and namespace. Each removal waits for
    libvirt to see a process gone (QEMU, dnsmasq), and libvirt looks every 200 ms: the two
    waits overlap. Nothing opens meanwhile: the host guard stays until both are gone."""

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="teardown") as beside:
        networks = beside.submit(_remove_network, hv, record)
        domains = _remove_objects(hv, record.domains, ())
        return domains + networks.result()


def _remove_network(hv: Hypervisor, record: LabRecord) -> list[str]:
    gone = [f"network {n}" for n in record.networks if hv.destroy_network(n)]
    return gone + (netns.destroy(record.lab_id, record.dnsmasq_pid) if record.netns else [])


def _remove_objects(hv: Hypervisor, domains: Sequence[str], networks: Sequence[str],
                    pools: Sequence[str] = ()) -> list[str]:  # fmt: skip
    removed = [f"domain {d}" for d in domains if hv.destroy_domain(d)]
    removed += [f"network {n}" for n in networks if hv.destroy_network(n)]
    return removed + [f"storage pool {p}" for p in pools if hv.destroy_pool(p)]


def _remove_folder(folder: Path) -> list[str]:
    """The lab folder, after unmounting the read-only views in it. A folder that still holds
    a mount is left in place (and said): never remove files through a mount."""
    removed = []
    for point in share.mounts_under(folder):
        share.unmount(point)
        removed.append(f"share view {point.name}")
    if share.mounts_under(folder):
        raise LabError(f"{folder} still holds a mount: not removed")
    if folder.exists():
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(f"folder {folder}")
    return removed


def list_labs(root: Path | None = None) -> list[LabRecord]:
    """Every lab folder's record, oldest first."""
    records = []
    for file in sorted(((root or state_root()) / "labs").glob("*/lab.json")):
        try:
            records.append(LabRecord(**json.loads(file.read_text())))
        except (OSError, ValueError, TypeError):
            continue
    return sorted(records, key=lambda r: r.created)


def reap(hv: Hypervisor, include_kept: bool, root: Path | None = None,
         host: LabHost | None = None) -> list[str]:  # fmt: skip
    """Remove the labs on ``hv`` (its ``host``; default this machine) whose drill is gone,
    and kept ones if asked; what was removed. Labs of other hosts are left to theirs."""
    labs_dir = (root or state_root()) / "labs"
    host = host or LocalHost(labs_dir, hv.uri)
    here = not host.remote and guard_applies(hv.uri)
    # libvirt objects first, records second: a drill saves its record before it creates any
    # object, so every object seen here of a drill starting meanwhile has its record read below.
    objects = hv.lab_objects()
    tables = host.guard_tables() if here or host.remote else []
    spaces = netns.namespaces() if here else []
    folders = host.lab_folders()
    every = {r.lab_id: r for r in list_labs(root)}
    records = {i: r for i, r in every.items() if r.uri == hv.uri}
    live = {i for i, r in every.items() if r.owner_alive() and not r.kept}
    keep = {i for i, r in every.items() if r.kept and not include_kept}
    spared = live | keep | (every.keys() - records.keys())  # another host's are not ours
    removed: list[str] = []
    for lab_id, record in records.items():
        if lab_id not in spared:
            removed += _remove(hv, host, record, labs_dir / lab_id)
    # libvirt objects with no folder: from a lab whose folder was deleted by hand.
    stray: list[LabObject] = [o for o in objects if o.lab_id not in spared]
    removed += _remove_objects(hv, [o.name for o in stray if o.kind == "domain"],
                               [o.name for o in stray if o.kind == "network"],
                               [o.name for o in stray if o.kind == "pool"])  # fmt: skip
    for lab_id in spaces:
        if lab_id not in spared and lab_id not in records:  # its folder lost too
            removed += netns.destroy(lab_id, None)
    for table in tables:  # host guards whose lab is gone (its folder lost too)
        lab_id = table.removeprefix(guard.TABLE_PREFIX)
        if lab_id not in spared and host.unblock(lab_id):
            removed.append(f"host guard {table}")
    for lab_id in folders:  # a remote host's lab folders whose lab is gone
        if lab_id not in spared and lab_id not in records:
            removed += host.remove_folder(lab_id)
    for folder in labs_dir.glob("*") if labs_dir.exists() and not host.remote else []:
        young = folder.is_dir() and time.time() - folder.stat().st_mtime < 60  # being made
        if folder.is_dir() and not young and folder.name not in every:
            removed += _remove_folder(folder)
    if not host.remote:  # a scan's daemon, loop devices and folder (harness.scan.isolated)
        removed += reap_scans(root or state_root())
    return removed
