"""What a guest's NIC actually sent while it booted: for a boot that never answers, a failure
that says what was seen ("ARP from 192.168.10.20 asking for 192.168.10.1", "no frame at
all") instead of guessing.

A raw packet socket on the lab side of the veth (inside the lab namespace) counts the frames
whose source is the guest's MAC: ARP, DHCP requests, the IPv4 sources it used, VLAN tags,
IPv6. Read-only and passive: it never sends anything.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from dataclasses import dataclass, field

from harness.remote.namespace import entered

ETH_P_ALL = 0x0003
UNSPECIFIED = str(ipaddress.IPv4Address(0))  # a sender with no address yet (ARP probe, DHCP)


@dataclass
class Seen:
    frames: int = 0
    arp: set[tuple[str, str]] = field(default_factory=set)  # (sender, asked for)
    dhcp: int = 0
    sources: set[str] = field(default_factory=set)
    vlans: set[int] = field(default_factory=set)
    ipv6: int = 0

    def add(self, frame: bytes) -> None:
        self.frames += 1
        kind, body = int.from_bytes(frame[12:14], "big"), frame[14:]
        if kind == 0x8100 and len(body) >= 4:
            self.vlans.add(int.from_bytes(body[0:2], "big") & 0x0FFF)
            kind, body = int.from_bytes(body[2:4], "big"), body[4:]
        if kind == 0x0806 and len(body) >= 28:
            self.arp.add((_ip4(body[14:18]), _ip4(body[24:28])))
        elif kind == 0x0800 and len(body) >= 20:
            header = (body[0] & 0x0F) * 4
            source = _ip4(body[12:16])
            if body[9] == 17 and body[header + 2 : header + 4] == b"\x00\x43":
                self.dhcp += 1
            elif source != UNSPECIFIED:
                self.sources.add(source)
        elif kind == 0x86DD:
            self.ipv6 += 1

    def summary(self) -> str:
        """What the guest sent, in words."""
        if not self.frames:
            return "no frame at all from the guest's NIC"
        said = []
        for sender, target in sorted(self.arp)[:4]:
            said.append(f"the guest sent ARP from {sender} asking for {target}"
                        if sender != UNSPECIFIED else f"the guest probed {target} by ARP")
        if self.dhcp:
            said.append(f"{self.dhcp} DHCP request(s), no lease accepted")
        if self.sources:
            said.append("IPv4 traffic from " + ", ".join(sorted(self.sources)[:4]))
        if self.vlans:
            said.append("VLAN-tagged frames (VLAN " + ", ".join(map(str, sorted(self.vlans)))
                        + "): the lab network carries no VLANs")  # fmt: skip
        if self.ipv6:
            said.append(f"{self.ipv6} IPv6 frame(s)")
        return f"{self.frames} frame(s) from the guest's NIC: " + "; ".join(said or ["none "
                                                                                "of them IP"])


def _ip4(raw: bytes) -> str:
    return str(ipaddress.IPv4Address(raw))


class Watch:
    """Count a guest's frames on ``iface`` in namespace ``ns`` (None: this thread's own)
    until :meth:`stop`."""

    def __init__(self, ns: str | None, iface: str, mac: str) -> None:
        self.seen = Seen()
        self._mac = bytes.fromhex(mac.replace(":", ""))
        self._stop = threading.Event()
        self.error = ""
        with entered(ns):
            self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW,
                                       socket.htons(ETH_P_ALL))  # fmt: skip
        self._sock.bind((iface, 0))
        self._sock.settimeout(0.5)
        self._thread = threading.Thread(target=self._run, name=f"watch {mac}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    frame = self._sock.recv(2048)
                except TimeoutError:
                    continue
                if frame[6:12] == self._mac:
                    self.seen.add(frame)
        except OSError as exc:
            self.error = str(exc)

    def stop(self) -> str:
        """Stop watching; what was seen."""
        self._stop.set()
        self._thread.join(2.0)
        self._sock.close()
        return self.seen.summary() + (f" (watch ended early: {self.error})" if self.error else "")
