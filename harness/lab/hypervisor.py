"""The only module that imports libvirt. libvirt errors become :mod:`harness.errors` here,
compared by named error codes, never by message text."""

from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import libvirt

from harness.durations import READINESS_POLL_S
from harness.errors import InfraError, LabError, PhaseFailed, PhaseTimeout
from harness.lab.xml import NAME_PREFIX

# libvirt prints every error to stderr by default; we translate them instead.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

_GONE = (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_NO_NETWORK, libvirt.VIR_ERR_NO_STORAGE_POOL)

START_HINT = (
    "is libvirtd running? Start it with 'systemctl start libvirtd' "
    "(without systemd: 'virtlogd -d && libvirtd -d' as root), or pass --connect URI"
)


@dataclass(frozen=True)
class LabObject:
    """A libvirt object restore-drill created, found by its name prefix."""

    kind: str  # "domain" | "network" | "pool"
    name: str
    lab_id: str


#: How long one libvirt call may take before libvirtd is taken to be hung. Starting a VM under
#: load takes seconds; a minute of silence is no longer load.
CALL_TIMEOUT_S = 60.0

T = TypeVar("T")


class _Watchdog:
    """Runs each libvirt call in a thread of its own and waits for it at most ``timeout_s``:
    a libvirtd that hangs (stopped, deadlocked, its socket frozen) becomes a clear error
    naming the call instead of a drill that never ends. After one hang, no further call is
    tried: each would hang as well."""

    def __init__(self, uri: str, timeout_s: float) -> None:
        self.uri, self.timeout_s, self.hung = uri, timeout_s, ""

    def run(self, what: str, call: Callable[[], T]) -> T:
        if self.hung:
            raise InfraError(f"libvirtd at {self.uri} stopped answering ({self.hung}); "
                             f"not asking it again")  # fmt: skip
        box: list[tuple[bool, Any]] = []

        def work() -> None:
            try:
                box.append((True, call()))
            except BaseException as exc:  # handed to the caller's thread below
                box.append((False, exc))

        worker = threading.Thread(target=work, name=f"libvirt {what}", daemon=True)
        worker.start()
        worker.join(self.timeout_s)
        if not box:
            self.hung = f"{what} got no answer within {self.timeout_s:g}s"
            raise InfraError(f"libvirtd at {self.uri} did not answer {what} within "
                             f"{self.timeout_s:g}s: it is hung or overloaded")  # fmt: skip
        ok, value = box[0]
        if ok:
            return cast(T, value)
        raise value


class _Bounded:
    """A libvirt object (connection, domain, network, pool, volume, stream) whose every
    method call goes through the watchdog; the objects it returns are bounded likewise."""

    def __init__(self, target: Any, watchdog: _Watchdog) -> None:
        self._target, self._watchdog = target, watchdog

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            plain = [a._target if isinstance(a, _Bounded) else a for a in args]  # a stream
            return self._wrap(self._watchdog.run(name, lambda: attr(*plain, **kwargs)))

        return call

    def _wrap(self, value: Any) -> Any:
        if isinstance(value, libvirt.virConnect | libvirt.virDomain | libvirt.virNetwork
                      | libvirt.virStoragePool | libvirt.virStorageVol | libvirt.virStream):
            return _Bounded(value, self._watchdog)
        if isinstance(value, list):
            return [self._wrap(v) for v in value]
        return value


