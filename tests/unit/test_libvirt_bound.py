"""A hung libvirtd: every libvirt call is bounded, so a daemon that stops answering is a clear
infrastructure error naming the call, and the drill still writes its report. The hang is real:
a relay in front of libvirtd's socket that stops passing bytes on when told."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.errors import InfraError
from harness.lab.hypervisor import Hypervisor

pytestmark = pytest.mark.root  # see pyproject.toml's markers

LIBVIRT_SOCKET = Path("/run/libvirt/libvirt-sock")


class Relay:
    """A UNIX socket that relays to libvirtd until :meth:`freeze`, then swallows silence."""

    def __init__(self, path: Path) -> None:
        self.path, self.frozen = path, threading.Event()
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(str(path))
        self.server.listen()
        self.sockets: list[socket.socket] = [self.server]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(str(LIBVIRT_SOCKET))
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self.pump, args=(a, b), daemon=True).start()

    def pump(self, a: socket.socket, b: socket.socket) -> None:
        while not self.frozen.is_set():
            try:
                data = a.recv(65536)
                if self.frozen.is_set() or not data:
                    return
                b.sendall(data)
            except OSError:
                return

    def freeze(self) -> None:
        self.frozen.set()

    def close(self) -> None:
        for s in self.sockets:
            s.close()

    @property
    def uri(self) -> str:
        return f"qemu+unix:///system?socket={self.path}"


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[Relay]:
    if not LIBVIRT_SOCKET.exists():
        pytest.fail("libvirtd is not running (scripts/test starts it)")
    made = Relay(tmp_path / "libvirt-sock")
    yield made
    made.close()


def test_a_call_to_a_hung_libvirtd_is_bounded_and_names_the_call(relay: Relay) -> None:
    hv = Hypervisor(relay.uri, timeout_s=2)
    assert hv.version()  # it answers while the relay passes bytes on
    relay.freeze()
    started = time.monotonic()
    with pytest.raises(InfraError, match=r"did not answer listAllDomains within 2s: it is hung"):
        hv.lab_objects()
    assert time.monotonic() - started < 5
    with pytest.raises(InfraError, match="stopped answering"):
        hv.used_subnets()  # not asked again: it would hang too
    hv.close()  # returns at once


def test_a_drill_whose_libvirtd_hangs_is_an_error_with_a_report(
    relay: Relay, scenario_dir: Path, tmp_path: Path
) -> None:
    relay.freeze()  # libvirtd never answers the connection's first call
    reports = tmp_path / "reports"
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--connect", relay.uri, "--libvirt-timeout",
         "2s", "--reports", str(reports), str(scenario_dir / "scenario.yaml")],
        capture_output=True, text=True, timeout=120, check=False, env=os.environ,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert time.monotonic() - started < 60
    [folder] = [p for p in reports.iterdir() if p.is_dir()]
    report = json.loads((folder / "report.json").read_text())
    assert report["verdict"] == "ERROR"
    assert "did not answer open within 2s: it is hung or overloaded" in report["reason"]
