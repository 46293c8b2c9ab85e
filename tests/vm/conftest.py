"""Real drills: libvirt + QEMU boot the demo backups; testinfra talks to them over SSH.

Needs root, a reachable qemu:///system and the demo backups (``scripts/setup`` does all
three; ``scripts/test`` runs these inside the lab's network namespace). A missing piece
is an error here, not a skip: CI must not pass by skipping the real thing.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Generic, TypeVar

import pytest

from harness.lab import netns
from harness.lab.hypervisor import Hypervisor
from harness.lab.lifecycle import state_root
from harness.sources.identity import identity, sha256_path

ROOT = Path(__file__).resolve().parents[2]
DEMO = Path(os.environ.get("RESTORE_DRILL_DEMO_DIR", "/var/cache/restore-drill/demo"))
URI = os.environ.get("LIBVIRT_DEFAULT_URI", "qemu:///system")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/vm/" in str(item.fspath):
            item.add_marker(pytest.mark.vm)


@pytest.fixture(scope="session", autouse=True)
def lab_ready() -> None:
    missing = [p for p in (DEMO / "web.qcow2", DEMO / "db.qcow2") if not p.exists()]
    if missing:
        pytest.fail(f"demo backups missing ({missing}): run scripts/setup first")
    try:
        Hypervisor(URI).close()
    except Exception as exc:
        pytest.fail(f"libvirt not reachable at {URI}: {exc}")


@dataclass
class Drill:
    """A finished ``restore-drill`` process and what it wrote."""

    exit_code: int
    stderr: str
    reports: Path
    folders: list[Path] = field(default_factory=list)

    @property
    def report(self) -> dict[str, Any]:
        [folder] = self.folders
        data: dict[str, Any] = json.loads((folder / "report.json").read_text())
        return data

    def file(self, name: str) -> str:
        [folder] = self.folders
        return (folder / name).read_text()


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "harness", *args]


def in_lab_ssh(lab_id: str, vm: str, *argv: str, check: bool = True
               ) -> subprocess.CompletedProcess[str]:  # fmt: skip
    done = subprocess.run(command("ssh", lab_id, "--vm", vm, "--", *argv), capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)  # fmt: skip
    assert not check or done.returncode == 0, done.stderr
    return done


def run_cli(*args: str, reports: Path, timeout: float = 900,
            env: dict[str, str] | None = None) -> Drill:  # fmt: skip
    """``restore-drill run`` with ``args`` (and ``env`` added to this environment)."""
    proc = subprocess.run(
        command("run", "--reports", str(reports), *args),
        capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False,
        env={**os.environ, **env} if env else None,
    )  # fmt: skip
    folders = sorted(p for p in reports.iterdir() if p.is_dir()) if reports.exists() else []
    return Drill(proc.returncode, proc.stderr, reports, folders)


class Running:
    """A ``restore-drill run`` in the background whose log lines can be awaited."""

    def __init__(self, *args: str, reports: Path) -> None:
        self.proc = subprocess.Popen(
            command("run", "--reports", str(reports), *args),
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=ROOT,
        )  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                continue
            self.log.append(line)
            if text in line:
                return
        raise AssertionError(f"{text!r} not logged within {timeout}s:\n{''.join(self.log)}")

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 120) -> int:
        code = self.proc.wait(timeout=timeout)
        self.pump.join(timeout=10)  # EOF once the process is gone
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        return code


def leftovers() -> list[str]:
    """Every lab object or folder restore-drill has on this host."""
    with Hypervisor(URI) as hv:
        found = [f"{o.kind} {o.name}" for o in hv.lab_objects()]
    guards = subprocess.run(["nft", "list", "tables", "inet"], capture_output=True, text=True,
                            check=True).stdout.split()  # fmt: skip
    found += [f"host guard {t}" for t in guards if t.startswith("rdrill_")]
    labs = state_root() / "labs"
    found += [f"folder {p}" for p in labs.iterdir()] if labs.exists() else []
    found += [f"network namespace {n}" for n in netns.namespaces()]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                           check=True).stdout  # fmt: skip
    found += [f"veth {w.split('@')[0]}" for line in links.splitlines()
              for w in line.split()[1:2] if w.startswith("rdv")]  # fmt: skip
    found += [f"dnsmasq {p.parent.name}" for p in Path("/proc").glob("[0-9]*/cmdline")
              if b"--interface=rdl" in _read(p)]  # fmt: skip
    scans = state_root() / "scans"
    found += [f"scan folder {p}" for p in scans.iterdir()] if scans.exists() else []
    found += [f"qemu-storage-daemon {p.parent.name}"
              for p in Path("/proc").glob("[0-9]*/cmdline")
              if b"qemu-storage-daemon" in _read(p)
              and str(scans).encode() in _read(p)]  # fmt: skip
    loops = subprocess.run(["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"],
                           capture_output=True, text=True, check=True).stdout  # fmt: skip
    found += [f"loop {line}" for line in loops.splitlines() if str(scans) in line]
    return found


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def assert_backup_untouched(report: dict[str, Any]) -> None:
    """The report's identity of the backup matches the file (or repository folder) as it is
    now, hash included."""
    backup = report["backup"]
    path = Path(backup["path"])
    before = backup["identity_before"]
    assert backup["unchanged"] is True
    assert backup["identity_after"] == before
    if path.is_dir():  # a repository: every file's stat facts, and every file's content
        assert asdict(identity(path)) == before
        # restic packs, borg segments, pgBackRest sets and WAL enter the proof by name and
        # stat: the report names the folders
        said = re.search(r" under (.*?) by name and stat",
                         backup["details"].get("repository proof", ""))  # fmt: skip
        by_stat = tuple(said.group(1).split(", ")) if said else ()
        assert sha256_path(path, by_stat=by_stat) == backup["sha256"] == backup["sha256_after"]
        return
    st = path.stat()
    assert (st.st_size, oct(st.st_mode & 0o7777), st.st_uid, st.st_gid) == (
        before["size"], before["mode"], before["uid"], before["gid"],
    )  # fmt: skip
    assert st.st_ctime_ns == before["ctime_ns"]
    if backup["unchanged_by"] == "hash":
        assert sha256(path) == backup["sha256"] == backup["sha256_after"]
    else:  # an aborted drill may stop hashing: then stat (ctime included) is the proof
        assert backup["unchanged_by"] == "stat"
    for layer in backup.get("chain", []):  # every backing file below it, likewise
        assert layer["unchanged"] is True
        assert asdict(identity(Path(layer["path"]))) == layer["identity_before"]
        assert layer["identity_after"] == layer["identity_before"]
        if backup["unchanged_by"] == "hash":
            assert sha256(Path(layer["path"])) == layer["sha256"] == layer["sha256_after"]
    for disk in backup.get("disks", []):  # a server's further disks, each likewise
        assert_backup_untouched({"backup": disk})


@contextmanager
def scratch_folder() -> Iterator[Path]:
    """A folder QEMU (running as its own user) can read, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="rdrill-test-", dir="/var/tmp"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        subprocess.run(["rm", "-rf", str(folder)], check=True)


