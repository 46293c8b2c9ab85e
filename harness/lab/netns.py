"""The lab's side of a replicated production network: a network namespace per lab.

A lab whose machines keep their production addresses (``192.168.10.20/24``) must hold the
production gateway address somewhere, and that must never be the drill host's own interfaces
or routing table: the host may sit in that very subnet, and two labs may replicate the same
one. So the lab's side lives in a namespace of its own, ``rdrill-<lab id>``, joined to the
lab's libvirt bridge (which has no address) by a veth pair:

    guest NIC ─ bridge rd<id> (no address) ─ rdv<id> ═ veth ═ rdl<id> [netns rdrill-<id>]
                                                              192.168.10.1/24, dnsmasq

The namespace has no other interface, no route and no forwarding: nothing in it leads out.
Its own nftables table rejects every connection a guest opens to it except DHCP and DNS (the
lab's dnsmasq). The harness opens its SSH, HTTP and probe sockets inside it
(:func:`harness.remote.namespace.entered`, per thread). Everything here is removed with the
lab, and reaped by name after a kill -9.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path

from harness.errors import LabError
from harness.lab import guard
from harness.lab.tool import run_tool
from harness.remote.namespace import RUN_NETNS, link_exists

PREFIX = "rdrill-"
DNSMASQ = "/usr/sbin/dnsmasq"
DNSMASQ_START_S = 10.0
#: A guest's every attempt to leave must be *told* at once, not silently dropped (a silent
#: drop looks like a network that lets packets out, and the isolation probe says so). With
#: forwarding off, Linux drops a packet for another address without a word; so forwarding is
#: on, and the namespace answers: no route (it has none beyond the lab's subnets) → "network
#: unreachable" at once (no rate limit on those answers), any packet that would be forwarded
#: → rejected by the forward chain of :func:`guard_rules`. No IPv6: no link-local address for
#: a guest to reach.
SYSCTLS = ("net.ipv4.ip_forward=1", "net.ipv4.icmp_ratelimit=0",
           "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")


def name_of(lab_id: str) -> str:
    return f"{PREFIX}{lab_id}"


def host_end(lab_id: str) -> str:
    """The veth end enslaved to the lab bridge, in the harness's namespace."""
    return f"rdv{lab_id}"


def lab_end(lab_id: str) -> str:
    """The veth end inside the lab namespace, holding the production gateway address(es)."""
    return f"rdl{lab_id}"


def guard_rules(lab_id: str, dhcp: bool, dns: bool) -> str:
    """The lab namespace's own tables: guests' connections to it (see
    :func:`harness.lab.guard.rules`), and nothing forwarded, ever."""
    return guard.rules("restore_drill_lab", lab_end(lab_id), dns, dhcp) + (
        "table inet restore_drill_no_forward {\n"
        "  chain forward {\n"
        "    type filter hook forward priority -10; policy drop;\n"
        '    reject with icmpx type admin-prohibited comment "nothing leaves the lab"\n'
        "  }\n"
        "}\n"
    )


def create(lab_id: str, bridge: str, addresses: Sequence[str], dhcp: bool, dns: bool) -> str:
    """The namespace, its veth into ``bridge`` and the lab side's ``addresses``; its name.
    The caller records the lab first: whatever exists after a failure here is reaped."""
    ns = name_of(lab_id)
    outside, inside = host_end(lab_id), lab_end(lab_id)
    _ip(["netns", "add", ns], "create the lab's network namespace")
    _ip(["link", "add", outside, "type", "veth", "peer", "name", inside, "netns", ns],
        "join the lab namespace to the lab network")  # fmt: skip
    _sysctl(f"net/ipv6/conf/{outside}/disable_ipv6", "1")  # no link-local address host side
    _ip(["link", "set", outside, "master", bridge, "up"], "join the lab namespace to the bridge")
    _ip(["-n", ns, "link", "set", "lo", "up"], "bring up the lab namespace")
    for address in addresses:
        _ip(["-n", ns, "address", "add", address, "dev", inside],
            f"give the lab's side its address {address}")  # fmt: skip
    # guarded before its link comes up, forwarding on only once nothing can be forwarded
    _in_ns(ns, ["nft", "-f", "-"], guard_rules(lab_id, dhcp, dns), "guard the lab namespace")
    _in_ns(ns, ["sysctl", "-q", "-w", *SYSCTLS], "", "set up the lab namespace's answers")
    _ip(["-n", ns, "link", "set", inside, "up"], "bring up the lab namespace's link")
    return ns


