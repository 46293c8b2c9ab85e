"""How a restored system configures its network, read from its own files (before it boots).

Pure functions over ``{path: text}`` (the files as read read-only from the backup by
:mod:`harness.guest.agent`): ifupdown (``/etc/network/interfaces`` and what it sources),
netplan, NetworkManager keyfiles, systemd-networkd and RHEL-style ``ifcfg`` files. The
result says, for each interface, whether it takes DHCP or which static addresses and gateway
it sets, and which file says so. Bonds, VLANs and bridges are reported as unsupported with
their reason: the lab gives a machine one plain NIC.
"""

from __future__ import annotations

import configparser
import fnmatch
import ipaddress
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

#: Every file or folder the detection reads, for the agent: folders are read whole.
PATHS = (
    "/etc/network/interfaces",
    "/etc/network/interfaces.d",
    "/etc/netplan",
    "/etc/NetworkManager/system-connections",
    "/etc/systemd/network",
    "/etc/sysconfig/network-scripts",
    "/etc/sysconfig/network",
    "/etc/resolv.conf",
)

UNSUPPORTED = "the lab gives each machine one plain NIC"


@dataclass(frozen=True)
class Address:
    """A static address an interface sets at boot."""

    interface: str
    cidr: str  # "192.168.10.20/24"; IPv6 too
    gateway: str | None
    source: str  # the file that says so

    @property
    def ip(self) -> str:
        return self.cidr.split("/")[0]

    @property
    def version(self) -> int:
        return ipaddress.ip_interface(self.cidr).version


@dataclass(frozen=True)
class NetworkConfig:
    """What the guest's own files say about its network."""

    addresses: tuple[Address, ...] = ()
    dhcp: tuple[str, ...] = ()  # "on eth0 in /etc/network/interfaces (inet dhcp)"
    unsupported: tuple[str, ...] = ()  # "bond0 (…): a bond; the lab gives …"
    files: tuple[str, ...] = ()  # the configuration files found
    nameservers: tuple[tuple[str, str], ...] = ()  # (address, the file that names it)

    @property
    def ipv4(self) -> tuple[Address, ...]:
        return tuple(a for a in self.addresses if a.version == 4)

    @property
    def ipv6(self) -> tuple[Address, ...]:
        return tuple(a for a in self.addresses if a.version == 6)

    def summary(self) -> str:
        """One line for the report."""
        parts = [f"{a.cidr} on {a.interface}"
                 + (f" via {a.gateway}" if a.gateway else "") + f" ({a.source})"
                 for a in self.addresses]  # fmt: skip
        parts += [f"DHCP {d}" for d in self.dhcp]
        parts += [f"unsupported: {u}" for u in self.unsupported]
        return "; ".join(parts) or "no network configuration found"


@dataclass
class _Found:
    addresses: list[Address] = field(default_factory=list)
    dhcp: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    nameservers: list[tuple[str, str]] = field(default_factory=list)

    def nameserver(self, words: Iterable[str], source: str) -> None:
        for word in words:
            try:
                address = ipaddress.ip_address(word.strip(",;"))
            except ValueError:
                continue
            if not address.is_loopback and str(address) not in (n for n, _ in self.nameservers):
                self.nameservers.append((str(address), source))

    def static(self, interface: str, cidr: str, gateway: str | None, source: str) -> None:
        try:
            parsed = ipaddress.ip_interface(cidr)
        except ValueError:
            self.unsupported.append(f"{interface} ({source}): {cidr!r} is not an address")
            return
        if parsed.network.prefixlen == parsed.max_prefixlen and "/" not in cidr:
            parsed = ipaddress.ip_interface(f"{parsed.ip}/{24 if parsed.version == 4 else 64}")
        self.addresses.append(Address(interface, str(parsed), gateway or None, source))

    def refuse(self, interface: str, source: str, what: str) -> None:
        self.unsupported.append(f"{interface} ({source}): {what}; {UNSUPPORTED}")


