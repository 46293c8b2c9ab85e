"""Declarative checks in rounds: each check's own code (:mod:`.declarative`, testinfra's modules
under it) runs against a testinfra backend that answers from what the guest already said;
a command it has not said yet is collected, and every command collected from every check
runs in **one guest-side script per round** (one SSH exec, all commands at once, results back
as one tar stream). A check is evaluated again once its answers are in, until it resolves:
three or four rounds for any mix of checks, instead of one round trip per command.

Each check's evidence is what its own code computed from its own commands' real answers, as
when it ran alone; its duration is the time its commands took in the guest, and a check whose
commands took longer than its timeout fails "no answer within …", as before. Checks are
observations: they run at once and share the answers to identical commands (a ``command``
check that changes the system belongs in ``restore_steps``; see docs/decisions.md).
``http`` checks are made from the harness, beside the rounds.
"""

from __future__ import annotations

import io
import shlex
import tarfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from testinfra.backend.base import BaseBackend
from testinfra.host import Host

from harness.checks.declarative import KINDS, Connector, Outcome, failed, run_check, timed_out
from harness.errors import Aborted, PhaseFailed
from harness.evidence.model import CheckResult
from harness.remote.commands import run_capture
from harness.scenario.model import CheckSpec

#: What testinfra asks first of any Linux guest (its system facts, its init system, which
#: tools exist), asked in the first round with the checks' own first commands: each would
#: otherwise cost a round of its own. Only a hint: an answer testinfra never asks for is
#: never used, and a command testinfra spells otherwise is asked in a later round.
PREFETCH = ("uname -s", "cat /etc/os-release", "uname -m", "test -d /run/systemd/system/",
            "command -v command", "command -v ss", "command -v systemctl", "command -v service",
            "realpath /sbin/init", "id -nu")
MIN_LIMIT_S = 0.1
MAX_ROUNDS = 12  # a check needing more sequential commands than this is a bug of ours
GRACE_S = 10.0  # beyond the longest check timeout of a round: the script's own end


class Miss(BaseException):
    """A command the guest has not answered yet (a BaseException: testinfra's own
    ``except Exception`` must not swallow it)."""

    def __init__(self, command: str) -> None:
        super().__init__(command)
        self.command = command
        self.spent_s = 0.0  # what the check's answered commands took so far


@dataclass(frozen=True)
class Answer:
    rc: int | None  # None: the command did not end within the round
    stdout: bytes
    stderr: bytes
    duration_s: float


class ReplayBackend(BaseBackend):  # type: ignore[misc]
    """A testinfra backend that answers from ``answers``; any other command is a :class:`Miss`.
    It records which commands the current evaluation used. It never connects anywhere."""

    NAME = "replay"

    def __init__(self, hostname: str, answers: dict[str, Answer]) -> None:
        super().__init__(hostname)
        self.answers = answers
        self.used: list[str] = []

    def run(self, command: str, *args: str, **kwargs: Any) -> Any:
        cmd = self.get_command(command, *args)
        answer = self.answers.get(cmd)
        if answer is None:
            raise Miss(cmd)
        self.used.append(cmd)
        if answer.rc is None:
            raise Late(cmd)
        return self.result(answer.rc, self.encode(cmd), answer.stdout, answer.stderr)


class Late(BaseException):
    """A command whose answer did not come within its round."""


#: runs a round's script in the guest within a limit: its output (the tar stream)
Execute = Callable[[str, float], bytes]


@dataclass
class Machine:
    """One guest's side of the batch: how a round runs there, its answers, its replaying
    testinfra host."""

    ip: str
    execute: Execute
    backend: ReplayBackend
    host: Any

    @property
    def answers(self) -> dict[str, Answer]:
        return self.backend.answers


def replaying(ip: str, execute: Execute, known: dict[str, Answer] | None = None) -> Machine:
    """A machine whose checks ask over ``execute``, ``known`` answers already in."""
    backend = ReplayBackend(ip, dict(known or {}))
    host = Host(backend)
    backend.set_host(host)
    return Machine(ip, execute, backend, host)


