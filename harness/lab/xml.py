"""libvirt XML for a lab: an isolated network and a transient domain, built with ElementTree.

Pure functions, no libvirt import: golden-file tests pin the output.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from harness.qemu_img import Layer

METADATA_NS = "https://restore-drill.dev/xmlns/lab/1"
DNSMASQ_NS = "http://libvirt.org/schemas/network/dnsmasq/1.0"
NAME_PREFIX = "rdrill-"


@dataclass(frozen=True)
class NetworkHost:
    """A lab VM with a fixed address and the names that resolve to it inside the lab."""

    mac: str
    ip: str
    names: tuple[str, ...]


@dataclass(frozen=True)
class NetworkPlan:
    """An isolated /24 with DHCP and no route anywhere; ``hosts`` (several VMs) get fixed
    addresses and names served by the lab's own DNS, which answers nothing else."""

    name: str
    bridge: str
    subnet: int  # third octet of 10.213.X.0/24 (a range reserved for labs)
    hosts: tuple[NetworkHost, ...] = ()
    #: a lab that replicates production subnets: a bare bridge (no address, no DHCP, no DNS
    #: on the host); the lab's side lives in its own namespace (:mod:`harness.lab.netns`)
    replicated: bool = False

    @property
    def gateway(self) -> str:
        return f"10.213.{self.subnet}.1"

    def address(self, index: int) -> str:
        """The fixed address of the lab's ``index``-th VM."""
        return f"10.213.{self.subnet}.{10 + index}"


@dataclass(frozen=True)
class DomainPlan:
    """One transient VM booting a copy-on-write overlay of the backup."""

    name: str
    lab_id: str
    scenario: str
    domain_type: str  # "kvm" or "qemu" (TCG)
    memory_mib: int
    vcpus: int
    overlay: Path
    backing: tuple[Layer, ...]  # the backup (or base image), then its own backing files
    network: str
    mac: str
    console_log: Path
    #: security models whose labels every backing layer keeps (relabel='no'): always DAC
    #: (no chown), and SELinux on a host that enforces it (no chcon)
    keep_labels: tuple[str, ...] = ("dac",)
    #: the server's further disks (vdb, vdc, …): each overlay and the layers below it
    more_disks: tuple[tuple[Path, tuple[Layer, ...]], ...] = ()
    firmware: str = "bios"  # or "uefi": OVMF, its variables in ``nvram`` (this lab's own)
    secure_boot: bool = False
    nvram: Path | None = None
    #: host folders shared read-only (virtiofs): each guest tag and virtiofsd's socket
    shares: tuple[tuple[str, Path], ...] = ()
    #: SMBIOS type 11 strings the guest reads (the rescue system: the drill's public key)
    oem_strings: tuple[str, ...] = ()
    #: a VGA adapter (no display is opened): the screenshots of the report; a rebuilt
    #: system's BIOS GRUB hangs without one
    video: str = "vga"  # QEMU's video model; "" none


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = text
    return element


def _tostring(root: ET.Element) -> str:
    ET.indent(root)
    return ET.tostring(root, encoding="unicode")


def network_xml(plan: NetworkPlan) -> str:
    """No ``<forward>``: libvirt makes it an isolated network (guests reach only each other).
    A replicated lab's network is the bare bridge: no ``<ip>``, so the host has no address on
    it and serves neither DHCP nor DNS there.

    Without ``hosts`` DNS is off, so guests cannot even resolve names through the host's
    resolvers. With ``hosts`` the lab's dnsmasq answers the lab's own names and, with
    ``no-resolv``, forwards nothing: a name outside the lab still resolves nowhere.
    """
    net = ET.Element("network")
    _sub(net, "name", plan.name)
    _sub(net, "bridge", name=plan.bridge, stp="off", delay="0")
    if plan.replicated:
        _sub(net, "dns", enable="no")
        return _tostring(net)
    if not plan.hosts:
        _sub(net, "dns", enable="no")
    else:
        dns = _sub(net, "dns", enable="yes", forwardPlainNames="no")
        for host in plan.hosts:
            entry = _sub(dns, "host", ip=host.ip)
            for name in host.names:
                _sub(entry, "hostname", name)
    ip = _sub(net, "ip", address=plan.gateway, netmask="255.255.255.0")
    dhcp = _sub(ip, "dhcp")
    first = 100 if plan.hosts else 10
    _sub(dhcp, "range", start=f"10.213.{plan.subnet}.{first}", end=f"10.213.{plan.subnet}.250")
    for host in plan.hosts:
        _sub(dhcp, "host", mac=host.mac, name=host.names[0], ip=host.ip)
    if plan.hosts:
        ET.register_namespace("dnsmasq", DNSMASQ_NS)
        options = ET.SubElement(net, f"{{{DNSMASQ_NS}}}options")
        ET.SubElement(options, f"{{{DNSMASQ_NS}}}option", value="no-resolv")
    return _tostring(net)


