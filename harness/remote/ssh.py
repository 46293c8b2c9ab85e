"""Connections to the guest (with remote.commands, the modules that import paramiko): wait for
SSH, record the host key, reconnect pinned.

Trust on first use, done visibly: the first connection to a restored guest accepts its host
key and records the fingerprint in the evidence; every later connection (checks, user
testinfra files) accepts that key and no other.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko

from harness.durations import READINESS_POLL_S
from harness.errors import ConfigError, PhaseFailed, PhaseTimeout
from harness.remote.commands import run_polled
from harness.remote.host import session
from harness.remote.jump import Jump
from harness.remote.keys import HostKey
from harness.remote.namespace import connect

# paramiko logs every failed banner read with a traceback; with no handler configured Python
# prints those to stderr (a cron mail full of them while sshd starts). The wait below reports
# what matters itself.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

ATTEMPT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Target:
    """Where and as whom to log in."""

    ip: str
    port: int
    user: str
    key_file: Path
    password: str | None = field(default=None, repr=False)  # tried after the key
    netns: str | None = None  # a replicated lab's namespace, where the guest is reachable
    jump: Jump | None = None  # a remote lab's host: the guest is reachable through it only


def check_key(key_file: Path) -> str:
    """Load the private key to fail early (before any lab exists); its public fingerprint."""
    try:
        key = paramiko.PKey.from_path(key_file)
    except (paramiko.PasswordRequiredException, TypeError):  # TypeError: cryptography's way
        raise ConfigError(
            f"{key_file}: the key is passphrase-protected; use an unencrypted drill key "
            "kept readable by root only (see docs/decisions.md)"
        ) from None
    except (OSError, paramiko.SSHException, ValueError) as exc:
        raise ConfigError(f"{key_file}: not a usable SSH private key ({exc})") from None
    return str(key.fingerprint)


def public_key_line(key_file: Path) -> str:
    """The ``authorized_keys`` line of the drill's key (derived from the private key)."""
    key = paramiko.PKey.from_path(key_file)
    return f"{key.get_name()} {key.get_base64()} restore-drill"


class _Record(paramiko.MissingHostKeyPolicy):
    def __init__(self) -> None:
        self.key: paramiko.PKey | None = None

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        self.key = key


class _Pinned(paramiko.MissingHostKeyPolicy):
    def __init__(self, expected: HostKey) -> None:
        self.expected = expected

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        if key.get_base64() != self.expected.base64:
            raise paramiko.SSHException(
                f"host key of {hostname} changed: expected {self.expected.fingerprint}"
            )


def _client(policy: paramiko.MissingHostKeyPolicy) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(policy)  # no known_hosts: the guest is new each time
    return client


def guest_socket(target: Target, port: int, timeout_s: float) -> Any:
    """A TCP connection to the guest's ``port``, made where the guest is reachable: a socket
    (from the lab's namespace, if it has one), or a socket-like channel through a remote
    lab's host."""
    if target.jump:
        return session(target.jump).channel_to(target.ip, port, timeout_s)
    return connect(target.netns, target.ip, port, timeout_s)


def _connect(client: paramiko.SSHClient, target: Target, timeout_s: float) -> None:
    sock = guest_socket(target, target.port, timeout_s) if target.jump or target.netns else None
    client.connect(
        target.ip, port=target.port, username=target.user, key_filename=str(target.key_file),
        password=target.password, sock=sock,
        timeout=timeout_s, banner_timeout=timeout_s, auth_timeout=timeout_s,
        allow_agent=False, look_for_keys=False,
    )  # fmt: skip


def wait_for_ssh(
    target: Target, timeout_s: float, cancelled: Callable[[], None]
) -> tuple[paramiko.SSHClient, HostKey]:
    """Retry until a login succeeds or ``timeout_s`` passes; the client and the host key."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    auth_failures = 0
    while True:
        cancelled()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise PhaseTimeout("ssh", f"no SSH login within {timeout_s:g}s (last: {last})")
        policy = _Record()
        client = _client(policy)
        try:
            _connect(client, target, min(ATTEMPT_TIMEOUT_S, max(remaining, 1.0)))
            assert policy.key is not None  # noqa: S101 - paramiko calls the policy on connect
            return client, HostKey(policy.key.get_name(), policy.key.get_base64())
        except paramiko.AuthenticationException as exc:
            client.close()
            auth_failures += 1
            last = f"login refused: {exc}"
            if auth_failures >= 3:  # sshd answers and says no: waiting will not help
                raise PhaseFailed(
                    "ssh", f"{target.user}@{target.ip} refused the key {target.key_file}"
                    + (" and the password" if target.password else "")
                ) from exc
        except (TimeoutError, OSError, paramiko.SSHException, EOFError) as exc:
            client.close()
            last = str(exc) or type(exc).__name__
        time.sleep(READINESS_POLL_S)


def wait_until_settled(
    client: paramiko.SSHClient, timeout_s: float, cancelled: Callable[[], None]
) -> str:
    """Wait for systemd to finish booting (``is-system-running --wait``), bounded, polling
    ``cancelled`` like every other wait.

    SSH answers before every service has started; checking then would race the boot. Returns
    the system state (``running``, or ``degraded`` with the failed units); a guest without
    systemd is not awaited.
    """
    limit = max(int(timeout_s), 1)
    state, rc = _exec(client, f"timeout {limit} systemctl is-system-running --wait",
                      limit + 15, cancelled)  # fmt: skip
    if rc == 124 or state in ("starting", "initializing"):
        raise PhaseTimeout("settle", f"the guest was still booting after {limit}s ({state})")
    if rc == 127 or not state:
        return "not awaited: no systemd in the guest"
    if state == "degraded":
        failed, _ = _exec(client, "systemctl --failed --plain --no-legend --no-pager", 30,
                          cancelled)  # fmt: skip
        units = ", ".join(line.split()[0] for line in failed.splitlines() if line.strip())
        return f"degraded (failed units: {units or 'unknown'})"
    return state


def _exec(
    client: paramiko.SSHClient, command: str, timeout_s: float, cancelled: Callable[[], None]
) -> tuple[str, int]:
    """A fixed command's standard output (its errors discarded) and exit status."""
    try:
        status, output = run_polled(client, "settle", f"{command} 2>/dev/null", timeout_s,
                                    cancelled)  # fmt: skip
    except (OSError, paramiko.SSHException) as exc:
        raise PhaseFailed("settle", f"lost the SSH connection while waiting: {exc}") from exc
    return output.strip(), status


def connect_pinned(target: Target, host_key: HostKey, timeout_s: float,
                   phase: str = "checks") -> paramiko.SSHClient:  # fmt: skip
    """A new connection that accepts only the recorded host key."""
    client = _client(_Pinned(host_key))
    try:
        _connect(client, target, timeout_s)
    except (OSError, paramiko.SSHException, EOFError) as exc:
        client.close()
        raise PhaseFailed(phase, f"cannot reconnect to {target.ip}: {exc}") from exc
    return client


def connected(client: paramiko.SSHClient | None) -> bool:
    """Whether the connection is still up (a guest may have dropped it)."""
    transport = client.get_transport() if client is not None else None
    return transport is not None and transport.is_active()
