"""Declarative checks in rounds: the round's script run for real (by bash on this machine, as
the guest's shell runs it), and every check's evidence compared with the same check run the
old way, one command at a time, through testinfra's local backend."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import testinfra

from harness.checks.batch import Machine, answers, replaying, run_batch, script
from harness.checks.declarative import run_check
from harness.errors import Aborted, PhaseFailed
from harness.scenario.model import CheckSpec


def local(calls: list[str] | None = None) -> Machine:
    """A machine whose rounds run here, in bash (the guest's login shell, for root)."""

    def execute(text: str, limit_s: float) -> bytes:
        if calls is not None:
            calls.append(text)
        return subprocess.run(["bash", "-c", text], capture_output=True, check=True,
                              timeout=limit_s + 10).stdout  # fmt: skip

    return replaying("127.0.0.1", execute)


def spec(name: str, kind: str, subject: str, timeout_s: float = 30, **options: object
         ) -> CheckSpec:  # fmt: skip
    return CheckSpec(name, kind, subject, options, timeout_s)


def test_a_round_answers_every_command_and_kills_what_outlives_it() -> None:
    commands = ["echo hi", "exit 3", "printf 'a\\0b' >&2; echo out", "sleep 30", "cd /; pwd"]
    started = time.monotonic()
    out = subprocess.run(["bash", "-c", script(commands, 1.0)], capture_output=True,
                         check=True, timeout=20).stdout  # fmt: skip
    took = time.monotonic() - started
    found = answers(out, commands, 1.0)
    assert took < 5  # the watchdog killed the sleep (and its process group) at 1 s
    assert (found["echo hi"].rc, found["echo hi"].stdout) == (0, b"hi\n")
    assert found["exit 3"].rc == 3
    both = found["printf 'a\\0b' >&2; echo out"]
    assert (both.stdout, both.stderr) == (b"out\n", b"a\0b")
    assert found["sleep 30"].rc is None
    assert found["sleep 30"].duration_s == 1.0
    assert found["cd /; pwd"].stdout == b"/\n"
    assert all(0 <= a.duration_s < 5 for a in found.values())


def test_each_check_says_what_it_said_when_it_ran_alone(tmp_path: Path) -> None:
    file = tmp_path / "VERSION"
    file.write_text("order-service 2026.11\n")
    specs = [
        spec("file", "file", str(file), contains="^order-service 2026"),
        spec("file sha", "file", str(file), sha256="0" * 64),
        spec("file absent", "file", str(tmp_path / "nothing")),
        spec("cmd", "command", "echo 1000; echo warn >&2", stdout_matches="^1000$"),
        spec("cmd fails", "command", "exit 4", exit_status=0),
        spec("cmd text", "command", "uname -s", stdout_contains="Linux"),
        spec("pkg", "package", "bash"),
        spec("pkg absent", "package", "no-such-package-here"),
        spec("svc", "service", "no-such-service"),
        spec("port", "port", "1"),
    ]
    calls: list[str] = []
    here = local(calls)
    batch = run_batch(specs, lambda _s: here)
    assert len(batch) == len(specs)
    alone = [run_check(testinfra.get_host("local://"), s, "") for s in specs]
    for got, want in zip(batch, alone, strict=True):
        assert (got.name, got.expectation, got.observed, got.passed, got.output) == (
            want.name, want.expectation, want.observed, want.passed, want.output), got.name
    assert [c.passed for c in batch] == [True, False, False, True, False, True, True, False,
                                         False, False]  # fmt: skip
    # rounds, not one round trip per command: here without systemd (so testinfra tries the
    # service tools in turn), and a failed service check asks for its status too
    assert len(calls) <= 5


def test_a_check_slower_than_its_timeout_fails_as_timed_out() -> None:
    one = local()
    [slow, quick] = run_batch([spec("slow", "command", "sleep 3", timeout_s=1),
                               spec("quick", "command", "true", timeout_s=30)],
                              lambda _s: one)  # fmt: skip
    assert (slow.passed, slow.observed) == (False, "no answer within 1s (timed out)")
    assert quick.passed


def test_a_round_that_fails_fails_its_checks_and_an_interrupt_stops_the_phase() -> None:
    def broken(_script: str, _limit: float) -> bytes:
        raise PhaseFailed("checks", "the connection dropped")

    [one] = run_batch([spec("f", "file", "/etc/hostname")], lambda _s: replaying("ip", broken))
    assert one.observed == "error: PhaseFailed: the connection dropped"

    def interrupted(_script: str, _limit: float) -> bytes:
        raise Aborted("SIGTERM")

    with pytest.raises(Aborted):
        run_batch([spec("f", "file", "/etc/hostname")], lambda _s: replaying("ip", interrupted))
