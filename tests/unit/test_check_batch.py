"""Declarative checks in rounds: the round's script run for real (by bash on this machine, as
the guest's shell runs it), and every check's evidence compared with the same check run the
old way, one command at a time, through testinfra's local backend."""

from __future__ import annotations

import shlex
import subprocess
import time
from pathlib import Path

import pytest
import testinfra

from harness.checks.batch import (
    PREFETCH,
    Answer,
    Execute,
    Machine,
    answers,
    prefetch,
    replaying,
    run_batch,
    script,
)
from harness.checks.declarative import run_check
from harness.errors import Aborted, PhaseFailed
from harness.scenario.model import CheckSpec


def here(calls: list[str] | None = None) -> Execute:
    """Rounds run here, in bash (the guest's login shell, for root)."""

    def execute(text: str, limit_s: float) -> bytes:
        if calls is not None:
            calls.append(text)
        return subprocess.run(["bash", "-c", text], capture_output=True, check=True,
                              timeout=limit_s + 10).stdout  # fmt: skip

    return execute


def local(calls: list[str] | None = None, known: dict[str, Answer] | None = None) -> Machine:
    """A machine whose rounds run here (``known``: answers it has already)."""
    return replaying("127.0.0.1", here(calls), known)


def spec(name: str, kind: str, subject: str, timeout_s: float = 30, **options: object
         ) -> CheckSpec:  # fmt: skip
    return CheckSpec(name, kind, subject, options, timeout_s)


def test_a_round_answers_every_command_and_kills_what_outlives_it() -> None:
    commands = ["echo hi", "exit 3", "printf 'a\\0b' >&2; echo out", "sleep 30", "cd /; pwd"]
    limits = dict.fromkeys(commands, 1.0)
    started = time.monotonic()
    out = subprocess.run(["bash", "-c", script(limits)], capture_output=True,
                         check=True, timeout=20).stdout  # fmt: skip
    took = time.monotonic() - started
    found = answers(out, limits)
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


def test_facts_asked_ahead_spare_the_checks_a_round_and_change_no_evidence(
    tmp_path: Path,
) -> None:
    """The system facts asked ahead (beside settle, in a drill): the checks' first round asks
    their own commands, one round less, and every check says what it said without them."""
    file = tmp_path / "f"
    file.write_text("x\n")
    specs = [spec("pkg", "package", "bash"), spec("svc", "service", "no-such-service"),
             spec("file", "file", str(file), contains="x")]  # fmt: skip
    ahead: list[str] = []
    known = prefetch(here(ahead), 30)
    assert set(known) == set(PREFETCH)
    with_facts: list[str] = []
    without: list[str] = []
    informed, uninformed = local(with_facts, known), local(without)
    fast = run_batch(specs, lambda _s: informed)
    slow = run_batch(specs, lambda _s: uninformed)
    assert [(c.observed, c.passed) for c in fast] == [(c.observed, c.passed) for c in slow]
    assert len(with_facts) == len(without) - 1
    assert "eval 'uname -s'" in without[0]
    assert not any(f"eval {shlex.quote(c)}" in with_facts[0] for c in PREFETCH)


def test_a_check_slower_than_its_timeout_fails_as_timed_out_at_its_own_limit() -> None:
    """Each command runs only as long as the check asking for it may: a hung command of a
    3-second check ends at 3 s, though a 30-second check shares its round."""
    one = local()
    started = time.monotonic()
    [hung, quick] = run_batch([spec("hung", "command", "sleep 600", timeout_s=1),
                               spec("quick", "command", "sleep 0.2", timeout_s=30)],
                              lambda _s: one)  # fmt: skip
    assert time.monotonic() - started < 6
    assert (hung.passed, hung.observed) == (False, "no answer within 1s (timed out)")
    assert 1 <= hung.duration_s < 3
    assert quick.passed


class _Client:
    """A paramiko client stand-in: its transport alive or not."""

    def __init__(self, alive: bool) -> None:
        self.alive = alive

    def get_transport(self) -> _Client:
        return self

    def is_active(self) -> bool:
        return self.alive


def test_a_dropped_connection_is_made_again_pinned_and_the_round_asked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from harness.checks import batch

    sent: list[object] = []

    def capture(client: object, *_args: object) -> tuple[int, bytes, str]:
        sent.append(client)
        if len(sent) == 1:
            raise PhaseFailed("checks", "the SSH connection to the guest is gone")
        return 0, b"tar", ""

    monkeypatch.setattr(batch, "run_capture", capture)
    dead, fresh = _Client(alive=False), _Client(alive=True)
    execute = batch.over_ssh(lambda: dead, lambda: fresh, "checks", lambda: None)
    assert execute("script", 1.0) == b"tar"
    assert sent == [dead, fresh]
    # a connection that stands is not made again: the round's own failure is said
    sent.clear()
    alive = _Client(alive=True)
    with pytest.raises(PhaseFailed, match="gone"):
        batch.over_ssh(lambda: alive, lambda: fresh, "checks", lambda: None)("script", 1.0)
    assert sent == [alive]

    def refused() -> object:
        raise PhaseFailed("checks", "cannot reconnect to 10.0.0.5: host key changed")

    sent.clear()
    with pytest.raises(PhaseFailed, match="host key changed"):
        batch.over_ssh(lambda: dead, refused, "checks", lambda: None)("script", 1.0)


def test_a_round_that_fails_fails_its_checks_and_an_interrupt_stops_the_phase() -> None:
    def broken(_script: str, _limit: float) -> bytes:
        raise PhaseFailed("checks", "the connection dropped")

    [one] = run_batch([spec("f", "file", "/etc/hostname")], lambda _s: replaying("ip", broken))
    assert one.observed == "error: PhaseFailed: the connection dropped"

    def interrupted(_script: str, _limit: float) -> bytes:
        raise Aborted("SIGTERM")

    with pytest.raises(Aborted):
        run_batch([spec("f", "file", "/etc/hostname")], lambda _s: replaying("ip", interrupted))


def test_a_round_leaves_nothing_behind_and_its_commands_run_as_the_login_shell_would(
    tmp_path: Path,
) -> None:
    """The round's files are created by the shell without clobbering (a link planted at
    their name is not followed), removed by tar as it packs them; the commands themselves
    run with noclobber off: a check's own `>` over an existing file works as it would."""
    work = tmp_path / "tmp"
    work.mkdir()
    target = tmp_path / "target"
    target.write_text("untouched\n")
    command = f"cd {tmp_path}; echo a > f; echo b > f; cat f"
    limits = {command: 5.0, "echo $TMPDIR": 5.0}
    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(work)}
    out = subprocess.run(["bash", "-c", script(limits)], capture_output=True, check=True,
                         timeout=20, env=env).stdout  # fmt: skip
    found = answers(out, limits)
    assert found[command].stdout == b"b\n"
    assert list(work.iterdir()) == []
    # a link at the name the round would use: the round fails rather than write through it
    planted = script(limits).replace("rd-$$-$RANDOM$RANDOM", "rd-planted")
    (work / "rd-planted.start").symlink_to(target)
    failed = subprocess.run(["bash", "-c", planted], capture_output=True,
                            timeout=20, env=env, check=False)  # fmt: skip
    assert failed.returncode == 97
    assert target.read_text() == "untouched\n"