def domain_xml(plan: DomainPlan) -> str:
    """A transient domain; ``relabel='no'`` on every layer keeps libvirt from chowning (or
    SELinux-relabelling) the backup and each of its backing files.

    With libvirt's default dynamic_ownership, starting a domain chowns every image of the
    disk's backing chain to the qemu user, the backup included. The harness gives the overlay
    to the qemu user itself and leaves every layer below it exactly as it found it. The chain
    is written out whole, ending in an empty ``<backingStore/>``: libvirt then opens exactly
    these files, read-only, and probes nothing.
    """
    dom = ET.Element("domain", type=plan.domain_type)
    _sub(dom, "name", plan.name)
    meta = _sub(dom, "metadata")
    ET.register_namespace("rdrill", METADATA_NS)
    lab = ET.SubElement(meta, f"{{{METADATA_NS}}}lab")
    lab.set("id", plan.lab_id)
    lab.set("scenario", plan.scenario)
    lab.set("overlay", str(plan.overlay))
    _sub(dom, "memory", str(plan.memory_mib), unit="MiB")
    if plan.shares:  # virtiofsd maps the guest's memory: it must be shared memory
        memory = _sub(dom, "memoryBacking")
        _sub(memory, "source", type="memfd")
        _sub(memory, "access", mode="shared")
    _sub(dom, "vcpu", str(plan.vcpus))
    _os(dom, plan)
    features = _sub(dom, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    if plan.secure_boot:
        _sub(features, "smm", state="on")  # OVMF's Secure Boot build needs SMM
    if plan.domain_type == "kvm":
        _sub(dom, "cpu", mode="host-passthrough")
    _sub(dom, "clock", offset="utc")
    _sub(dom, "on_poweroff", "destroy")
    _sub(dom, "on_reboot", "restart")
    _sub(dom, "on_crash", "destroy")
    devices = _sub(dom, "devices")
    disks = ((plan.overlay, plan.backing), *plan.more_disks)
    for letter, (overlay, backing) in zip("abcdefghijklmnopq", disks, strict=False):
        _disk(devices, overlay, backing, f"vd{letter}", plan.keep_labels)

    for tag, socket in plan.shares:  # virtiofsd started by the harness (lab.share)
        fs = _sub(devices, "filesystem", type="mount")
        _sub(fs, "driver", type="virtiofs", queue="1024")
        _sub(fs, "source", socket=str(socket))
        _sub(fs, "target", dir=tag)

    iface = _sub(devices, "interface", type="network")
    _sub(iface, "source", network=plan.network)
    _sub(iface, "mac", address=plan.mac)
    _sub(iface, "model", type="virtio")

    # A pty serial whose output virtlogd copies to a file: evidence now, `virsh console` later.
    serial = _sub(devices, "serial", type="pty")
    _sub(serial, "log", file=str(plan.console_log), append="off")
    _sub(serial, "target", port="0")
    console = _sub(devices, "console", type="pty")
    _sub(console, "target", type="serial", port="0")
    if plan.video:
        _sub(_sub(devices, "video"), "model", type=plan.video)
    _sub(devices, "rng", model="virtio").append(_backend_random())
    _sub(devices, "memballoon", model="none")
    return _tostring(dom)


def _os(dom: ET.Element, plan: DomainPlan) -> None:
    """Firmware and boot device; SMBIOS strings the guest reads, if any."""
    os_el = _sub(dom, "os")
    if plan.firmware == "uefi":
        _uefi(os_el, plan)
    else:
        _sub(os_el, "type", "hvm", arch="x86_64", machine="pc")
    _sub(os_el, "boot", dev="hd")
    if plan.oem_strings:
        _sub(os_el, "smbios", mode="sysinfo")
        strings = _sub(_sub(dom, "sysinfo", type="smbios"), "oemStrings")
        for text in plan.oem_strings:
            _sub(strings, "entry", text)


def _uefi(os_el: ET.Element, plan: DomainPlan) -> None:
    """libvirt picks OVMF by its descriptors; asked explicitly for or against Secure Boot
    (its first pick would be the Secure Boot build with Microsoft's keys, which refuses an
    unsigned boot loader). The variables live in the lab's folder: never another domain's,
    removed with the lab."""
    os_el.set("firmware", "efi")
    _sub(os_el, "type", "hvm", arch="x86_64", machine="q35")
    firmware = _sub(os_el, "firmware")
    state = "yes" if plan.secure_boot else "no"
    _sub(firmware, "feature", enabled=state, name="secure-boot")
    _sub(firmware, "feature", enabled=state, name="enrolled-keys")
    if plan.nvram is not None:
        _sub(os_el, "nvram", str(plan.nvram))


def _disk(devices: ET.Element, overlay: Path, backing: tuple[Layer, ...], dev: str,
          keep_labels: tuple[str, ...]) -> None:  # fmt: skip
    disk = _sub(devices, "disk", type="file", device="disk")
    _sub(disk, "driver", name="qemu", type="qcow2", discard="unmap")
    source = _sub(disk, "source", file=str(overlay))
    _sub(source, "seclabel", model="dac", relabel="no")
    parent = disk
    for layer in backing:
        parent = _sub(parent, "backingStore", type="file")
        _sub(parent, "format", type=layer.format)
        layer_source = _sub(parent, "source", file=str(layer.path))
        for model in keep_labels:
            _sub(layer_source, "seclabel", model=model, relabel="no")
    _sub(parent, "backingStore")
    _sub(disk, "target", dev=dev, bus="virtio")


def _backend_random() -> ET.Element:
    backend = ET.Element("backend", model="random")
    backend.text = "/dev/urandom"
    return backend
