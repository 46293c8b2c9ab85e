"""A replicated lab's side, with real namespaces made here and no VM: a "guest" with a static
production address behind a bare bridge reaches nothing (every attempt refused at once, none
hangs), the harness reaches it from inside the lab namespace, the drill host's namespace
never holds the address, and teardown leaves nothing. Needs root, as scripts/test runs."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.lab import netns

pytestmark = pytest.mark.root  # see pyproject.toml's markers


@dataclass
class Lab:
    host: str  # stands for the drill host's namespace (where libvirt's bridge is)
    guest: str
    lab_id: str

    def run(self, ns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True,
                              text=True, timeout=60, check=check)  # fmt: skip

    def py(self, ns: str, code: str) -> str:
        """Python in ``ns`` as ``in_lab`` (scripts/lab-env.sh) runs restore-drill: in that
        network namespace only, so each call, a process of its own, sees the lab namespace
        an earlier one made (as a later ``cleanup`` or ``restore-drill ssh`` must)."""
        return subprocess.run(["nsenter", f"--net=/run/netns/{ns}", sys.executable, "-c", code],
                              capture_output=True, text=True, timeout=60,
                              check=True).stdout.strip()  # fmt: skip

    def attempt(self, address: str, port: int) -> int:
        """A TCP connect from the guest, bounded: 124 means it hung."""
        return self.run(self.guest, "timeout", "8", "bash", "-c",
                        f"exec 3<>/dev/tcp/{address}/{port}", check=False).returncode


@pytest.fixture
def lab() -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.fail("needs root for network namespaces (scripts/test runs as root)")
    tag = secrets.token_hex(3)
    lab = Lab(f"rdn-host-{tag}", f"rdn-guest-{tag}", secrets.token_hex(4))
    for ns in (lab.host, lab.guest):
        subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for argv in (  # a bridge with no address, as libvirt makes for a replicated lab
            ("ip", "link", "add", "rdnbr0", "type", "bridge"),
            ("ip", "link", "set", "rdnbr0", "up"),
            ("ip", "link", "add", "rdn-h", "type", "veth", "peer", "name", "rdn-g"),
            ("ip", "link", "set", "rdn-h", "master", "rdnbr0", "up"),
            ("ip", "link", "set", "rdn-g", "netns", lab.guest),
        ):
            lab.run(lab.host, *argv)
        for argv in (("ip", "addr", "add", "192.168.10.20/24", "dev", "rdn-g"),
                     ("ip", "link", "set", "rdn-g", "up"), ("ip", "link", "set", "lo", "up"),
                     ("ip", "route", "add", "default", "via", "192.168.10.1")):  # fmt: skip
            lab.run(lab.guest, *argv)
        yield lab
    finally:
        lab.py(lab.host, f"from harness.lab import netns; netns.destroy({lab.lab_id!r}, None)")
        for ns in (lab.host, lab.guest):
            subprocess.run(["ip", "netns", "del", ns], check=False)


def test_the_guest_is_refused_everywhere_and_reached_from_the_lab_namespace(lab: Lab) -> None:
    made = lab.py(lab.host, "from harness.lab import netns; print(netns.create("
                            f"{lab.lab_id!r}, 'rdnbr0', ['192.168.10.1/24'], False, False))")
    assert made == netns.name_of(lab.lab_id)
    guest_server = subprocess.Popen(
        ["ip", "netns", "exec", lab.guest, sys.executable, "-c",
         "import socket, time; s = socket.create_server(('0.0.0.0', 2222)); "
         "print('up', flush=True); c, _ = s.accept(); c.sendall(b'hello'); time.sleep(5)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert guest_server.stdout is not None
    assert guest_server.stdout.readline().strip() == "up"
    try:  # the harness, from the drill host's namespace, through the lab namespace
        said = lab.py(lab.host, "from harness.remote.namespace import connect; "
                      f"s = connect({made!r}, '192.168.10.20', 2222, 10); print(s.recv(5))")
        assert said == "b'hello'"
    finally:
        guest_server.kill()
        guest_server.wait()
        guest_server.stdout.close()
    lab_server = subprocess.Popen(
        ["ip", "netns", "exec", made, sys.executable, "-c",
         "import socket, time; s = socket.create_server(('0.0.0.0', 2223)); "
         "print('up', flush=True); time.sleep(30)"], stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert lab_server.stdout is not None
    assert lab_server.stdout.readline().strip() == "up"
    try:
        assert lab.attempt("192.168.10.1", 2223) not in (0, 124)  # the lab side: rejected
        assert lab.attempt("192.168.10.1", 22) not in (0, 124)
        assert lab.attempt("192.0.2.1", 443) not in (0, 124)  # beyond: unreachable at once
        assert lab.attempt("192.168.10.99", 80) not in (0, 124)  # no such machine
    finally:
        lab_server.kill()
        lab_server.wait()
        lab_server.stdout.close()
    host_addresses = lab.run(lab.host, "ip", "-4", "-o", "address", "show").stdout
    assert "192.168.10." not in host_addresses
    assert lab.run(lab.host, "ip", "route", "get", "192.168.10.20", check=False).returncode != 0

    removed = lab.py(lab.host, f"from harness.lab import netns; print(netns.destroy("
                               f"{lab.lab_id!r}, None))")  # fmt: skip
    assert f"network namespace {made}" in removed
    assert not (Path("/run/netns") / made).exists()
    assert "rdv" not in lab.run(lab.host, "ip", "-o", "link", "show").stdout


def test_the_lab_dnsmasq_answers_lab_names_only_and_is_reaped_by_its_lab(lab: Lab,
                                                                        tmp_path: Path) -> None:
    made = lab.py(lab.host, "from harness.lab import netns; print(netns.create("
                            f"{lab.lab_id!r}, 'rdnbr0', ['192.168.10.1/24', '10.255.255.53/32'],"
                            " False, True))")  # fmt: skip
    tmp_path.chmod(0o755)
    pid = int(lab.py(lab.host, "from pathlib import Path; from harness.lab import netns; print("
                     f"netns.start_dnsmasq({lab.lab_id!r}, Path({str(tmp_path)!r}), "
                     "'192.168.10.1', '192.168.10.0/24', [('52:54:00:00:00:01', "
                     "'192.168.10.254', 'web')], [('db.shop.internal', '192.168.10.21')]))"))
    lab.run(lab.guest, "ip", "route", "add", "10.255.255.53/32", "via", "192.168.10.1")
    for _ in range(50):  # dnsmasq binds its addresses as it starts
        answer = lab.run(lab.guest, "python3", "-c",
                         "import socket, struct\n"
                         "q = b'\\x12\\x34\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00'"
                         " + b''.join(bytes([len(p)]) + p.encode() for p in "
                         "'db.shop.internal'.split('.')) + b'\\x00\\x00\\x01\\x00\\x01'\n"
                         "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1)\n"
                         "s.sendto(q, ('10.255.255.53', 53)); r = s.recv(512)\n"
                         "print(socket.inet_ntoa(r[-4:]))", check=False)  # fmt: skip
        if answer.returncode == 0:
            break
    assert answer.stdout.strip() == "192.168.10.21", answer.stderr
    removed = lab.py(lab.host, f"from harness.lab import netns; print(netns.destroy("
                               f"{lab.lab_id!r}, {pid}))")  # fmt: skip
    assert f"dnsmasq {pid}" in removed
    assert not Path(f"/proc/{pid}").exists() or b"dnsmasq" not in Path(
        f"/proc/{pid}/cmdline").read_bytes()
    assert made not in os.listdir("/run/netns")


def test_a_lab_dnsmasq_that_cannot_start_fails_the_lab_with_what_it_said(lab: Lab,
                                                                         tmp_path: Path) -> None:
    """A second dnsmasq on the same lab finds DNS's port taken and stops: said at once."""
    lab.py(lab.host, "from harness.lab import netns; netns.create("
                     f"{lab.lab_id!r}, 'rdnbr0', ['192.168.10.1/24'], False, True)")
    tmp_path.chmod(0o755)
    start = ("from pathlib import Path; from harness.lab import netns; print(netns.start_dnsmasq("
             f"{lab.lab_id!r}, Path({str(tmp_path)!r}), '192.168.10.1', '192.168.10.0/24', [], "
             "[('db', '192.168.10.21')]))")  # fmt: skip
    first = int(lab.py(lab.host, start))
    (tmp_path / "dnsmasq.pid").unlink()
    failed = subprocess.run(["nsenter", f"--net=/run/netns/{lab.host}", sys.executable, "-c",
                             start], capture_output=True, text=True, timeout=60,
                            check=False)  # fmt: skip
    assert failed.returncode != 0
    assert "LabError: the lab's DHCP and DNS (dnsmasq) did not start: " in failed.stderr
    assert "Address already in use" in failed.stderr
    lab.py(lab.host, f"from harness.lab import netns; netns.destroy({lab.lab_id!r}, {first})")