def detect(files: Mapping[str, str]) -> NetworkConfig:
    """Every format whose files are present; statics de-duplicated (first file wins)."""
    found = _Found()
    _ifupdown(files, found)
    _netplan(files, found)
    _networkmanager(files, found)
    _networkd(files, found)
    _ifcfg(files, found)
    _resolv_conf(files, found)
    seen: set[tuple[str, str]] = set()
    addresses = []
    for a in found.addresses:
        if (a.interface, a.cidr) not in seen:
            seen.add((a.interface, a.cidr))
            addresses.append(a)
    return NetworkConfig(tuple(addresses), tuple(found.dhcp), tuple(found.unsupported),
                         tuple(found.files), tuple(found.nameservers))  # fmt: skip


def _resolv_conf(files: Mapping[str, str], found: _Found) -> None:
    """The resolver the system asks (a stub at 127.0.0.53 is no address to replicate)."""
    for line in files.get("/etc/resolv.conf", "").splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            found.nameserver(words[1:2], "/etc/resolv.conf")


def _under(files: Mapping[str, str], folder: str, suffix: str = "") -> list[str]:
    return sorted(p for p in files if p.startswith(folder + "/") and p.endswith(suffix))


# --- ifupdown -------------------------------------------------------------------------------


def _ifupdown_lines(files: Mapping[str, str], path: str, depth: int = 0) -> Iterable[
        tuple[str, list[str]]]:  # fmt: skip
    """``(file, words)`` of each logical line, following ``source`` and ``source-directory``."""
    if depth > 8 or path not in files:
        return
    text = files[path].replace("\\\n", " ")
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if words[0] == "source":
            for pattern in words[1:]:
                full = pattern if pattern.startswith("/") else f"/etc/network/{pattern}"
                for included in sorted(p for p in files if fnmatch.fnmatch(p, full)):
                    yield from _ifupdown_lines(files, included, depth + 1)
        elif words[0] in ("source-directory", "source-dir"):
            folder = words[1].rstrip("/") if len(words) > 1 else ""
            folder = folder if folder.startswith("/") else f"/etc/network/{folder}"
            for included in _under(files, folder):
                name = included.rsplit("/", 1)[1]
                if re.fullmatch(r"[A-Za-z0-9_-]+", name):  # run-parts' naming rule
                    yield from _ifupdown_lines(files, included, depth + 1)
        else:
            yield path, words


def _ifupdown(files: Mapping[str, str], found: _Found) -> None:
    if "/etc/network/interfaces" not in files:
        return
    found.files.append("/etc/network/interfaces")
    started: set[str] = set()
    stanzas: list[tuple[str, str, str, str, dict[str, str]]] = []  # if, family, method, file
    current: dict[str, str] | None = None
    for path, words in _ifupdown_lines(files, "/etc/network/interfaces"):
        if path not in found.files:
            found.files.append(path)
        head = words[0]
        if head == "auto" or head.startswith("allow-"):
            started.update(words[1:])
            current = None
        elif head == "iface" and len(words) >= 4:
            current = {}
            stanzas.append((words[1], words[2], words[3], path, current))
        elif head in ("mapping", "rename"):
            current = None
        elif current is not None and len(words) >= 2:
            current.setdefault(head, " ".join(words[1:]))
    for name, family, method, path, options in stanzas:
        if name == "lo" or method == "loopback" or name not in started:
            continue
        kind = _ifupdown_kind(name, options)
        if kind:
            found.refuse(name, path, kind)
            continue
        if method in ("dhcp", "auto") or (family == "inet6" and method == "dhcp"):
            found.dhcp.append(f"on {name} in {path} ({family} {method})")
        if "dns-nameservers" in options:
            found.nameserver(options["dns-nameservers"].split(), path)
        if method == "static" and "address" in options:
            address = options["address"]
            if "/" not in address and "netmask" in options:
                mask = options["netmask"]
                prefix = mask if mask.isdigit() else str(
                    ipaddress.ip_network(f"0.0.0.0/{mask}").prefixlen)
                address = f"{address}/{prefix}"
            found.static(name, address, options.get("gateway"), path)


def _ifupdown_kind(name: str, options: Mapping[str, str]) -> str:
    if any(k.startswith("bond") for k in options) or name.startswith("bond"):
        return "a bond"
    if "vlan-raw-device" in options or "vlan_raw_device" in options or "." in name:
        return "a VLAN"
    if "bridge_ports" in options or "bridge-ports" in options:
        return "a bridge"
    return ""