class Hypervisor:
    """A libvirt connection with the few operations a lab needs; every call bounded."""

    def __init__(self, uri: str, timeout_s: float = CALL_TIMEOUT_S) -> None:
        self.uri = uri
        self._watchdog = _Watchdog(uri, timeout_s)
        try:
            self._conn: Any = _Bounded(self._watchdog.run("open", lambda: libvirt.open(uri)),
                                       self._watchdog)  # fmt: skip
        except libvirt.libvirtError as exc:
            hint = START_HINT if "://" not in uri or uri.split("://")[1].startswith("/") else (
                "is the host up, its sshd reachable and its libvirtd running?")
            raise InfraError(f"cannot connect to libvirt at {uri}: {_msg(exc)}; {hint}") from exc

    def close(self) -> None:
        if self._watchdog.hung:
            return  # closing would wait on the hung daemon too
        with suppress(libvirt.libvirtError):
            self._conn.close()

    def __enter__(self) -> Hypervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- facts for the evidence -------------------------------------------------------------
    def version(self) -> str:
        """libvirt's version. (Not getVersion()/getCapabilities(): on some hosts libvirt
        re-probes QEMU on every call, seconds each, which would count against the RTO.)"""
        number = self._conn.getLibVersion()
        return f"{number // 1000000}.{number // 1000 % 1000}.{number % 1000}"

    def security_model(self) -> str:
        """The host's primary security driver: ``none``, ``selinux``, ``apparmor``…"""
        try:
            return str(self._conn.getSecurityModel()[0] or "none")
        except libvirt.libvirtError as exc:
            raise LabError(f"cannot read libvirt's security model: {_msg(exc)}") from exc

    def free_memory_mib(self) -> int:
        """What the host can give to new VMs: free plus page cache and buffers (as Linux's
        MemAvailable counts them), else, where the driver has no such figure (libvirt's test
        driver), its total memory."""
        try:
            stats = self._conn.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS)
            return sum(int(stats.get(k, 0)) for k in ("free", "buffers", "cached")) // 1024
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
                raise InfraError(f"cannot read the free memory of {self.uri}: "
                                 f"{_msg(exc)}") from exc  # fmt: skip
        return int(self._conn.getInfo()[1])

    def kvm_supported(self) -> bool:
        """Whether the host's libvirt offers KVM domains (its domain capabilities)."""
        try:
            self._conn.getDomainCapabilities(None, "x86_64", None, "kvm", 0)
        except libvirt.libvirtError:
            return False
        return True

    def host_facts(self) -> dict[str, str]:
        """The host, for the report: its name, libvirt and QEMU versions, architecture and
        CPUs (getVersion asks QEMU's version: called once per drill, before the lab)."""
        info = self._conn.getInfo()
        try:
            qemu = self._conn.getVersion()
            qemu_text = f"{qemu // 1000000}.{qemu // 1000 % 1000}.{qemu % 1000}"
        except libvirt.libvirtError:
            qemu_text = ""
        return {"hostname": str(self._conn.getHostname()), "libvirt": self.version(),
                "qemu": qemu_text, "arch": str(info[0]), "cpus": str(info[2])}

    # -- networks ---------------------------------------------------------------------------
    def used_subnets(self) -> set[str]:
        """Every IPv4 address prefix any libvirt network uses, to pick a free one."""
        used: set[str] = set()
        try:
            networks = self._conn.listAllNetworks()
        except libvirt.libvirtError as exc:
            raise LabError(f"cannot list libvirt networks: {_msg(exc)}") from exc
        for net in networks:
            try:
                # B314: from libvirtd
                root = ET.fromstring(net.XMLDesc())  # nosec B314
            except libvirt.libvirtError:
                continue
            for ip in root.iter("ip"):
                address = ip.get("address", "")
                used.add(address.rsplit(".", 1)[0])
        return used

    def create_network(self, xml: str) -> str:
        """Start a transient network; return its XML as libvirt now reports it."""
        try:
            return str(self._conn.networkCreateXML(xml).XMLDesc())
        except libvirt.libvirtError as exc:
            raise LabError(f"cannot create the isolated lab network: {_msg(exc)}") from exc

    def destroy_network(self, name: str) -> bool:
        """Remove a network; False if it was already gone."""
        return _destroy(lambda: self._conn.networkLookupByName(name), f"network {name}")

    # -- domains ----------------------------------------------------------------------------
    def create_domain(self, xml: str) -> None:
        """Start a transient domain: it vanishes from libvirt once destroyed."""
        try:
            self._conn.createXML(xml, 0)
        except libvirt.libvirtError as exc:
            raise LabError(f"cannot start the lab VM: {_msg(exc)}") from exc

    def destroy_domain(self, name: str) -> bool:
        """Power off a domain (transient: that removes it); False if already gone."""
        return _destroy(lambda: self._conn.lookupByName(name), f"VM {name}")

    def is_running(self, name: str) -> bool:
        """Whether the domain exists and runs."""
        try:
            return bool(self._conn.lookupByName(name).isActive())
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return False
            raise LabError(f"cannot read the state of VM {name}: {_msg(exc)}") from exc

    def screenshot(self, name: str) -> tuple[str, bytes]:
        """What the VM's screen shows now: the image's MIME type and bytes (QEMU 7.1 and
        later give PNG; older ones PPM). The VM needs a video device; no display is opened."""
        try:
            stream = self._conn.newStream(0)
            mime = str(self._conn.lookupByName(name).screenshot(stream, 0))
            chunks: list[bytes] = []
            stream.recvAll(lambda _stream, data, acc: acc.append(data), chunks)
            stream.finish()
        except libvirt.libvirtError as exc:
            raise LabError(f"cannot take a screenshot of VM {name}: {_msg(exc)}") from exc
        return mime, b"".join(chunks)

    def wait_for_lease(
        self, name: str, mac: str, timeout_s: float, cancelled: Callable[[], None],
        seen: Callable[[], str] = lambda: "",
    ) -> str:  # fmt: skip
        """Poll the DHCP lease of ``mac`` until ``timeout_s``; the guest's IPv4 address.
        ``seen`` tells what the guest's NIC sent meanwhile, for a failure's reason."""
        deadline = time.monotonic() + timeout_s
        while True:
            cancelled()
            try:
                dom = self._conn.lookupByName(name)
                if not dom.isActive():
                    raise PhaseFailed("boot", "the VM stopped before it got a DHCP lease"
                                      + _seen(seen))  # fmt: skip
                addresses: dict[str, Any] = dom.interfaceAddresses(
                    libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE
                )
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    raise PhaseFailed("boot", "the VM vanished before it got a lease") from exc
                raise LabError(f"cannot read DHCP leases: {_msg(exc)}") from exc
            for iface in addresses.values():
                if str(iface.get("hwaddr", "")).lower() == mac.lower():
                    for addr in iface.get("addrs") or []:
                        if addr.get("type") == libvirt.VIR_IP_ADDR_TYPE_IPV4:
                            return str(addr["addr"])
            if time.monotonic() >= deadline:
                raise PhaseTimeout("boot", f"no DHCP lease within {timeout_s:g}s{_seen(seen)} "
                                   "(see the console log)")  # fmt: skip
            time.sleep(READINESS_POLL_S)

    # -- storage (a remote lab's files) ------------------------------------------------------
    def create_pool(self, xml: str) -> None:
        """Start a transient storage pool, building its folder."""
        try:
            self._conn.storagePoolCreateXML(xml, libvirt.VIR_STORAGE_POOL_CREATE_WITH_BUILD)
        except libvirt.libvirtError as exc:
            raise LabError(f"cannot create the lab's storage pool: {_msg(exc)}") from exc

    def create_volume(self, pool: str, xml: str) -> str:
        """A volume in ``pool`` (libvirt runs qemu-img on the host); its path there."""
        try:
            return str(self._conn.storagePoolLookupByName(pool).createXML(xml, 0).path())
        except libvirt.libvirtError as exc:
            raise LabError(f"cannot create a volume in the lab's storage pool: "
                           f"{_msg(exc)}") from exc  # fmt: skip

    def upload_volume(self, pool: str, name: str, source: Path) -> None:
        """Replace a volume's content with a file of this machine (libvirt's stream)."""
        size = source.stat().st_size
        try:
            volume = self._conn.storagePoolLookupByName(pool).storageVolLookupByName(name)
            stream = self._conn.newStream(0)
            volume.upload(stream, 0, size, 0)
            with source.open("rb") as fh:
                stream.sendAll(lambda _stream, n, _fh: fh.read(n), None)
            stream.finish()
        except libvirt.libvirtError as exc:
            raise LabError(f"cannot upload {source.name} into the lab's storage pool: "
                           f"{_msg(exc)}") from exc  # fmt: skip

    def destroy_pool(self, name: str) -> bool:
        """Stop a transient pool (its files stay: the folder is removed over SSH)."""
        return _destroy(lambda: self._conn.storagePoolLookupByName(name), f"storage pool {name}")

    # -- finding what we left behind ---------------------------------------------------------
    def lab_objects(self) -> list[LabObject]:
        """Every domain, network and storage pool carrying restore-drill's name prefix."""
        try:
            domains = self._conn.listAllDomains()
            networks = self._conn.listAllNetworks()
            pools = self._conn.listAllStoragePools()
        except libvirt.libvirtError as exc:
            raise LabError(f"cannot list libvirt objects: {_msg(exc)}") from exc
        found = [
            LabObject("domain", d.name(), lab_id_of(d.name()))
            for d in domains
            if d.name().startswith(NAME_PREFIX)
        ]
        found += [
            LabObject("network", n.name(), lab_id_of(n.name()))
            for n in networks
            if n.name().startswith(NAME_PREFIX)
        ]
        found += [LabObject("pool", p.name(), lab_id_of(p.name()))
                  for p in pools if p.name().startswith(NAME_PREFIX)]  # fmt: skip
        return found


def _destroy(lookup: Callable[[], Any], what: str) -> bool:
    """Destroy the object ``lookup`` finds; False if it was gone (or already stopped)."""
    try:
        lookup().destroy()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() in (*_GONE, libvirt.VIR_ERR_OPERATION_INVALID):
            return False
        raise LabError(f"cannot remove {what}: {_msg(exc)}") from exc
    return True


def lab_id_of(name: str) -> str:
    """``rdrill-1a2b3c4d-web`` → ``1a2b3c4d``."""
    return name.removeprefix(NAME_PREFIX).split("-", 1)[0]


def _seen(seen: Callable[[], str]) -> str:
    said = seen()
    return f": {said}" if said else ""


def _msg(exc: libvirt.libvirtError) -> str:
    return str(exc.get_error_message() or exc).strip()