def start_dnsmasq(lab_id: str, folder: Path, gateway: str, subnet: str,
                  leases: Sequence[tuple[str, str, str]],
                  names: Sequence[tuple[str, str]]) -> int:  # fmt: skip
    """The lab's DHCP (a fixed lease per MAC) and DNS (the machines' names, nothing else),
    inside the namespace; its pid (recorded by the caller for teardown and reaping)."""
    args = [
        DNSMASQ, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
        "--no-poll", f"--interface={lab_end(lab_id)}", "--bind-interfaces",
        "--except-interface=lo", "--leasefile-ro", "--log-facility=-", "--log-dhcp",
        f"--pid-file={folder / 'dnsmasq.pid'}",
    ]  # fmt: skip
    if leases:
        net = ipaddress.IPv4Network(subnet)
        args += [f"--dhcp-range={net.network_address},static,{net.netmask}",
                 f"--dhcp-option=option:router,{gateway}",
                 f"--dhcp-option=option:dns-server,{gateway}"]  # fmt: skip
        args += [f"--dhcp-host={mac},{ip},{name}" for mac, ip, name in leases]
    else:
        args.append("--no-dhcp-interface=" + lab_end(lab_id))
    args += [f"--host-record={name},{ip}" for name, ip in names]
    log = (folder / "dnsmasq.log").open("ab")
    try:
        proc = subprocess.Popen(["ip", "netns", "exec", name_of(lab_id), *args], stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    except OSError as exc:
        raise LabError(f"cannot start the lab's DHCP and DNS (dnsmasq): {exc}") from exc
    finally:
        log.close()
    _started(proc, folder)
    return proc.pid


def _started(proc: subprocess.Popen[bytes], folder: Path) -> None:
    """dnsmasq checks its options and binds its sockets at once, then writes its pid file;
    one that stops instead fails the lab now, with what it said, not a boot later."""
    deadline = time.monotonic() + DNSMASQ_START_S
    while time.monotonic() < deadline and not (folder / "dnsmasq.pid").exists():
        if proc.poll() is not None:
            said = (folder / "dnsmasq.log").read_text(errors="replace").strip().splitlines()
            raise LabError("the lab's DHCP and DNS (dnsmasq) did not start: "
                           + (said[-1] if said else f"exit {proc.returncode}"))  # fmt: skip
        time.sleep(0.05)


def destroy(lab_id: str, dnsmasq_pid: int | None) -> list[str]:
    """Stop the lab's dnsmasq and remove the namespace (its veth goes with it); what was
    removed. Safe to call for a lab that has none of it."""
    removed = []
    if dnsmasq_pid and _is_lab_dnsmasq(dnsmasq_pid, lab_id) and _kill(dnsmasq_pid):
        removed.append(f"dnsmasq {dnsmasq_pid}")
    removed += _stray_dnsmasq(lab_id)
    ns = name_of(lab_id)
    # Each step tolerates another run's reap doing the same meanwhile (both see a dead lab).
    if (RUN_NETNS / ns).exists() and _gone(["ip", "netns", "delete", ns], RUN_NETNS / ns,
                                           "remove the lab's network namespace"):  # fmt: skip
        removed.append(f"network namespace {ns}")
    if link_exists(host_end(lab_id)):  # the namespace is still held
        _gone(["ip", "link", "delete", host_end(lab_id)], host_end(lab_id),
              "remove the lab's veth")
    return removed


def _kill(pid: int) -> bool:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def _gone(cmd: list[str], thing: Path | str, what: str) -> bool:
    """Run ``cmd`` to remove ``thing`` (a path, or a network interface); False if it went
    meanwhile."""
    try:
        _run(cmd, "", what)
    except LabError:
        if thing.exists() if isinstance(thing, Path) else link_exists(thing):
            raise
        return False
    return True


def namespaces() -> list[str]:
    """The lab ids of every lab namespace on this host (for reaping)."""
    if not RUN_NETNS.is_dir():
        return []
    return [p.name.removeprefix(PREFIX) for p in RUN_NETNS.iterdir() if p.name.startswith(PREFIX)]


def _is_lab_dnsmasq(pid: int, lab_id: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmdline) and cmdline[0].endswith(b"dnsmasq") and \
        f"--interface={lab_end(lab_id)}".encode() in cmdline


def _stray_dnsmasq(lab_id: str) -> list[str]:
    """A dnsmasq of this lab whose pid was never recorded (a kill -9 at the wrong moment)."""
    removed = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _is_lab_dnsmasq(int(entry.name), lab_id) and \
                _kill(int(entry.name)):
            removed.append(f"dnsmasq {entry.name}")
    return removed


def host_addresses() -> list[str]:
    """This namespace's own IPv4 addresses but loopback: the drill host as a guest of a
    replicated lab would have to find it (it has no route to any of them)."""
    out = _run(["ip", "-4", "-o", "address", "show"], "", "list this host's addresses")
    found = [line.split()[3].split("/")[0] for line in out.splitlines() if len(line.split()) > 3]
    return [a for a in found if not a.startswith("127.")]


def _ip(args: list[str], what: str) -> None:
    _run(["ip", *args], "", what)


def _in_ns(ns: str, args: list[str], stdin: str, what: str) -> None:
    _run(["ip", "netns", "exec", ns, *args], stdin, what)


def _sysctl(key: str, value: str) -> None:
    with suppress(OSError):  # IPv6 off on this host: nothing to disable
        Path("/proc/sys", key).write_text(value)


def _run(cmd: list[str], stdin: str, what: str) -> str:
    return run_tool(cmd, stdin, what)