def over_ssh(client: Callable[[], Any], reconnect: Callable[[], Any] | None, phase: str,
             check: Callable[[], None]) -> Execute:  # fmt: skip
    """A round run over the drill's SSH connection (one exec), bounded. A connection that
    dropped is made again once, with the pinned host key only (``reconnect``, if given), and
    the round asked again: a guest whose host key changed fails its checks saying so."""

    def once(connection: Any, script: str, limit_s: float) -> bytes:
        status, out, err = run_capture(connection, phase, script, limit_s + GRACE_S, check)
        if status != 0 or not out:
            raise PhaseFailed(phase, f"the round of checks failed in the guest (exit {status})"
                                     + (f": {err}" if err else ""))  # fmt: skip
        return out

    def execute(script: str, limit_s: float) -> bytes:
        try:
            return once(client(), script, limit_s)
        except PhaseFailed:
            transport = client().get_transport()
            if reconnect is None or (transport is not None and transport.is_active()):
                raise  # the connection stands: the round itself failed
        return once(reconnect(), script, limit_s)

    return execute


def run_batch(specs: Sequence[CheckSpec], machine_of: Callable[[CheckSpec], Machine],
              via: Connector | None = None) -> list[CheckResult]:  # fmt: skip
    """Every check's result, in the order given."""
    results: list[CheckResult | None] = [None] * len(specs)
    http = [i for i, s in enumerate(specs) if s.kind == "http"]

    def client_side() -> None:  # as a client sees the service, from the harness
        for i in http:
            results[i] = run_check(None, specs[i], machine_of(specs[i]).ip, via)

    beside = threading.Thread(target=client_side, name="checks:http", daemon=True)
    beside.start()
    pending = [i for i, s in enumerate(specs) if s.kind != "http"]
    for n in range(MAX_ROUNDS):
        if not pending:
            break
        asked: dict[int, Round] = {}  # by machine
        for i in pending:
            spec, machine = specs[i], machine_of(specs[i])
            outcome = _evaluate(spec, machine)
            if isinstance(outcome, Miss):
                one = asked.setdefault(id(machine), Round(machine))
                if n == 0 and not one.limits:
                    one.limits.update((c, spec.timeout_s) for c in PREFETCH
                                      if c not in machine.answers)  # fmt: skip
                one.add(i, outcome, spec)
            else:
                results[i] = outcome
        pending = []
        for one in _ask_all(list(asked.values())):
            if one.error is None:
                pending += one.checks
            for i in one.checks if one.error is not None else ():
                results[i] = failed(specs[i], f"error: {type(one.error).__name__}: "
                                              f"{one.error}", 0.0)  # fmt: skip
    for i in pending:  # never resolved: a bug of ours, said as such
        results[i] = failed(specs[i], f"error: not resolved in {MAX_ROUNDS} rounds", 0.0)
    beside.join()
    return [r for r in results if r is not None]


@dataclass
class Round:
    """One machine's commands of a round, asked for by which checks, bounded by the longest
    timeout among them."""

    machine: Machine
    limits: dict[str, float] = field(default_factory=dict)  # command -> seconds it may run
    checks: list[int] = field(default_factory=list)
    error: Exception | None = None

    def add(self, index: int, miss: Miss, spec: CheckSpec) -> None:
        """A check's missing command, which may run as long as the check has time left (the
        longest of the checks asking for it: a shorter one finds it too slow itself)."""
        left = max(spec.timeout_s - miss.spent_s, MIN_LIMIT_S)
        self.limits[miss.command] = max(self.limits.get(miss.command, 0.0), left)
        self.checks.append(index)


def _ask_all(rounds: list[Round]) -> list[Round]:
    """Each machine's round at once; a failure is kept with its round (an interrupt is
    raised once all have ended)."""
    stopped: list[BaseException] = []

    def ask(one: Round) -> None:
        try:
            _ask(one.machine, one.limits)
        except Aborted as exc:  # Ctrl-C, SIGTERM: the phase ends, raised below
            stopped.append(exc)
        except Exception as exc:  # said for each of its checks
            one.error = exc
        except BaseException as exc:
            stopped.append(exc)

    threads = [threading.Thread(target=ask, args=(one,), daemon=True) for one in rounds]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if stopped:
        raise stopped[0]
    return rounds


def _evaluate(spec: CheckSpec, machine: Machine) -> CheckResult | Miss:
    """The check's result if every command it needs is answered; else the first it lacks."""
    machine.backend.used = []
    try:
        outcome: Outcome | BaseException = KINDS[spec.kind](machine.host, spec, machine.ip)
    except Miss as miss:
        miss.spent_s = sum(machine.answers[c].duration_s for c in machine.backend.used)
        return miss
    except Late:
        took = sum(machine.answers[c].duration_s for c in machine.backend.used)
        return timed_out(spec, took)
    except Exception as exc:
        outcome = exc
    took = sum(machine.answers[c].duration_s for c in machine.backend.used)
    if took > spec.timeout_s:
        return timed_out(spec, took)
    if isinstance(outcome, BaseException):
        return failed(spec, f"error: {type(outcome).__name__}: {outcome}", took)
    return CheckResult(spec.name, spec.kind, outcome.expectation, outcome.observed,
                       outcome.passed, took, outcome.output)  # fmt: skip


