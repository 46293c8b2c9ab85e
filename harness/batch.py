"""A run of one or more scenarios: pick (``--sample``), lock, drill, write evidence, sum up.

Drills run one after another in this process, or with ``--parallel N`` each in a child
process (``restore-drill run --log-format json``) whose JSON event lines this process reads
and passes on: a crash, a hang in a C library or a signal in one drill cannot take the
others with it. Parallel drills are also bounded by host memory: a drill starts only when
its VM fits beside the running ones. One scenario's failure never stops the others.
"""

from __future__ import annotations

import math
import queue
import random
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harness.drill import DrillOptions, DrillOutcome, run_drill
from harness.drill.clock import utc_now, utc_stamp
from harness.durations import format_duration
from harness.errors import Aborted, Busy, DrillError, ExitCode
from harness.evidence.index import build_index
from harness.evidence.ledger import LedgerDamaged
from harness.evidence.model import RunResult, Verdict
from harness.evidence.writer import write_evidence
from harness.finished import Finished
from harness.hosts.inventory import HostSpec, Inventory
from harness.hosts.placement import Placement, needs_local
from harness.interrupts import Interrupts
from harness.lab.hypervisor import Hypervisor
from harness.lab.lifecycle import state_root
from harness.output.events import Event, Sink, from_json
from harness.runlock import scenario_lock
from harness.scenario.model import Scenario
from harness.sources.busy import wait_until_idle

QEMU_OVERHEAD_MIB = 256  # QEMU itself, beyond guest RAM (TCG's translation cache included)
HOST_RESERVE_MIB = 1024  # left to the host and the harness


@dataclass(frozen=True)
class Plan:
    """Where evidence goes and how a drill waits for its scenario's lock."""

    reports: Path
    options: DrillOptions
    signing_key: Ed25519PrivateKey | None = None
    wait_lock_s: float = 0.0
    wait_backup_s: float = 0.0  # for a repository a running backup holds locked


def sample(scenarios: Sequence[Scenario], n: int | None, seed: int) -> list[Scenario]:
    """``n`` scenarios picked at random (reproducibly for a given ``seed``), in file order."""
    if n is None or n >= len(scenarios):
        return list(scenarios)
    picked = set(random.Random(seed).sample(range(len(scenarios)), n))  # noqa: S311 - not crypto
    return [s for i, s in enumerate(scenarios) if i in picked]


def exit_code(finished: Sequence[Finished]) -> int:
    return ExitCode.worst([f.exit_code for f in finished])


def run_in_process(
    scenarios: Sequence[Scenario], plan: Plan, sink: Sink, interrupts: Interrupts,
    admission: Admission | None = None,
) -> list[Finished]:
    """Drill each scenario in turn (on the host ``admission`` picks); stop after one was
    interrupted."""
    finished = []
    for n, scenario in enumerate(scenarios):
        admitted = admission.admit(scenario, busy=False) if admission else Admitted(0)
        if isinstance(admitted, Finished) or admitted is None:
            done = admitted or Finished(scenario.name, "SKIPPED", ExitCode.BUSY,
                                        admission.waits_for(scenario) if admission else "")
            _announce(done, sink)
            finished.append(done)
            continue
        if admitted.host is not None:
            sink(Event("batch", scenario.name, f"placed on host {admitted.host.name}"))
            plan = replace(plan, options=replace(plan.options, uri=admitted.host.uri,
                                                 host=admitted.host))  # fmt: skip
        try:
            done = drill_one(scenario, plan, sink, interrupts)
        finally:
            if admission:
                admission.release(admitted)
        finished.append(done)
        if done.verdict == "ABORTED" or interrupts.received:
            rest = ", ".join(s.name for s in scenarios[n + 1 :])
            if rest:
                sink(Event("batch", "", f"not run, the run was interrupted: {rest}"))
            break
    return finished