@pytest.fixture
def scratch() -> Iterator[Path]:
    with scratch_folder() as folder:
        yield folder


@pytest.fixture(scope="module")
def module_scratch() -> Iterator[Path]:
    with scratch_folder() as folder:
        yield folder


def assert_nothing_left() -> None:
    left = leftovers()
    if left:  # clean up first, so one failure does not spill into the next test
        subprocess.run(command("cleanup"), capture_output=True, check=False)
    assert left == [], "a drill left lab objects behind"


@pytest.fixture
def reports(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "reports"
    yield folder
    assert_nothing_left()


T = TypeVar("T")


class Together(Generic[T]):
    """Jobs (drills, mostly) run side by side, each test reading its own result: boots under
    software emulation use the second core this way (the VM tier took 49 min one drill at a
    time). Once all have ended, nothing may be left behind. A job that raised raises again
    in the test that reads it, and only there."""

    def __init__(self, jobs: dict[str, Callable[[], T]], at_once: int = 0) -> None:
        """``at_once``: at most this many jobs at a time (0: all). Under TCG on two cores,
        two or three guests use both; six at once (each with its libguestfs appliance) took
        longer than one after the other."""
        with ThreadPoolExecutor(at_once or len(jobs)) as pool:
            futures = {name: pool.submit(job) for name, job in jobs.items()}
            self.done: dict[str, T | BaseException] = {}
            for name, future in futures.items():
                try:
                    self.done[name] = future.result()
                except Exception as exc:
                    self.done[name] = exc
        assert_nothing_left()

    def __getitem__(self, name: str) -> T:
        value = self.done[name]
        if isinstance(value, BaseException):
            raise value
        return value


def drills_together(runs: dict[str, tuple[str, ...]], folder: Path,
                    timeout: float = 900) -> Together[Drill]:  # fmt: skip
    """``restore-drill run`` with each run's arguments, side by side, each reporting into
    ``folder/<name>``."""
    return Together({name: partial(run_cli, *args, reports=folder / name, timeout=timeout)
                     for name, args in runs.items()})  # fmt: skip
