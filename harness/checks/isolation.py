"""Isolation proven, not assumed: from inside the restored guest, try to leave the lab.

Each target is tried with a short TCP connect (bash's /dev/tcp, bounded by ``timeout``) and a
DNS lookup is attempted. In an isolated lab every attempt fails at once: no route, refused
or rejected. A connection that succeeds means the lab is not isolated; an attempt that hangs
until the timeout means packets left the guest toward a network that silently dropped them,
which is not isolation either. A guest without bash or getent cannot be probed: isolation is
then unproven. Each of these fails the drill. The attempts are the evidence.

Default targets are TEST-NET addresses (RFC 5737): reserved for documentation, routed
nowhere, so a probe can never touch a real host. Scenarios add their own (e.g. a production
gateway that must be unreachable). The drill host itself is tried too, at the lab's gateway
address: a listener the harness opens on all of the host's addresses for the probe's
duration (what a web server on 0.0.0.0 would be), and a few well-known ports; each must be
blocked by the lab's host guard (:mod:`harness.lab.guard`).
"""

from __future__ import annotations

import shlex
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

DEFAULT_TARGETS = ("192.0.2.1:443", "198.51.100.1:80", "203.0.113.1:22")
# An isolated lab fails every attempt at once, so the limit costs time only when a lab leaks.
# It is generous because a guest starved of CPU (six software-emulated labs on two cores) took
# 5 s to be told "Network is unreachable": a tight limit would call that slowness a leak.
ATTEMPT_TIMEOUT_S = 20
SCRIPT_SLACK_S = 30  # for the guest to start the script's shells: the whole probe is bounded
DNS_LABEL = "DNS example.org"
HOST_PORTS = (22, 16509, 5900)  # sshd, libvirtd's TCP socket, a VNC console


@dataclass(frozen=True)
class Attempt:
    """One try to leave the lab, as the guest saw it."""

    target: str
    outcome: str  # blocked | connected | timeout | resolved | unproven (no bash/getent)
    detail: str

    @property
    def isolated(self) -> bool:
        return self.outcome == "blocked"


# One shell script, one SSH round trip: every attempt runs at once in the guest and prints
# "target<TAB>exit status<TAB>start<TAB>end<TAB>last error line". Cheap under software
# emulation, where each program a guest starts costs 0.1-0.5 s: an attempt is a fork of the
# script's own bash (its /dev/tcp, its clock EPOCHREALTIME, bash 5; `date` on older ones),
# never a program of its own; only the lookup starts one (getent). One `timeout` bounds them
# all: an attempt still hanging when it strikes printed nothing, and is a timeout.
_SCRIPT = r"""
say() {
  printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${EPOCHREALTIME:-$(date +%s.%N)}" \
    "${4##*$'\n'}"
}
tcp() {
  local start=${EPOCHREALTIME:-$(date +%s.%N)} err
  err=$(exec 2>&1 >/dev/null; exec 3<>"/dev/tcp/$2/$3"); say "$1" $? "$start" "$err"
}
dns() {
  local start=${EPOCHREALTIME:-$(date +%s.%N)} err
  err=$(getent hosts "$2" 2>&1 >/dev/null); say "$1" $? "$start" "$err"
}
"""


def _tcp(label: str, address: str) -> str:
    host, _, port = address.rpartition(":")
    return f"tcp {shlex.quote(label)} {shlex.quote(host)} {int(port)} &"


def _attempt(label: str, rc: int, took: float | None, message: str) -> Attempt:
    """``took``: seconds, or None if the guest's clock could not be read."""
    detail = message.rsplit(": ", 1)[-1] or f"exit {rc}"
    if rc > 128:  # ended by a signal: it proves nothing (the probe's timeout: a hang)
        return Attempt(label, "unproven", f"killed by signal {rc - 128}")
    if rc in (126, 127):  # the tool could not run: a failed attempt that proves nothing
        return Attempt(label, "unproven", f"the probe could not run in the guest: {message}")
    if label.startswith("DNS "):
        if rc == 0:
            return Attempt(label, "resolved", "a resolver answered")
        if rc == 124:
            return Attempt(label, "timeout", "the lookup hung: a resolver is reachable")
        return Attempt(label, "blocked", _after("no resolver answered", took))
    if rc == 0:
        return Attempt(label, "connected", "a TCP connection was established")
    if rc == 124:
        return Attempt(
            label, "timeout", f"no answer within {ATTEMPT_TIMEOUT_S}s: packets left the guest"
        )
    return Attempt(label, "blocked", _after(detail, took))