def drill_one(scenario: Scenario, plan: Plan, sink: Sink, interrupts: Interrupts) -> Finished:
    """Lock, drill, write the evidence, announce the verdict: one scenario's boundary.
    Whatever goes wrong here ends this scenario only; the run goes on with the next."""
    kept_hint = ""
    try:
        with scenario_lock(state_root(), scenario.name, plan.wait_lock_s, interrupts.check):
            wait_until_idle(scenario, plan.wait_backup_s, interrupts.check)
            outcome = run_drill(scenario, plan.options, sink, interrupts)
            kept_hint = outcome.kept_hint
            done = _write(scenario, outcome, plan, sink)
    except Busy as exc:
        done = Finished(scenario.name, "SKIPPED", exc.exit_code, str(exc))
    except DrillError as exc:  # the lock folder itself
        done = Finished(scenario.name, "ERROR", exc.exit_code, str(exc))
    except Aborted as exc:  # a signal while waiting for the scenario's lock
        done = Finished(scenario.name, "ABORTED", ExitCode.ABORTED,
                        f"{exc} before the drill started")  # fmt: skip
    except Exception as exc:  # a bug of ours outside the drill's own boundary
        _say_traceback(exc, scenario.name, sink)
        done = Finished(scenario.name, "ERROR", ExitCode.INFRA,
                        f"internal error (a bug; please report it): {type(exc).__name__}: {exc}")
    _announce(done, sink, kept_hint)
    return done


def _write(scenario: Scenario, outcome: DrillOutcome, plan: Plan, sink: Sink) -> Finished:
    """The evidence folder, chained in the ledger. A damaged ledger makes the drill an ERROR
    (said in its report) whose folder is written unchained; no folder at all is an ERROR."""
    result = outcome.result

    def write(chain: bool = True) -> Path:
        return write_evidence(
            result, scenario.rendered, outcome.console_log, plan.reports, scenario.secrets,
            plan.signing_key, chain, outcome.images,
        )  # fmt: skip

    try:
        try:
            folder = write()
        except LedgerDamaged as exc:
            result.reason = (f"the evidence ledger cannot be extended: {exc}; this run's folder "
                             f"is not chained (the drill ended {result.verdict}: "
                             f"{result.reason})")  # fmt: skip
            result.verdict, result.exit_code = Verdict.ERROR, ExitCode.INFRA
            folder = write(chain=False)
    except DrillError as exc:  # no evidence: whatever the drill found, it proves nothing
        return Finished(scenario.name, "ERROR", ExitCode.INFRA,
                        f"the drill ended {result.verdict} ({result.reason}) but its evidence "
                        f"could not be written: {exc}")  # fmt: skip
    try:
        build_index(plan.reports)
    except Exception as exc:  # the history page is derived: the run's evidence stands
        sink(Event("note", scenario.name, f"the history page was not rebuilt: "
                                          f"{type(exc).__name__}: {exc}"))  # fmt: skip
    return Finished(scenario.name, result.verdict, result.exit_code, result.reason, folder)


def _say_traceback(exc: BaseException, scenario: str, sink: Sink) -> None:
    text = "".join(traceback.format_exception(exc)).rstrip()
    sink(Event("traceback", scenario, f"unexpected error:\n{text}"))


def _announce(done: Finished, sink: Sink, kept_hint: str = "") -> None:
    sink(Event("verdict", done.scenario, f"{done.verdict}: {done.reason}", status=done.verdict,
               exit_code=done.exit_code, report=str(done.report or "")))  # fmt: skip
    if done.report:
        sink(Event("note", done.scenario, f"evidence: {done.report / 'report.html'}"))
    if kept_hint:
        sink(Event("note", done.scenario, kept_hint))