# --- netplan --------------------------------------------------------------------------------


def _netplan(files: Mapping[str, str], found: _Found) -> None:
    paths = _under(files, "/etc/netplan", ".yaml")
    merged: dict[str, dict[str, Any]] = {}
    where: dict[str, str] = {}
    for path in paths:
        found.files.append(path)
        try:
            doc = yaml.safe_load(files[path]) or {}
        except yaml.YAMLError:
            found.unsupported.append(f"{path}: not valid YAML")
            continue
        network = doc.get("network") if isinstance(doc, dict) else None
        for section, entries in (network or {}).items():
            if not isinstance(entries, dict):
                continue
            for name, settings in entries.items():
                if not isinstance(settings, dict):
                    continue
                key = f"{section}/{name}"
                merged.setdefault(key, {}).update(settings)
                where[key] = path
    for key, settings in merged.items():
        section, name = key.split("/", 1)
        name = str(settings.get("set-name", name))
        path = where[key]
        if section in ("bonds", "vlans", "bridges"):
            what = {"bonds": "a bond", "vlans": "a VLAN"}.get(section, "a bridge")
            found.refuse(name, path, what)
            continue
        if section not in ("ethernets",):
            continue
        if settings.get("dhcp4") in (True, "true", "yes"):
            found.dhcp.append(f"on {name} in {path} (dhcp4)")
        if settings.get("dhcp6") in (True, "true", "yes"):
            found.dhcp.append(f"on {name} in {path} (dhcp6)")
        servers = settings.get("nameservers")
        if isinstance(servers, dict):
            found.nameserver(map(str, servers.get("addresses") or []), path)
        gateway4, gateway6 = settings.get("gateway4"), settings.get("gateway6")
        for route in settings.get("routes") or []:
            if isinstance(route, dict) and route.get("to") in ("default", "0.0.0.0/0"):
                gateway4 = route.get("via", gateway4)
            if isinstance(route, dict) and route.get("to") == "::/0":
                gateway6 = route.get("via", gateway6)
        for address in settings.get("addresses") or []:
            text = str(next(iter(address)) if isinstance(address, dict) else address)
            gateway = gateway6 if ":" in text else gateway4
            found.static(name, text, str(gateway) if gateway else None, path)


# --- NetworkManager keyfiles ----------------------------------------------------------------