def _after(what: str, took: float | None) -> str:
    return what if took is None else f"{what} after {took:.2f}s"


def _took(start: str, end: str) -> float | None:
    """Seconds between two guest clock readings (a locale may print a decimal comma); None
    if either is not a number."""
    try:
        return float(end.replace(",", ".")) - float(start.replace(",", "."))
    except ValueError:
        return None


@contextmanager
def host_listener() -> Iterator[int]:
    """A TCP listener on every address of this host (0.0.0.0), on a free port, while the
    probe runs: if a guest can connect to it, the drill host is exposed to the lab."""
    # B104: binding every address is the point: the probe proves none of them is reachable
    with socket.create_server(("0.0.0.0", 0)) as server:  # noqa: S104  # nosec B104
        yield int(server.getsockname()[1])


def host_targets(gateway: str, listener_port: int, who: str = "drill host") -> dict[str, str]:
    """The drill host (or in a replicated lab, the lab's side: ``who``) as the probe tries
    it: label → address."""
    labels = {f"{who} {gateway}:{listener_port} (a listener on 0.0.0.0)":
              f"{gateway}:{listener_port}"}  # fmt: skip
    labels.update({f"{who} {gateway}:{port}": f"{gateway}:{port}" for port in HOST_PORTS})
    return labels


def lab_host_targets(name: str, gateway: str, addresses: list[str], controller: str,
                     listener_port: int) -> dict[str, str]:  # fmt: skip
    """A remote lab's host and the controller as the probe tries them: the host at its lab
    address (the well-known ports) and at each of its other addresses (its sshd, which
    qemu+ssh needs: a real listener), and the controller's listener on 0.0.0.0 at the
    address the host reaches it by (the guest must have no route there)."""
    labels = {f"lab host {name} {gateway}:{port}": f"{gateway}:{port}" for port in HOST_PORTS}
    labels.update({f"lab host {name} {a}:22 (its sshd)": f"{a}:22" for a in addresses
                   if a != gateway and not a.startswith("127.")})  # fmt: skip
    if controller:
        labels[f"drill host {controller}:{listener_port} (a listener on 0.0.0.0)"] = (
            f"{controller}:{listener_port}")
    return labels


def probe_egress(
    run: Callable[[str, float], tuple[int, str]], extra_targets: tuple[str, ...] = (),
    host: dict[str, str] | None = None,
) -> list[Attempt]:  # fmt: skip
    """Every attempt to leave the lab, in the order given, then the drill host (``host``:
    label → address). ``run(command, limit)`` runs a command in the guest, bounded by
    ``limit``, and gives its exit status and output."""
    labelled = {t: t for t in (*DEFAULT_TARGETS, *extra_targets)} | (host or {})
    targets = tuple(labelled)
    calls = [_tcp(label, address) for label, address in labelled.items()]
    calls.append(f"dns {shlex.quote(DNS_LABEL)} example.org &")
    script = _SCRIPT + "\n".join(calls) + "\nwait\n"
    rc, output = run(f"timeout {ATTEMPT_TIMEOUT_S} bash -c {shlex.quote(script)}",
                     ATTEMPT_TIMEOUT_S + SCRIPT_SLACK_S)  # fmt: skip
    every = (*targets, DNS_LABEL)
    seen: dict[str, Attempt] = {}
    for line in output.splitlines():
        parts = line.split("\t")
        if len(parts) != 5 or not parts[1].isdigit():
            continue
        code = int(parts[1])
        if rc == 124 and code > 128:  # the timeout's signal reached it as it ended: it hung
            continue
        seen[parts[0]] = _attempt(parts[0], code, _took(parts[2], parts[3]), parts[4])
    if rc == 124:  # the one timeout struck: what had not ended by then hung
        seen = {label: _attempt(label, 124, None, "") for label in every} | seen
    missing = Attempt("?", "unproven", f"the probe gave no answer ({output.strip()[-200:]})")
    return [seen.get(label, replace(missing, target=label)) for label in every]
