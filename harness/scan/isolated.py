"""The scan as the drill runs it: a worker process (:mod:`.worker`) in a mount namespace of its
own, started, bounded, interrupted and cleaned up from here.

Each scan has a folder ``<state>/scans/<id>/`` holding its request, the worker's answer, the
read-only view's mount points and qemu-storage-daemon's pid file, with ``owner.json`` (the
drill's pid and start time). The worker and the daemon die with the drill (parent-death
signals) and the mounts with the worker's namespace; :func:`reap` (``restore-drill cleanup``,
and every run before it starts) removes what a kill -9 could still leave: a daemon, a loop
device over one of its exports, the folder.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from harness.errors import ConfigError, InfraError, PhaseFailed, PhaseTimeout
from harness.processes import process_start
from harness.scan.view import PIDFILE, QSD
from harness.scenario.model import ScanSpec

PHASE = "scan"
GRACE_S = 60.0  # beyond the scan's own timeout: the view made and undone


def scans_root(state: Path) -> Path:
    return state / "scans"


def run_isolated(spec: ScanSpec, state: Path, check: Callable[[], None],
                 disks: list[tuple[str, str]] | None = None, stream: IO[bytes] | None = None,
                 ) -> dict[str, Any]:  # fmt: skip
    """Scan a disk image's file systems (``disks``: path and format of each, read-only) or
    a file-level restore point's tar ``stream``; the worker's report as a dict.
    :class:`PhaseFailed`/:class:`PhaseTimeout`/:class:`InfraError` as the worker says."""
    folder = scans_root(state) / secrets.token_hex(4)
    folder.mkdir(parents=True)
    try:
        owner = {"pid": os.getpid(), "start": process_start(os.getpid())}
        (folder / "owner.json").write_text(json.dumps(owner))
        request = {"folder": str(folder), "disks": disks or [], "paths": list(spec.paths),
                   "max_file_size": spec.max_file_size, "timeout_s": spec.timeout_s,
                   "clamav": str(spec.clamav) if spec.clamav else "",
                   "yara": [str(r) for r in spec.yara]}  # fmt: skip
        (folder / "request.json").write_text(json.dumps(request))
        answer = _run_worker(folder, spec.timeout_s + GRACE_S, check, stream)
    finally:
        _remove(folder)
    if "report" in answer:
        report: dict[str, Any] = answer["report"]
        return report
    kind, message = answer.get("error"), str(answer.get("message", "no answer"))
    if kind == "timeout":
        raise PhaseTimeout(PHASE, message)
    if kind == "failed":
        raise PhaseFailed(PHASE, message)
    if kind == "config":
        raise ConfigError(message)
    raise InfraError(f"the scan could not run: {message}")


def _run_worker(folder: Path, limit_s: float, check: Callable[[], None],
                stream: IO[bytes] | None) -> dict[str, Any]:  # fmt: skip
    cmd = ["unshare", "--mount", "--propagation", "private", "--",
           sys.executable, "-m", "harness.scan.worker", str(folder / "request.json"),
           str(os.getpid())]  # fmt: skip
    with (folder / "answer.json").open("wb") as out, (folder / "worker.log").open("wb") as err:
        try:
            worker = subprocess.Popen(cmd, stdin=stream or subprocess.DEVNULL, stdout=out,
                                      stderr=err, start_new_session=True)  # fmt: skip
        except FileNotFoundError:
            raise InfraError("cannot scan: unshare (util-linux) is not installed") from None
        deadline = time.monotonic() + limit_s
        try:
            while worker.poll() is None:
                check()
                if time.monotonic() > deadline:
                    raise PhaseTimeout(PHASE, f"the scan did not end within {limit_s:g}s")
                time.sleep(0.1)
        finally:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)  # the daemon dies with it
                worker.wait()
    text = (folder / "answer.json").read_text(errors="replace").strip()
    try:
        answer: dict[str, Any] = json.loads(text.splitlines()[-1]) if text else {}
    except ValueError:
        answer = {}
    if not answer:
        said = (folder / "worker.log").read_text(errors="replace").strip().splitlines()
        raise InfraError(f"the scan worker ended with exit {worker.returncode} and no answer"
                         + (f": {said[-1]}" if said else ""))  # fmt: skip
    return answer


def reap(state: Path) -> list[str]:
    """Scan folders whose drill is gone: their daemon stopped, loop devices detached, folder
    removed; what was removed."""
    removed: list[str] = []
    root = scans_root(state)
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        try:
            owner = json.loads((folder / "owner.json").read_text())
        except (OSError, ValueError):
            owner = {}
        start = owner.get("start")
        if start is not None and process_start(int(owner.get("pid", 0))) == start:
            continue  # its drill still runs
        if not owner and time.time() - folder.stat().st_mtime < 60:
            continue  # being made
        removed += _remove(folder)
    return removed


def _remove(folder: Path) -> list[str]:
    removed = []
    pid = _daemon(folder)
    if pid:
        os.kill(pid, signal.SIGKILL)
        removed.append(f"{QSD} {pid}")
    for device in _loops(folder):
        subprocess.run(["losetup", "-d", device], capture_output=True, check=False)
        removed.append(f"loop device {device}")
    shutil.rmtree(folder, ignore_errors=True)
    return [*removed, f"scan folder {folder}"]


def _daemon(folder: Path) -> int | None:
    """The pid in the folder's pid file, if that process is a daemon serving this folder."""
    try:
        pid = int((folder / PIDFILE).read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if QSD.encode() in cmdline and str(folder).encode() in cmdline else None


def _loops(folder: Path) -> list[str]:
    """Loop devices whose backing file is in the folder (left by a killed scan)."""
    try:
        done = subprocess.run(["losetup", "--json", "--list"], capture_output=True, text=True,
                              check=False, timeout=10)  # fmt: skip
        devices = json.loads(done.stdout or "{}").get("loopdevices", [])
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return []
    prefix = str(folder).rstrip("/") + "/"
    return [d["name"] for d in devices if str(d.get("back-file", "")).startswith(prefix)]