def script(limits: dict[str, float]) -> str:
    """One round in the guest: every command at once (each in its own process group, its
    output, error and exit status in files), a watchdog per limit that kills the commands
    still running when theirs is reached, then the files as a tar stream (modification
    times in nanoseconds), removed by tar as it goes. The script's own variables are named
    ``_rd_…``: no command's variables collide with them. Under software emulation every
    program the guest starts costs, so the files are created by the shell itself, afresh
    (noclobber: never through a file or link already there), not in a ``mktemp`` folder
    that ``rm`` removes; each command runs with noclobber off, as the login shell runs it."""
    lines = ["set -m 2>/dev/null; set -C", "_rd_d=${TMPDIR:-/tmp} _rd_n=rd-$$-$RANDOM$RANDOM",
             '_rd_f=$_rd_d/$_rd_n', ': >"$_rd_f.start" || exit 97']  # fmt: skip
    for n, command in enumerate(limits):
        # eval in a subshell: the command as the login shell would run it, without an exec
        lines += [f'{{ (set +C; eval {shlex.quote(command)}) >"$_rd_f.{n}.o" 2>"$_rd_f.{n}.e" '
                  f'</dev/null; echo $? >"$_rd_f.{n}.r"; }} &', f"_rd_p{n}=$!"]  # fmt: skip
    by_limit: dict[float, list[int]] = {}
    for n, limit in enumerate(limits.values()):
        by_limit.setdefault(limit, []).append(n)
    watchdogs = []
    for w, (limit, group) in enumerate(sorted(by_limit.items())):
        kill = " ".join(f"-$_rd_p{n}" for n in group)
        # a watchdog holds none of the channel's streams (they would stay open, and the
        # round with them, as long as its sleep), and goes with its sleep once all ended
        lines += [f"( sleep {limit:.3f}; kill -9 {kill} ) >/dev/null 2>&1 </dev/null &",
                  f"_rd_w{w}=$!"]  # fmt: skip
        watchdogs.append(f"-$_rd_w{w} $_rd_w{w}")
    lines += ["wait " + " ".join(f"$_rd_p{n}" for n in range(len(limits))),
              f"kill -- {' '.join(watchdogs)} 2>/dev/null",
              'cd "$_rd_d" && tar --remove-files --format=posix -cf - "$_rd_n".*']  # fmt: skip
    return "\n".join(lines)


def prefetch(execute: Execute, limit_s: float) -> dict[str, Answer]:
    """The answers to :data:`PREFETCH`, asked ahead of the checks in one round (each command
    bounded by ``limit_s``): the checks' first round then asks their own commands at once."""
    limits = dict.fromkeys(PREFETCH, limit_s)
    return answers(execute(script(limits), limit_s), limits)


def _ask(machine: Machine, limits: dict[str, float]) -> None:
    """Run one round's commands on the machine; their answers into its cache."""
    out = machine.execute(script(limits), max(limits.values()))
    machine.answers.update(answers(out, limits))


def answers(stream: bytes, limits: dict[str, float]) -> dict[str, Answer]:
    """Each command's answer from a round's tar stream (:func:`script`): its exit status
    (None: killed at the limit), output, error, and how long after the round's start it
    ended."""
    files: dict[str, tarfile.TarInfo] = {}
    data: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(stream), mode="r:") as tar:
        for member in tar.getmembers():
            name = member.name.split(".", 1)[-1]  # rd-<pid>-<random>.<file>
            files[name] = member
            extracted = tar.extractfile(member) if member.isfile() else None
            data[name] = extracted.read() if extracted else b""
    start = files["start"].mtime if "start" in files else 0.0
    found = {}
    for n, (command, limit_s) in enumerate(limits.items()):
        rc = data.get(f"{n}.r", b"").strip()
        ended = files.get(f"{n}.r")
        found[command] = Answer(
            int(rc) if rc.isdigit() else None, data.get(f"{n}.o", b""), data.get(f"{n}.e", b""),
            max((ended.mtime - start) if ended else limit_s, 0.0),
        )  # fmt: skip
    return found
