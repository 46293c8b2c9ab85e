"""The hypervisor host of a remote lab, over SSH with the account and key of its libvirt URI:
the jump host to the lab's guests (their isolated network is reachable from that host only),
and where the lab's files, its host guard and the backup as QEMU reads it live.

The host's key is pinned from a known_hosts file, never accepted on first sight; the key it
presented is recorded in the report. One connection per host and process, shared by every
use (a channel each); a connection that died is made again on next use.
"""

from __future__ import annotations

import json
import shlex
import threading
from collections.abc import Callable
from typing import Any

import paramiko

from harness.errors import InfraError, PhaseFailed
from harness.remote.commands import run_capture
from harness.remote.jump import Jump
from harness.remote.keys import HostKey

CONNECT_TIMEOUT_S = 20.0


class HostSession:
    """One SSH connection to a hypervisor host."""

    def __init__(self, jump: Jump, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        self.jump = jump
        self.client = paramiko.SSHClient()
        try:
            self.client.load_host_keys(jump.known_hosts)
        except OSError as exc:
            raise InfraError(f"host {jump.name}: cannot read its known_hosts file "
                             f"{jump.known_hosts}: {exc.strerror}") from exc  # fmt: skip
        self.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            self.client.connect(
                jump.hostname, port=jump.port, username=jump.user, key_filename=jump.key_file,
                timeout=timeout_s, banner_timeout=timeout_s, auth_timeout=timeout_s,
                allow_agent=jump.key_file is None, look_for_keys=jump.key_file is None,
            )  # fmt: skip
        except paramiko.BadHostKeyException as exc:
            self.client.close()
            raise InfraError(f"host {jump.name} ({jump.describe()}) presented a host key other "
                             f"than the one in {jump.known_hosts}: refusing it") from exc
        except paramiko.SSHException as exc:
            self.client.close()
            hint = (f" (its host key must be in {jump.known_hosts})"
                    if "not found in known_hosts" in str(exc) else "")  # fmt: skip
            raise InfraError(f"cannot log in to host {jump.name} ({jump.describe()}) over "
                             f"SSH: {exc}{hint}") from exc  # fmt: skip
        except (OSError, EOFError) as exc:
            self.client.close()
            raise InfraError(f"cannot reach host {jump.name} ({jump.describe()}) over SSH: "
                             f"{exc}") from exc  # fmt: skip
        transport = self._transport()
        key = transport.get_remote_server_key()
        self.host_key = HostKey(key.get_name(), key.get_base64())
        transport.set_keepalive(15)

    def _transport(self) -> paramiko.Transport:
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise InfraError(f"the SSH connection to host {self.jump.name} was lost")
        return transport

    @property
    def alive(self) -> bool:
        transport = self.client.get_transport()
        return transport is not None and transport.is_active()

    def run(self, argv: list[str], what: str, timeout_s: float = 60.0, stdin: bytes = b"",
            cancelled: Callable[[], None] = lambda: None) -> bytes:  # fmt: skip
        """Run a fixed command of the harness on the host; its standard output. A non-zero
        exit is an :class:`InfraError` naming ``what`` and the host, with its last error."""
        command = " ".join(shlex.quote(a) for a in argv)
        try:
            status, out, err = run_capture(self.client, what, command, timeout_s, cancelled,
                                           stdin)  # fmt: skip
        except PhaseFailed as exc:
            raise InfraError(f"host {self.jump.name}: cannot {what}: {exc}") from exc
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise InfraError(f"host {self.jump.name}: cannot {what}: the SSH connection "
                             f"failed ({exc})") from exc  # fmt: skip
        if status != 0:
            last = err.strip().splitlines()[-1:] or [f"exit {status}"]
            raise InfraError(f"host {self.jump.name}: cannot {what}: {last[0]}")
        return out

    def channel_to(self, ip: str, port: int, timeout_s: float) -> Any:
        """A TCP connection from the host to ``ip:port`` (a guest on its lab network), as a
        socket-like channel (SSH's direct-tcpip: ``ssh -W``)."""
        return self._transport().open_channel("direct-tcpip", (ip, port), ("127.0.0.1", 0),
                                              timeout=timeout_s)  # fmt: skip

    def addresses(self) -> list[str]:
        """The host's IPv4 addresses (``ip -j -4 addr``)."""
        out = self.run(["ip", "-j", "-4", "addr"], "list its addresses", timeout_s=15)
        try:
            links = json.loads(out or b"[]")
        except ValueError:
            return []
        return [str(a["local"]) for link in links for a in link.get("addr_info", [])
                if "local" in a]  # fmt: skip

    def local_address(self) -> str:
        """This machine's address as the host sees it (the SSH connection's own end)."""
        sock = self._transport().sock
        try:
            return str(sock.getsockname()[0])  # type: ignore[union-attr]
        except (OSError, AttributeError):
            return ""

    def close(self) -> None:
        self.client.close()


_sessions: dict[Jump, HostSession] = {}
_lock = threading.Lock()


def session(jump: Jump) -> HostSession:
    """The process's connection to ``jump`` (made, or made again if it died)."""
    with _lock:
        current = _sessions.get(jump)
        if current is None or not current.alive:
            if current is not None:
                current.close()
            current = _sessions[jump] = HostSession(jump)
        return current