def free_memory_mib() -> int:
    """MemAvailable: what the host can give to new VMs without swapping."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return 0


def need_mib(scenario: Scenario) -> int:
    return scenario.memory_mib + QEMU_OVERHEAD_MIB * len(scenario.machines)


@dataclass(frozen=True)
class Admitted:
    """A drill let in: where it runs (``host``: an inventory's host, None: this machine) and
    what it costs there."""

    need_mib: int
    host: HostSpec | None = None

    @property
    def argv(self) -> list[str]:
        return ["--on", self.host.name] if self.host else []


class Admission(Protocol):
    """Whether the next drill may start now, and where."""

    def admit(self, scenario: Scenario, busy: bool) -> Admitted | Finished | None:
        """Let it in; None: it waits; a :class:`Finished` (SKIPPED): it never could run."""
        ...

    def release(self, admitted: Admitted) -> None: ...

    def waits_for(self, scenario: Scenario) -> str: ...


class LocalAdmission:
    """This machine alone, as memory allows: drills' VMs within MemAvailable less a reserve
    (the first drill always starts)."""

    def __init__(self) -> None:
        self.budget, self.used = free_memory_mib() - HOST_RESERVE_MIB, 0

    def admit(self, scenario: Scenario, busy: bool) -> Admitted | None:
        need = need_mib(scenario)
        if busy and self.used + need > self.budget:
            return None
        self.used += need
        return Admitted(need)

    def release(self, admitted: Admitted) -> None:
        self.used -= admitted.need_mib

    def waits_for(self, scenario: Scenario) -> str:
        return (f"waits for memory: it needs {need_mib(scenario)} MiB, "
                f"{max(self.budget - self.used, 0)} MiB of {self.budget} MiB are free for "
                "drills")  # fmt: skip


class HostAdmission:
    """The inventory's hosts (:mod:`harness.hosts.placement`)."""

    def __init__(self, placement: Placement) -> None:
        self.placement = placement

    def admit(self, scenario: Scenario, busy: bool) -> Admitted | Finished | None:
        need, local = need_mib(scenario), needs_local(scenario)
        never = self.placement.never(need, local)
        if never:
            return Finished(scenario.name, "SKIPPED", ExitCode.BUSY,
                            f"no host can run this drill: {never}")  # fmt: skip
        host = self.placement.place(need, local)
        return Admitted(need, host) if host else None

    def release(self, admitted: Admitted) -> None:
        if admitted.host is not None:
            self.placement.release(admitted.host, admitted.need_mib)

    def waits_for(self, scenario: Scenario) -> str:
        return self.placement.waiting_for(need_mib(scenario), needs_local(scenario))


def host_admission(inventory: Inventory, timeout_s: float, sink: Sink) -> HostAdmission:
    """Each host of ``inventory`` asked once for its free memory."""

    def free(host: HostSpec) -> int:
        with Hypervisor(host.uri, timeout_s) as hv:
            return hv.free_memory_mib()

    return HostAdmission(Placement(inventory.hosts, free,
                                   lambda said: sink(Event("batch", "", said))))  # fmt: skip


class _Child:
    """One drill in its own process, its JSON event lines read by a thread into a queue."""

    def __init__(self, scenario: Scenario, argv: list[str], lines: queue.Queue[_Line],
                 admitted: Admitted) -> None:  # fmt: skip
        self.scenario, self.admitted = scenario, admitted
        self.started_at = utc_now()
        self.verdict: Event | None = None
        self.killed = ""  # why the parent had to SIGKILL it
        self.last_words: list[str] = []
        # Own session: a terminal's Ctrl-C reaches the parent only, which forwards it once.
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True, start_new_session=True,
        )  # fmt: skip
        self.reader = threading.Thread(target=self._read, args=(lines,), daemon=True)
        self.reader.start()

    def _read(self, lines: queue.Queue[_Line]) -> None:
        assert self.proc.stderr is not None  # noqa: S101 - PIPE above
        with self.proc.stderr:  # closed at EOF: a long run of many drills leaks no pipes
            for line in self.proc.stderr:
                lines.put((self, line))
        lines.put((self, None))

    def finished(self, code: int) -> Finished:
        name = self.scenario.name
        event = self.verdict
        if event is None:
            said = "; ".join(self.last_words[-3:]) or "no output"
            return Finished(name, "ERROR", code if code in ExitCode.SEVERITY else ExitCode.INFRA,
                            f"the drill process exited with code {code} without a verdict: "
                            f"{said}")  # fmt: skip
        report = Path(event.report) if event.report else None
        reason = event.message.split(": ", 1)[-1]
        return Finished(name, event.status, event.exit_code or 0, reason, report)


