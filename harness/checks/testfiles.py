"""Run the user's ordinary testinfra files (``def test_x(host): ...``) against the restored VM.

pytest runs in a child process, bounded by a timeout, with testinfra's own plugin disabled (it
would default to the *local* machine) and ours (:mod:`harness.checks.pytest_plugin`) giving
``host`` on a connection pinned to the recorded host key. Results come back as JUnit XML.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import asdict
from pathlib import Path

from harness.errors import Aborted
from harness.evidence.model import CheckResult
from harness.remote.keys import HostKey
from harness.remote.ssh import Target

TARGET_ENV = "RESTORE_DRILL_TARGET"


def run_testfiles(
    files: tuple[Path, ...], target: Target, host_key: HostKey, timeout_s: float
) -> list[CheckResult]:
    """One result per test function; a timeout or crash is one failed result saying so."""
    with tempfile.TemporaryDirectory(prefix="rdrill-tests-") as tmp:
        junit = Path(tmp) / "junit.xml"
        env = {
            **os.environ,
            TARGET_ENV: json.dumps(
                {
                    "ip": target.ip,
                    "port": target.port,
                    "user": target.user,
                    "key_file": str(target.key_file),
                    "password": target.password,
                    "netns": target.netns,
                    "jump": asdict(target.jump) if target.jump else None,
                    "host_key_type": host_key.type,
                    "host_key": host_key.base64,
                }
            ),
            "PYTHONDONTWRITEBYTECODE": "1",
            # No plugin autoload: testinfra's own plugin would point ``host`` at *this*
            # machine. Only ours is loaded, and it points at the restored VM.
            "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        }
        cmd = [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "-p", "harness.checks.pytest_plugin", "-o", "addopts=", "-o", "filterwarnings=",
            f"--rootdir={os.path.commonpath([f.parent for f in files])}",
            f"--junitxml={junit}", "-o", "junit_family=xunit2",
            *map(str, files),
        ]  # fmt: skip
        proc = subprocess.Popen(
            cmd, env=env, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True,
        )  # fmt: skip
        try:
            output, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
            return [CheckResult(
                "testinfra files", "testinfra", f"{len(files)} file(s) pass",
                f"no result within {timeout_s:g}s (timed out)", False, timeout_s, output[-8000:],
            )]  # fmt: skip
        except Aborted:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        results = _parse_junit(junit) if junit.exists() else []
        if not results or proc.returncode not in (0, 1):
            results.append(CheckResult(
                "testinfra files", "testinfra", "pytest collects and runs the files",
                f"pytest exit {proc.returncode}", False, 0.0, output[-8000:],
            ))  # fmt: skip
        return results


def _parse_junit(path: Path) -> list[CheckResult]:
    results = []
    # B314: our pytest child wrote it
    for case in ET.parse(path).getroot().iter("testcase"):  # nosec B314
        problem = next((c for c in case if c.tag in ("failure", "error", "skipped")), None)
        module = case.get("classname", "").rpartition(".")[2] or "tests"
        name = f"{module}::{case.get('name')}"
        if problem is None:
            observed, output = "passed", ""
        else:
            message = (problem.get("message") or "").strip().splitlines()
            observed = f"{problem.tag}: {message[0] if message else ''}"[:500]
            output = problem.text or ""
        # A skipped test proved nothing: it is never counted as passed.
        results.append(CheckResult(
            name, "testinfra", "test passes", observed, problem is None,
            float(case.get("time", 0)), output[-8000:],
            skipped=problem is not None and problem.tag == "skipped",
        ))  # fmt: skip
    return results