def _ini(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep key case
    parser.read_string(text)
    return parser


def _networkmanager(files: Mapping[str, str], found: _Found) -> None:
    for path in _under(files, "/etc/NetworkManager/system-connections"):
        found.files.append(path)
        try:
            ini = _ini(files[path])
        except configparser.Error:
            found.unsupported.append(f"{path}: not a keyfile NetworkManager can read")
            continue
        kind = ini.get("connection", "type", fallback="")
        name = ini.get("connection", "interface-name", fallback="") or ini.get(
            "connection", "id", fallback=path.rsplit("/", 1)[1])
        if ini.get("connection", "autoconnect", fallback="true") == "false":
            continue
        if kind in ("bond", "vlan", "bridge", "team") or ini.has_option("connection", "master"):
            found.refuse(name, path, f"a {kind or 'port of a bond or bridge'}")
            continue
        if kind not in ("ethernet", "802-3-ethernet"):
            continue
        for family in ("ipv4", "ipv6"):
            method = ini.get(family, "method", fallback="auto" if family == "ipv4" else "")
            if method in ("auto", "dhcp") and (family == "ipv4" or method == "dhcp"):
                found.dhcp.append(f"on {name} in {path} ({family} {method})")
            if method != "manual":
                continue
            found.nameserver(ini.get(family, "dns", fallback="").split(";"), path)
            gateway = ini.get(family, "gateway", fallback=None)
            for key, value in ini.items(family):
                if re.fullmatch(r"address(es)?\d*", key):
                    for item in value.replace(";", " ").split():
                        address, _, via = item.partition(",")
                        found.static(name, address, via or gateway, path)


# --- systemd-networkd -----------------------------------------------------------------------


def _networkd(files: Mapping[str, str], found: _Found) -> None:
    netdevs: dict[str, str] = {}  # name → kind
    for path in _under(files, "/etc/systemd/network", ".netdev"):
        found.files.append(path)
        with_sections = _systemd_ini(files[path])
        name = with_sections.get(("NetDev", "Name"), [""])[0]
        netdevs[name] = with_sections.get(("NetDev", "Kind"), [""])[0]
    for path in _under(files, "/etc/systemd/network", ".network"):
        found.files.append(path)
        ini = _systemd_ini(files[path])
        name = " ".join(ini.get(("Match", "Name"), [])) or "any interface"
        kind = netdevs.get(name, "")
        if kind in ("bond", "vlan", "bridge") or ini.get(("Network", "Bond")):
            found.refuse(name, path, f"a {kind or 'port of a bond'}")
            continue
        if ini.get(("Network", "VLAN")) or ini.get(("Network", "Bridge")):
            found.refuse(name, path, "a VLAN or bridge port")
            continue
        dhcp = (ini.get(("Network", "DHCP")) or ["no"])[-1]
        if dhcp in ("yes", "true", "ipv4", "ipv6"):
            found.dhcp.append(f"on {name} in {path} (DHCP={dhcp})")
        found.nameserver(ini.get(("Network", "DNS"), []), path)
        gateways = ini.get(("Network", "Gateway"), []) + ini.get(("Route", "Gateway"), [])
        for address in ini.get(("Network", "Address"), []) + ini.get(("Address", "Address"), []):
            v6 = ":" in address
            gateway = next((g for g in gateways if (":" in g) == v6), None)
            found.static(name, address, gateway, path)


def _systemd_ini(text: str) -> dict[tuple[str, str], list[str]]:
    """``(section, key) → values``: systemd's files repeat keys, which configparser refuses."""
    out: dict[tuple[str, str], list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif "=" in line:
            key, _, value = line.partition("=")
            out.setdefault((section, key.strip()), []).extend(value.split())
    return out


# --- RHEL ifcfg -----------------------------------------------------------------------------


def _shell_vars(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and re.fullmatch(r"[A-Z0-9_]+", key):
            try:
                words = shlex.split(value, comments=True)
            except ValueError:
                continue
            out[key] = words[0] if words else ""
    return out


def _ifcfg(files: Mapping[str, str], found: _Found) -> None:
    common = _shell_vars(files.get("/etc/sysconfig/network", ""))
    for path in _under(files, "/etc/sysconfig/network-scripts"):
        if not path.rsplit("/", 1)[1].startswith("ifcfg-"):
            continue
        found.files.append(path)
        v = _shell_vars(files[path])
        name = v.get("DEVICE") or v.get("NAME") or path.rsplit("ifcfg-", 1)[1]
        if name == "lo" or v.get("ONBOOT", "yes").lower() not in ("yes", "true"):
            continue
        if v.get("TYPE", "").lower() in ("bond", "bridge") or "BONDING_OPTS" in v:
            found.refuse(name, path, f"a {v.get('TYPE', 'bond').lower()}")
            continue
        if v.get("VLAN", "").lower() == "yes" or "MASTER" in v or "BRIDGE" in v:
            found.refuse(name, path, "a VLAN, or a port of a bond or bridge")
            continue
        proto = v.get("BOOTPROTO", "none").lower()
        if proto in ("dhcp", "bootp"):
            found.dhcp.append(f"on {name} in {path} (BOOTPROTO={proto})")
        found.nameserver((v[k] for k in ("DNS1", "DNS2", "DNS3") if k in v), path)
        gateway = v.get("GATEWAY") or common.get("GATEWAY")
        for suffix in ("", "0", "1", "2", "3"):
            ip = v.get(f"IPADDR{suffix}")
            if not ip:
                continue
            prefix = v.get(f"PREFIX{suffix}")
            if not prefix and (mask := v.get(f"NETMASK{suffix}")):
                prefix = str(ipaddress.ip_network(f"0.0.0.0/{mask}").prefixlen)
            found.static(name, f"{ip}/{prefix}" if prefix else ip, gateway, path)
        if v.get("IPV6ADDR"):
            found.static(name, v["IPV6ADDR"], v.get("IPV6_DEFAULTGW"), path)