_Line = tuple[_Child, str | None]


#: After a signal, how long drills in child processes get to tear down and write their reports
#: before they are killed; after a second signal, how long at most.
STOP_GRACE_S = 60.0
FORCED_GRACE_S = 5.0


def run_in_children(
    scenarios: Sequence[Scenario], child_argv: list[str], parallel: int, sink: Sink,
    interrupts: Interrupts, plan: Plan | None = None, grace_s: float = STOP_GRACE_S,
    admission: Admission | None = None,
) -> list[Finished]:  # fmt: skip
    """Drill up to ``parallel`` scenarios at once, each by ``child_argv + [its file]``.

    A signal is passed on to every child (a second one too: the children then force their
    teardown). A child still running ``grace_s`` after the first signal (at most
    :data:`FORCED_GRACE_S` after the second) is killed; its lab is then reaped and, with a
    ``plan``, a report saying so is written for it."""
    pending = list(scenarios)
    running: list[_Child] = []
    finished: list[Finished] = []
    lines: queue.Queue[_Line] = queue.Queue()
    admission = admission or LocalAdmission()
    starter = _Starter(admission, child_argv, lines, sink)
    stopper = _Stopper(interrupts, grace_s, sink)
    while pending or running:
        stopper.poll(running, pending)
        while pending and len(running) < parallel and starter.start(pending, running, finished):
            pass
        try:
            child, line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        if line is not None:
            event = from_json(line, child.scenario.name)
            child.last_words.append(event.message)
            if event.kind == "verdict":
                child.verdict = event
            sink(event)
            continue
        code = child.proc.wait()  # its stderr is closed: it has exited or is about to
        running.remove(child)
        admission.release(child.admitted)
        if child.killed:
            continue  # reported below, once its lab has been reaped (or could not be)
        done = child.finished(code)
        if child.verdict is None:
            if plan is not None:
                done = _write_for(child, done, plan, sink)
            _announce(done, sink)
        finished.append(done)
    if stopper.killed:
        reaped = _reap(plan, sink)
        for child in stopper.killed:
            done = Finished(child.scenario.name, "ABORTED", ExitCode.ABORTED,
                            f"{child.killed}; {reaped}")  # fmt: skip
            if plan is not None:
                done = _write_for(child, done, plan, sink)
            _announce(done, sink)
            finished.append(done)
    return finished


class _Starter:
    """Starts the next pending drill where :class:`Admission` lets it in."""

    def __init__(self, admission: Admission, argv: list[str], lines: queue.Queue[_Line],
                 sink: Sink) -> None:  # fmt: skip
        self.admission, self.argv, self.lines, self.sink = admission, argv, lines, sink
        self.held_back = ""  # the drill said to be waiting (said once)

    def start(self, pending: list[Scenario], running: list[_Child],
              finished: list[Finished]) -> bool:  # fmt: skip
        """Start or refuse ``pending[0]``; False: it waits."""
        nxt = pending[0]
        admitted = self.admission.admit(nxt, busy=bool(running))
        if admitted is None:
            if self.held_back != nxt.name:
                self.held_back = nxt.name
                self.sink(Event("batch", "", f"{nxt.name} {self.admission.waits_for(nxt)}"))
            return False
        pending.pop(0)
        if isinstance(admitted, Finished):  # no host could ever run it
            _announce(admitted, self.sink)
            finished.append(admitted)
        else:
            if admitted.host is not None:
                self.sink(Event("batch", nxt.name, f"placed on host {admitted.host.name}"))
            argv = [*self.argv, *admitted.argv, str(nxt.source)]
            running.append(_Child(nxt, argv, self.lines, admitted))
        return True


