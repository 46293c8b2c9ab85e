"""Run one of the host's network tools (ip, nft, sysctl) for the lab, bounded; its output,
or a :class:`LabError` that says what could not be done and why."""

from __future__ import annotations

import subprocess

from harness.errors import LabError

TIMEOUT_S = 30.0


def run_tool(cmd: list[str], stdin: str, what: str, package: str = "") -> str:
    """``cmd``'s standard output; ``what`` names the step in any error ("cannot …")."""
    try:
        done = subprocess.run(cmd, input=stdin, capture_output=True, text=True,
                              timeout=TIMEOUT_S, check=False)  # fmt: skip
    except FileNotFoundError:
        install = f" (apt install {package})" if package else ""
        raise LabError(f"cannot {what}: {cmd[0]} is not installed{install}") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"cannot {what}: {cmd[0]} gave no answer within {TIMEOUT_S:g}s") from None
    if done.returncode != 0:
        said = done.stderr.strip() or f"{cmd[0]} exit {done.returncode}"
        raise LabError(f"cannot {what}: {said}")
    return done.stdout
