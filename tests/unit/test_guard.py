"""The lab's host guard with real nftables in network namespaces made here, no VM: a "guest"
behind a bridge cannot open a connection to the "host", except DHCP (and DNS for named labs);
the host still reaches the guest (the harness's SSH). Needs root, as scripts/test runs."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.root  # see pyproject.toml's markers

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Pair:
    host: str
    guest: str

    def run(self, ns: str, *argv: str, check: bool = True,
            stdin: str = "") -> subprocess.CompletedProcess[str]:  # fmt: skip
        return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True,
                              input=stdin, timeout=30, check=check)  # fmt: skip

    def connect(self, ns: str, address: str, port: int) -> subprocess.CompletedProcess[str]:
        return self.run(ns, "timeout", "5", "bash", "-c", f"exec 3<>/dev/tcp/{address}/{port}",
                        check=False)  # fmt: skip

    def guard(self, dns: bool = False) -> str:
        code = ("import sys; from harness.lab.guard import block_guest_to_host as b; "
                f"print(b('t3st', 'rdgbr0', {dns}))")  # fmt: skip
        return self.run(self.host, sys.executable, "-c", code).stdout


@pytest.fixture
def pair() -> Iterator[Pair]:
    if os.geteuid() != 0:
        pytest.fail("needs root for network namespaces (scripts/test runs as root)")
    tag = secrets.token_hex(3)
    p = Pair(f"rdg-host-{tag}", f"rdg-guest-{tag}")
    for ns in (p.host, p.guest):
        subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for argv in (
            ("ip", "link", "add", "rdgbr0", "type", "bridge"),
            ("ip", "addr", "add", "10.77.0.1/24", "dev", "rdgbr0"),
            ("ip", "link", "set", "rdgbr0", "up"),
            ("ip", "link", "set", "lo", "up"),
            ("ip", "link", "add", "rdg-h", "type", "veth", "peer", "name", "rdg-g"),
            ("ip", "link", "set", "rdg-h", "master", "rdgbr0", "up"),
            ("ip", "link", "set", "rdg-g", "netns", p.guest),
        ):
            p.run(p.host, *argv)
        p.run(p.guest, "ip", "addr", "add", "10.77.0.2/24", "dev", "rdg-g")
        p.run(p.guest, "ip", "link", "set", "rdg-g", "up")
        yield p
    finally:
        for ns in (p.host, p.guest):
            subprocess.run(["ip", "netns", "del", ns], check=False)


def listen(pair: Pair, ns: str, port: int) -> subprocess.Popen[str]:
    server = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-c",
         f"import socket, time; s = socket.create_server(('0.0.0.0', {port})); "
         "print('up', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert server.stdout is not None
    assert server.stdout.readline().strip() == "up"
    return server


def test_a_guest_cannot_reach_the_host_but_the_host_reaches_the_guest(pair: Pair) -> None:
    host_server, guest_server = listen(pair, pair.host, 8080), listen(pair, pair.guest, 2222)
    try:
        before = pair.connect(pair.guest, "10.77.0.1", 8080)
        assert before.returncode == 0, before.stderr  # the finding: isolated mode is not enough
        rules = pair.guard()
        assert 'iifname "rdgbr0" udp dport 67 accept' in rules
        assert "dport 53" not in rules  # no names in this lab: no DNS either
        after = pair.connect(pair.guest, "10.77.0.1", 8080)
        assert after.returncode == 1  # refused at once (not a hang: exit 124 would be that)
        assert "Connection refused" in after.stderr  # by the guard's reset: nothing listens
        ssh_like = pair.connect(pair.host, "10.77.0.2", 2222)
        assert ssh_like.returncode == 0, ssh_like.stderr  # the harness still reaches the guest
    finally:
        for server in (host_server, guest_server):
            server.kill()
            server.communicate()


def test_many_attempts_at_once_are_each_refused_at_once(pair: Pair) -> None:
    """The kernel rate-limits the ICMP errors it sends to one address (a burst of about six,
    then one a second): a guest making many connections at once was answered for a few,
    and the rest waited for their SYN retries (1, 3, 7 s...), up to the isolation probe's
    limit: a leak verdict for a lab that is isolated. A TCP reset is not rate-limited."""
    pair.guard()
    attempts = " ".join(f"(timeout 5 bash -c 'exec 3<>/dev/tcp/10.77.0.1/{port}' 2>/dev/null;"
                        f" echo $? $(( ${{EPOCHREALTIME/./}} - start ))) &"
                        for port in range(9000, 9020))  # fmt: skip
    out = pair.run(pair.guest, "bash", "-c",
                   f"start=${{EPOCHREALTIME/./}}; {attempts} wait").stdout  # fmt: skip
    answers = [line.split() for line in out.splitlines()]
    assert len(answers) == 20
    assert {rc for rc, _ in answers} == {"1"}  # refused, none connected or hung (124)
    assert max(int(us) for _, us in answers) < 900_000, answers  # before any SYN retry


def test_the_guard_is_removed_with_the_lab_and_found_when_left(pair: Pair) -> None:
    pair.guard(dns=True)
    code = ("from harness.lab import guard; print(guard.tables()); print(guard.unblock('t3st'));"
            " print(guard.tables()); print(guard.unblock('t3st'))")  # fmt: skip
    out = pair.run(pair.host, sys.executable, "-c", code).stdout.split("\n")
    assert out[:4] == ["['rdrill_t3st']", "True", "[]", "False"]


def test_a_bridge_in_another_namespace_is_refused_not_silently_unguarded() -> None:
    code = ("from harness.lab.guard import block_guest_to_host as b; "
            "b('t3st', 'rd-no-such-bridge', False)")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, check=False)  # fmt: skip
    assert "is not in this network namespace" in proc.stderr


def test_a_guard_another_run_removed_meanwhile_is_no_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Three drills starting together all reap the same dead lab: the one that finds its
    table gone between listing and deleting it must not fail its drill (it did: "Could not
    process rule: No such file or directory", an infrastructure ERROR)."""
    if os.geteuid() != 0:
        pytest.fail("needs root for nftables (scripts/test runs as root)")
    from harness.lab import guard

    listed = iter([[guard.table_name("g0ne0000")], []])  # seen, then gone when asked again
    monkeypatch.setattr(guard, "tables", lambda: next(listed))
    assert guard.unblock("g0ne0000") is False