class _Stopper:
    """Passes the run's signals on to its children, and kills a child that outstays the
    grace after them."""

    def __init__(self, interrupts: Interrupts, grace_s: float, sink: Sink) -> None:
        self.interrupts, self.grace_s, self.sink = interrupts, grace_s, sink
        self.signalled = 0
        self.kill_at = math.inf
        self.why = ""  # the limit that kill_at stands for, in words
        self.killed: list[_Child] = []

    def poll(self, running: list[_Child], pending: list[Scenario]) -> None:
        received, forced = self.interrupts.received, self.interrupts.forced.is_set()
        if (received and not self.signalled) or (forced and self.signalled == 1):
            self.signalled += 1
            for child in running:
                child.proc.send_signal(signal.SIGTERM)
            limit = self.grace_s if self.signalled == 1 else FORCED_GRACE_S
            if time.monotonic() + limit < self.kill_at:
                self.kill_at = time.monotonic() + limit
                self.why = (f"within {format_duration(limit)} of {received}"
                            if self.signalled == 1 else
                            f"within {format_duration(limit)} of a second signal")  # fmt: skip
            if pending:
                names = ", ".join(s.name for s in pending)
                self.sink(Event("batch", "", f"not run, the run was interrupted: {names}"))
                pending.clear()
        if time.monotonic() <= self.kill_at:
            return
        for child in running:
            if not child.killed and child.proc.poll() is None:
                child.killed = f"did not stop {self.why}: killed (SIGKILL)"
                self.sink(Event("batch", child.scenario.name, child.killed))
                child.proc.kill()
                self.killed.append(child)


def _write_for(child: _Child, done: Finished, plan: Plan, sink: Sink) -> Finished:
    """A report for a drill whose process ended without one (killed, or crashed): what is
    known of it, so the evidence shows every scenario the run was asked to drill."""
    scenario = child.scenario
    result = RunResult(
        run_id="", scenario=scenario.name, description=scenario.description,
        scenario_file=str(scenario.source), started_at=utc_stamp(child.started_at),
        finished_at=utc_stamp(),
        verdict=done.verdict, reason=done.reason, exit_code=done.exit_code,
    )  # fmt: skip
    result.tracebacks = ["the drill process's last lines:\n" + "\n".join(child.last_words[-20:])]
    outcome = DrillOutcome(result, b"")
    written = _write(scenario, outcome, plan, sink)
    return Finished(done.scenario, done.verdict, done.exit_code, done.reason, written.report)


def _reap(plan: Plan | None, sink: Sink) -> str:
    """Remove the labs of killed drills (their owner is gone, so reaping takes them); what
    happened, for their reports."""
    from harness.lab.lifecycle import reap

    uri = plan.options.uri if plan is not None else "qemu:///system"
    try:
        with Hypervisor(uri) as hv:
            for removed in reap(hv, include_kept=False):
                sink(Event("batch", "", f"cleanup: removed {removed} left by a killed drill"))
    except DrillError as exc:
        sink(Event("batch", "", f"cleanup after killed drills failed: {exc} "
                                "(run restore-drill cleanup)"))  # fmt: skip
        return f"its lab could not be reaped ({exc}): run restore-drill cleanup"
    return "its lab was reaped"


def child_command(options: dict[str, object]) -> list[str]:
    """``python -m harness run --log-format json`` with the parent's options (not the files)."""
    argv = [sys.executable, "-m", "harness", "run", "--log-format", "json"]
    for flag, value in options.items():
        if value is True:
            argv.append(flag)
        elif isinstance(value, list | tuple):
            for item in value:
                argv += [flag, str(item)]
        elif value not in (None, False):
            argv += [flag, str(value)]
    return argv


def write_summary(finished: Sequence[Finished], sink: Sink) -> None:
    """One line summing up a run of several drills."""
    if len(finished) < 2:
        return
    counts: dict[str, int] = {}
    for f in finished:
        counts[f.verdict] = counts.get(f.verdict, 0) + 1
    tally = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
    sink(Event("batch", "", f"{len(finished)} drills: {tally}; exit {exit_code(finished)}",
               exit_code=exit_code(finished)))  # fmt: skip
