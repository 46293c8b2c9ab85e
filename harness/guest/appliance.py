"""The one place that runs libguestfs: :mod:`harness.guest.agent` under the system's Python
(which has Debian's ``python3-guestfs``), one JSON request in, one JSON answer out, bounded."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from harness.errors import InfraError, PhaseFailed, PhaseTimeout

AGENT = Path(__file__).with_name("agent.py")
SYSTEM_PYTHON = os.environ.get("RESTORE_DRILL_GUESTFS_PYTHON", "/usr/bin/python3")
TIMEOUT_S = 600.0  # an appliance boot under software emulation is ~15 s; this is a hang
PACKAGES = "apt install libguestfs-tools python3-guestfs linux-image-cloud-amd64"


def call(request: dict[str, Any], phase: str, timeout_s: float = TIMEOUT_S) -> dict[str, Any]:
    """Run one request; the answer. The guest refusing (no sshd, no such user) fails
    ``phase`` with the agent's reason; libguestfs missing or broken is an infrastructure
    error."""
    env = {**os.environ, "LIBGUESTFS_BACKEND": "direct", "HOME": os.environ.get("HOME", "/root")}
    try:
        done = subprocess.run(
            # -I: isolated, so neither PYTHON* variables nor this folder shadow the binding
            [SYSTEM_PYTHON, "-I", str(AGENT)], input=json.dumps(request), capture_output=True,
            text=True, timeout=timeout_s, check=False, env=env,
        )  # fmt: skip
    except FileNotFoundError:
        raise InfraError(f"{SYSTEM_PYTHON} not found: libguestfs needs the system's Python "
                         f"({PACKAGES})") from None  # fmt: skip
    except subprocess.TimeoutExpired:
        raise PhaseTimeout(phase, f"libguestfs gave no answer within {timeout_s:g}s") from None
    if "No module named 'guestfs'" in done.stderr:
        raise InfraError(f"libguestfs' Python binding is missing: {PACKAGES}")
    try:
        answer: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        said = " | ".join(done.stderr.strip().splitlines()[-3:]) or f"exit {done.returncode}"
        raise InfraError(f"libguestfs failed: {said}") from None
    if "refused" in answer:
        raise PhaseFailed(phase, str(answer["refused"]))
    if "error" in answer:
        raise PhaseFailed(phase, f"libguestfs could not read the disk: {answer['error']}")
    return answer
