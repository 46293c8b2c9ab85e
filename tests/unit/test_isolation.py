"""How the egress probe classifies what the guest saw (the VM tests run it for real)."""

from __future__ import annotations

import re
import shlex
import socket
import subprocess

import pytest

from harness.checks.isolation import (
    ATTEMPT_TIMEOUT_S,
    DEFAULT_TARGETS,
    DNS_LABEL,
    SCRIPT_SLACK_S,
    _attempt,
    probe_egress,
)


@pytest.mark.parametrize(
    ("label", "rc", "message", "outcome"),
    [
        ("192.0.2.1:443", 1, "bash: connect: Network is unreachable", "blocked"),
        ("192.0.2.1:443", 1, "bash: connect: Connection refused", "blocked"),
        ("192.0.2.1:443", 0, "", "connected"),
        ("192.0.2.1:443", 124, "", "timeout"),
        ("192.0.2.1:443", 127, "sh: 1: bash: not found", "unproven"),
        ("192.0.2.1:443", 126, "bash: Permission denied", "unproven"),
        ("DNS example.org", 2, "", "blocked"),
        ("DNS example.org", 0, "", "resolved"),
        ("DNS example.org", 124, "", "timeout"),
        ("DNS example.org", 127, "getent: not found", "unproven"),
    ],
)
def test_classification(label: str, rc: int, message: str, outcome: str) -> None:
    attempt = _attempt(label, rc, 0.1, message)
    assert attempt.outcome == outcome
    assert attempt.isolated is (outcome == "blocked")


def test_the_probe_is_one_bounded_command_and_a_silent_guest_proves_nothing() -> None:
    calls: list[tuple[str, float]] = []

    def run(command: str, limit: float) -> tuple[int, str]:
        calls.append((command, limit))
        return 127, "sh: 1: bash: not found\n"

    attempts = probe_egress(run, ("10.0.0.1:5432",))
    [(command, limit)] = calls
    assert command.startswith("bash -c ")
    assert "/dev/tcp/10.0.0.1/5432" in command
    assert limit == ATTEMPT_TIMEOUT_S + SCRIPT_SLACK_S
    assert [a.target for a in attempts] == [*DEFAULT_TARGETS, "10.0.0.1:5432", DNS_LABEL]
    assert {a.outcome for a in attempts} == {"unproven"}
    assert "bash: not found" in attempts[0].detail


def test_each_line_the_guest_printed_is_one_attempt() -> None:
    printed = "".join(f"{t}\t1\t100.25\t100,75\tbash: connect: Network is unreachable\n"
                      for t in DEFAULT_TARGETS) + f"{DNS_LABEL}\t2\t1.0\t1.2\t\n"  # fmt: skip
    attempts = probe_egress(lambda command, limit: (0, printed))
    assert [a.outcome for a in attempts] == ["blocked"] * 4
    assert attempts[0].detail == "Network is unreachable after 0.5s"  # a decimal comma read


@pytest.mark.parametrize("clock", ["bash's own", "date (bash before 5.0)"])
def test_the_probe_script_runs_in_bash_and_times_each_attempt(clock: str) -> None:
    """The real script, here: a refused port and a failed lookup are blocked, each timed."""

    def run(command: str, limit: float) -> tuple[int, str]:
        argv = shlex.split(command)
        assert argv[:2] == ["bash", "-c"]
        script = argv[2] if clock == "bash's own" else "unset EPOCHREALTIME\n" + argv[2]
        proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                              timeout=limit, check=False)  # fmt: skip
        return proc.returncode, proc.stdout

    with socket.create_server(("127.0.0.1", 0)) as server:
        closed = server.getsockname()[1]  # nothing listens once closed
    attempts = probe_egress(run, (), {"a closed port": f"127.0.0.1:{closed}"})
    refused = attempts[-2]
    assert refused.target == "a closed port"
    assert refused.outcome == "blocked"
    assert re.fullmatch(r"Connection refused after \d+\.\ds", refused.detail), refused.detail
    assert attempts[-1].target == DNS_LABEL


def test_an_attempt_whose_guest_clock_could_not_be_read_claims_no_duration() -> None:
    """A guest whose `date` lacks %N (and whose bash has no EPOCHREALTIME) prints no usable
    clock: the attempt is still blocked, but "after 0.0s" would be a made-up figure."""
    printed = "".join(f"{t}\t1\t%s.%N\t%s.%N\tbash: connect: Network is unreachable\n"
                      for t in DEFAULT_TARGETS) + f"{DNS_LABEL}\t2\t\t\t\n"  # fmt: skip
    attempts = probe_egress(lambda command, limit: (0, printed))
    assert [a.outcome for a in attempts] == ["blocked"] * 4
    assert attempts[0].detail == "Network is unreachable"
