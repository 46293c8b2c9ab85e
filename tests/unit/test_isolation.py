"""How the egress probe classifies what the guest saw (the VM tests run it for real)."""

from __future__ import annotations

import re
import shlex
import socket
import subprocess
from collections.abc import Callable

import pytest

from harness.checks.isolation import (
    ATTEMPT_TIMEOUT_S,
    DEFAULT_TARGETS,
    DNS_LABEL,
    SCRIPT_SLACK_S,
    _attempt,
    probe_egress,
)

Run = Callable[[str, float], tuple[int, str]]


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
    assert command.startswith(f"timeout {ATTEMPT_TIMEOUT_S} bash -c ")
    assert "tcp 10.0.0.1:5432 10.0.0.1 5432 &" in command
    assert limit == ATTEMPT_TIMEOUT_S + SCRIPT_SLACK_S
    assert [a.target for a in attempts] == [*DEFAULT_TARGETS, "10.0.0.1:5432", DNS_LABEL]
    assert {a.outcome for a in attempts} == {"unproven"}
    assert "bash: not found" in attempts[0].detail


def test_each_line_the_guest_printed_is_one_attempt() -> None:
    printed = "".join(f"{t}\t1\t100.25\t100,75\tbash: connect: Network is unreachable\n"
                      for t in DEFAULT_TARGETS) + f"{DNS_LABEL}\t2\t1.0\t1.2\t\n"  # fmt: skip
    attempts = probe_egress(lambda command, limit: (0, printed))
    assert [a.outcome for a in attempts] == ["blocked"] * 4
    assert attempts[0].detail == "Network is unreachable after 0.50s"  # a decimal comma read
    assert attempts[-1].detail == "no resolver answered after 0.20s"  # the lookup timed too


def _locally(timeout_s: str = str(ATTEMPT_TIMEOUT_S), old_bash: bool = False) -> Run:
    """The probe's real command run here, as the guest would run it (``old_bash``: without
    EPOCHREALTIME; ``timeout_s``: the one timeout, shortened for a test that waits for it)."""

    def run(command: str, limit: float) -> tuple[int, str]:
        argv = shlex.split(command)
        assert argv[:4] == ["timeout", str(ATTEMPT_TIMEOUT_S), "bash", "-c"]
        script = ("unset EPOCHREALTIME\n" if old_bash else "") + argv[4]
        proc = subprocess.run(["timeout", timeout_s, "bash", "-c", script], capture_output=True,
                              text=True, timeout=limit, check=False)  # fmt: skip
        return proc.returncode, proc.stdout + proc.stderr

    return run


@pytest.mark.parametrize("clock", ["bash's own", "date (bash before 5.0)"])
def test_the_probe_script_runs_in_bash_and_times_each_attempt(clock: str) -> None:
    """The real script, here: a refused port and a failed lookup are blocked, each timed."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        closed = server.getsockname()[1]  # nothing listens once closed
    run = _locally(old_bash=clock != "bash's own")
    attempts = probe_egress(run, (), {"a closed port": f"127.0.0.1:{closed}"})
    refused = attempts[-2]
    assert refused.target == "a closed port"
    assert refused.outcome == "blocked"
    assert re.fullmatch(r"Connection refused after \d+\.\d\ds", refused.detail), refused.detail
    assert attempts[-1].target == DNS_LABEL


def test_a_listener_that_answers_is_a_connection() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        attempts = probe_egress(_locally(), (), {"open": f"127.0.0.1:{server.getsockname()[1]}"})
    assert attempts[-2].outcome == "connected"


def test_an_attempt_that_hangs_is_a_timeout_and_the_others_keep_their_answers() -> None:
    """A port whose SYNs are dropped (its accept queue is full) hangs the attempt: the one
    timeout ends it, it is a timeout (packets left the guest), and the refused one beside it
    stays blocked."""
    with socket.socket() as full:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        port = full.getsockname()[1]
        queued = [socket.create_connection(("127.0.0.1", port), timeout=5)]  # the one slot
        with socket.create_server(("127.0.0.1", 0)) as gone:
            closed = gone.getsockname()[1]
        try:
            attempts = probe_egress(_locally(timeout_s="2"), (),
                                    {"dropped": f"127.0.0.1:{port}",
                                     "refused": f"127.0.0.1:{closed}"})  # fmt: skip
        finally:
            for s in queued:
                s.close()
    by = {a.target: a for a in attempts}
    assert by["dropped"].outcome == "timeout", by["dropped"]
    assert by["refused"].outcome == "blocked", by["refused"]


def test_a_status_killed_by_the_timeout_is_no_proof_of_blocking() -> None:
    """An attempt the timeout's signal reached as it ended prints 143 (SIGTERM): read as an
    ordinary failure it would be "blocked"; it hung, and is a timeout."""
    printed = f"{DEFAULT_TARGETS[0]}\t143\t1.0\t21.0\t\n"
    attempts = probe_egress(lambda command, limit: (124, printed))
    assert attempts[0].outcome == "timeout"
    assert {a.outcome for a in attempts} == {"timeout"}
    killed = probe_egress(lambda command, limit: (0, printed))[0]
    assert killed.outcome == "unproven"  # killed by something else: it proves nothing


def test_an_attempt_whose_guest_clock_could_not_be_read_claims_no_duration() -> None:
    """A guest whose `date` lacks %N (and whose bash has no EPOCHREALTIME) prints no usable
    clock: the attempt is still blocked, but "after 0.0s" would be a made-up figure."""
    printed = "".join(f"{t}\t1\t%s.%N\t%s.%N\tbash: connect: Network is unreachable\n"
                      for t in DEFAULT_TARGETS) + f"{DNS_LABEL}\t2\t\t\t\n"  # fmt: skip
    attempts = probe_egress(lambda command, limit: (0, printed))
    assert [a.outcome for a in attempts] == ["blocked"] * 4
    assert attempts[0].detail == "Network is unreachable"
