"""Isolation proven, not assumed: from inside the restored guest, try to leave the lab.

Each target is tried with a short TCP connect (bash's /dev/tcp, bounded by ``timeout``) and a
DNS lookup is attempted. In an isolated lab every attempt fails at once: no route, refused
or rejected. A connection that succeeds means the lab is not isolated; an attempt that hangs
until the timeout means packets left the guest toward a network that silently dropped them,
which is not isolation either. Either fails the drill. The attempts are the evidence.

Default targets are TEST-NET addresses (RFC 5737): reserved for documentation, routed
nowhere, so a probe can never touch a real host. Scenarios add their own (e.g. a production
gateway that must be unreachable).
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from typing import Any

DEFAULT_TARGETS = ("192.0.2.1:443", "198.51.100.1:80", "203.0.113.1:22")
ATTEMPT_TIMEOUT_S = 4


@dataclass(frozen=True)
class Attempt:
    """One try to leave the lab, as the guest saw it."""

    target: str
    outcome: str  # blocked | connected | timeout | resolved
    detail: str

    @property
    def isolated(self) -> bool:
        return self.outcome == "blocked"


def _tcp(host: Any, target: str) -> Attempt:
    address, _, port = target.rpartition(":")
    script = f"exec 3<>/dev/tcp/{address}/{int(port)}"
    cmd = f"timeout {ATTEMPT_TIMEOUT_S} bash -c {shlex.quote(script)}"
    started = time.monotonic()
    result = host.run(cmd)
    took = time.monotonic() - started
    message = (result.stderr.strip().splitlines() or [""])[-1].split(": ")[-1]
    if result.rc == 0:
        return Attempt(target, "connected", "a TCP connection was established")
    if result.rc == 124:
        return Attempt(
            target, "timeout", f"no answer within {ATTEMPT_TIMEOUT_S}s: packets left the guest"
        )
    return Attempt(target, "blocked", f"{message or f'exit {result.rc}'} after {took:.1f}s")


def _dns(host: Any) -> Attempt:
    result = host.run(f"timeout {ATTEMPT_TIMEOUT_S} getent hosts example.org")
    if result.rc == 0 and result.stdout.strip():
        return Attempt("DNS example.org", "resolved", result.stdout.strip())
    if result.rc == 124:
        return Attempt("DNS example.org", "timeout", "the lookup hung: a resolver is reachable")
    return Attempt("DNS example.org", "blocked", "no resolver answered")


def probe_egress(host: Any, extra_targets: tuple[str, ...] = ()) -> list[Attempt]:
    """Every attempt to leave the lab, in order."""
    attempts = [_tcp(host, t) for t in (*DEFAULT_TARGETS, *extra_targets)]
    attempts.append(_dns(host))
    return attempts
