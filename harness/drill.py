"""The drill: verify → provision → boot → ssh → checks → testinfra → verdict, always torn down.

Each phase is timed on a monotonic clock from the drill's start. The backup is hashed in a
thread beside the boot so integrity proof does not lengthen the measured recovery time.
The *measured recovery time* runs from the start of the drill until every check has run:
the moment the service is verified (or found broken).
"""

from __future__ import annotations

import getpass
import hashlib
import os
import platform
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from harness import __version__, qemu_img
from harness.checks.declarative import run_check
from harness.checks.isolation import host_listener, host_targets, probe_egress
from harness.checks.session import testinfra_host
from harness.checks.testfiles import run_testfiles
from harness.durations import format_duration
from harness.errors import Aborted, DrillError, ExitCode, PhaseFailed, PhaseTimeout
from harness.evidence.model import (
    BackupEvidence,
    CheckResult,
    PhaseResult,
    RunResult,
    TargetResult,
    Verdict,
)
from harness.interrupts import Interrupts
from harness.lab import accel
from harness.lab.hypervisor import CALL_TIMEOUT_S, Hypervisor
from harness.lab.lifecycle import KeptVm, Lab, LabVm, VmDisk, reap, state_root
from harness.output.events import Event, Sink
from harness.remote.commands import run_polled, run_step, stream_into
from harness.remote.shell import as_user
from harness.remote.ssh import HostKey, Target, wait_for_ssh, wait_until_settled
from harness.scenario.model import Machine, Scenario
from harness.sources import BootDisk, HashCancelled, Proof, Source, open_source
from harness.sources.files import FileLevelSource

CONSOLE_KEEP_BYTES = 2 * 1024 * 1024
START_JOIN_S = 30.0  # how long a cancelled machine start may take to notice


class _Cancelled(Exception):
    """A machine's start stopped at its next wait because another machine's start failed."""


@dataclass(frozen=True)
class DrillOptions:
    """How to run a drill (as opposed to what to drill, which is the scenario)."""

    uri: str = "qemu:///system"
    keep: bool = False
    accelerator: str | None = None  # overrides the scenario's
    libvirt_timeout_s: float = CALL_TIMEOUT_S  # one libvirt call longer than this: hung


@dataclass
class DrillOutcome:
    """The result plus the artefacts the evidence writer stores beside it."""

    result: RunResult
    console_log: bytes
    kept_hint: str = ""


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class _Clock:
    """The drill's monotonic clock; phases are timed on it and announced as events."""

    def __init__(self, result: RunResult, sink: Sink) -> None:
        self.t0 = time.monotonic()
        self.result = result
        self.sink = sink
        self._lock = threading.Lock()  # machines start in threads of their own

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def say(self, kind: str, message: str, **fields: Any) -> None:
        with self._lock:
            self.sink(Event(kind, self.result.scenario, message,
                            elapsed_s=round(self.elapsed(), 3), **fields))  # fmt: skip

    @contextmanager
    def phase(self, name: str) -> Iterator[PhaseResult]:
        record = PhaseResult(name, round(self.elapsed(), 3), 0.0, "ok")
        self.result.phases.append(record)
        self.say("phase", f"{name}: started", phase=name, status="started")
        status = "error"
        try:
            yield record
            status = "ok"
        except PhaseFailed as exc:
            # The phase's own name ("ssh db", "restore web") names the machine, whatever
            # the lower layer that raised it called the phase.
            exc.phase = name
            status = "timeout" if isinstance(exc, PhaseTimeout) else "failed"
            record.output = record.output or exc.output
            raise
        except DrillError as exc:
            if not str(exc).startswith(f"{name}: "):
                exc.args = (f"{name}: {exc}",)
            raise
        except Aborted:
            status = "aborted"
            raise
        except _Cancelled:
            status = "cancelled"
            raise
        finally:
            record.duration_s = round(self.elapsed() - record.start_s, 3)
            if status != "ok":  # an exception decides; otherwise the body's own verdict stands
                record.status = status
            detail = f" ({record.detail})" if record.detail else ""
            took = format_duration(record.duration_s)
            self.say("phase", f"{name}: {record.status} in {took}{detail}", phase=name,
                     status=record.status)  # fmt: skip


def run_drill(
    scenario: Scenario, options: DrillOptions, sink: Sink, interrupts: Interrupts
) -> DrillOutcome:
    """Run one drill. Never raises for a failed drill: the verdict is in the result."""
    return _Run(scenario, options, sink, interrupts).execute()


@dataclass
class _Guest:
    """One machine of the lab while the drill runs."""

    machine: Machine
    source: Source
    label: str  # "" for a single-VM scenario, else " <name>": appended to phase names
    evidence: BackupEvidence | None = None
    disk: BootDisk | None = None
    vm: LabVm | None = None
    ip: str = ""
    target: Target | None = None
    client: Any = None
    host_key: HostKey | None = None
    host: Any = None  # its testinfra host
    hasher: threading.Thread | None = None
    facts: dict[str, Any] = field(default_factory=dict)  # for the report's machines list


class _Run:
    """One drill's state; each phase is a method, teardown undoes whatever exists."""

    def __init__(
        self, scenario: Scenario, options: DrillOptions, sink: Sink, interrupts: Interrupts
    ) -> None:
        self.scenario, self.options = scenario, options
        self.interrupts = interrupts
        self.started = utc_now()
        self.result = RunResult(
            run_id="", scenario=scenario.name, description=scenario.description,
            scenario_file=str(scenario.source), started_at=self.started.isoformat(),
        )  # fmt: skip
        self.clock = _Clock(self.result, sink)
        self.clock.say("drill", f"drill started ({scenario.source})", rto_s=scenario.targets.rto_s)
        self.outcome = DrillOutcome(self.result, b"")
        self.guests: list[_Guest] = []
        self.primary: _Guest | None = None
        self.hv: Hypervisor | None = None
        self.lab: Lab | None = None
        self.powered_on = 0  # VMs started: none means nothing ever ran on the backup
        self.stop_hashing = _Stop()
        self.hash_errors: list[BaseException] = []
        self.failure: BaseException | None = None
        self.verified_at: float | None = None

    def execute(self) -> DrillOutcome:
        """The drill's one boundary: whatever goes wrong inside, a bug of ours included,
        ends this drill (ERROR, with its traceback in the evidence) and returns a result."""
        try:
            with self.interrupts.armed():
                self._open()
                self._pipeline()
        except (DrillError, Aborted) as exc:
            self.failure = exc
        except Exception as exc:
            self._unexpected(exc, "the drill")
        finally:
            self._teardown()  # not interruptible: signals are only remembered here
        if self.failure is None and self.hash_errors:
            self.failure = self.hash_errors[0]
        if self.failure is None and self.interrupts.received:
            self.failure = Aborted(self.interrupts.received)
        try:
            _judge(self.result, self.scenario, self.started, self.verified_at, self.failure,
                   [g.evidence for g in self.guests if g.evidence is not None])  # fmt: skip
        except Exception as exc:
            self._unexpected(exc, "the verdict")
            self.result.verdict, self.result.exit_code = Verdict.ERROR, ExitCode.INFRA
            self.result.reason = _bug_reason(exc)
        self.result.finished_at = utc_now().isoformat()
        tail = self.outcome.console_log[-8192:]
        self.result.console_tail = tail.decode("utf-8", errors="replace")
        return self.outcome

    def _open(self) -> None:
        """Facts of the host and each machine's backup source: inside the drill's boundary."""
        self.result.environment = _environment(self.options)
        several = len(self.scenario.machines) > 1
        self.guests = [
            _Guest(m, open_source(m.backup, m.vm), f" {m.name}" if several else "")
            for m in self.scenario.machines
        ]
        self.primary = next(g for g in self.guests if g.machine is self.scenario.primary)

    def _unexpected(self, exc: BaseException, during: str) -> None:
        """A bug of ours: this drill's failure (the first one wins the verdict), its
        traceback in the evidence and on stderr (cron mail shows it)."""
        text = "".join(traceback.format_exception(exc)).rstrip()
        self.result.tracebacks.append(f"during {during}:\n{text}")
        self.clock.say("traceback", f"unexpected error during {during}:\n{text}")
        if self.failure is None:
            self.failure = exc

    def _safely(self, during: str, step: Callable[[], None]) -> None:
        """One teardown step: its failure is recorded, and the next steps still run."""
        try:
            step()
        except DrillError as exc:
            self.failure = self.failure or exc
        except Exception as exc:
            self._unexpected(exc, during)

    def _pipeline(self) -> None:
        scenario, clock, result = self.scenario, self.clock, self.result
        with clock.phase("verify") as phase:
            details = []
            for guest in self.guests:
                guest.evidence, guest.disk = guest.source.verify()
                check = guest.evidence.image_check
                if not isinstance(guest.source, FileLevelSource):
                    check = f"{guest.disk.image.format}, {check}"
                details.append(f"{guest.machine.name}: {check}" if guest.label else check)
            result.backup = self._primary().evidence
            phase.detail = "; ".join(details)
        for guest in self.guests:
            assert guest.evidence is not None  # noqa: S101 - set just above
            guest.hasher = _start_hashing(guest.source, guest.evidence, result, clock,
                                          self.hash_errors, self.stop_hashing,
                                          f"hash{guest.label}")  # fmt: skip
        with clock.phase("prepare") as phase:
            self.hv = hv = Hypervisor(self.options.uri, self.options.libvirt_timeout_s)
            result.environment.update(libvirt=hv.version(), qemu=accel.qemu_version())
            for removed in reap(hv, include_kept=False):
                clock.say("note", f"cleanup: removed {removed} left by an earlier drill")
            requested = self.options.accelerator or scenario.primary.vm.accelerator
            chosen, phase.detail = accel.choose(requested, state_root())
            result.environment.update(accelerator=chosen, accelerator_reason=phase.detail)
        with clock.phase("provision") as phase:
            self.lab = lab = Lab(hv, scenario.name)
            disks = []
            for g in self.guests:
                assert g.disk is not None  # noqa: S101 - verified above
                disks.append(VmDisk(g.machine.name, g.disk.path, g.disk.image,
                                    g.machine.vm.memory_mib, g.machine.vm.vcpus,
                                    g.machine.hostnames, g.disk.chain))  # fmt: skip
            made = lab.provision(disks, "kvm" if chosen == "kvm" else "qemu")
            for guest, vm in zip(self.guests, made.vms, strict=True):
                guest.vm = vm
                guest.facts.update(name=guest.machine.name, domain=vm.domain_name, mac=vm.mac,
                                   depends_on=list(guest.machine.depends_on),
                                   hostnames=list(guest.machine.hostnames))  # fmt: skip
            first = made.vms[0]
            result.lab = {
                "lab_id": lab.lab_id, "network": made.network_name,
                "network_xml": made.network_xml,
                "network_xml_sha256": hashlib.sha256(made.network_xml.encode()).hexdigest(),
                "domain": first.domain_name, "mac": first.mac, "accelerator": chosen,
                "gateway": made.gateway, "host_guard": made.host_guard,
                "security_driver": hv.security_model(),
            }  # fmt: skip
            phase.detail = f"lab {lab.lab_id}, {len(made.vms)} VM(s), {chosen}"
        self._start_machines()
        self._checks()
        self.verified_at = clock.elapsed()
        # Proof of isolation is the harness's own work, not part of the recovery: after the clock.
        for guest in self.guests:
            self._isolation(guest)
        for guest in self.guests:
            _join(guest.hasher, self.interrupts)

    def _start_machines(self) -> None:
        """Power on each machine as soon as every machine it depends on is ready: machines
        that do not depend on each other start together. The first failure stops the
        others at their next wait (their phase: "cancelled") and decides the verdict."""
        if len(self.guests) == 1:
            self._boot(self.guests[0], self.interrupts.check)
            self._ready(self.guests[0], self.interrupts.check)
            return
        ready = {g.machine.name: threading.Event() for g in self.guests}
        cancel = threading.Event()
        failures: list[BaseException] = []

        def check() -> None:
            self.interrupts.check()
            if cancel.is_set():
                raise _Cancelled

        def start(guest: _Guest) -> None:
            try:
                for name in guest.machine.depends_on:
                    while not ready[name].wait(0.2):
                        check()
                self._boot(guest, check)
                self._ready(guest, check)
                ready[guest.machine.name].set()
            except _Cancelled:
                pass
            except BaseException as exc:  # handed to the drill's thread below
                failures.append(exc)
                cancel.set()

        threads = [threading.Thread(target=start, args=(g,), name=f"start{g.label}", daemon=True)
                   for g in self.guests]  # fmt: skip
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                _join(thread, self.interrupts)
        finally:  # also on Ctrl-C: every start stops at its next (bounded) wait
            cancel.set()
            self._join_starts(threads)
        if failures:
            raise failures[0]

    def _join_starts(self, threads: list[threading.Thread]) -> None:
        """Wait for cancelled starts, bounded: a start stuck where it cannot poll (a hung
        library call) is left behind, said in the log, and teardown goes on without it."""
        deadline = time.monotonic() + START_JOIN_S
        for thread in threads:
            while thread.is_alive() and time.monotonic() < deadline:
                if self.interrupts.forced.is_set():
                    break
                thread.join(0.2)
            if thread.is_alive():
                self.clock.say("note", f"{thread.name}: did not stop; teardown goes on")

    def _boot(self, guest: _Guest, check: Callable[[], None]) -> None:
        assert self.lab is not None  # noqa: S101 - provisioned before any boot
        assert self.hv is not None  # noqa: S101
        assert guest.vm is not None  # noqa: S101
        vm, limit = guest.vm, guest.machine.vm.boot_timeout_s
        with self.clock.phase(f"boot{guest.label}") as phase:
            self.lab.start(vm)
            self.powered_on += 1
            self.clock.say("note", f"boot{guest.label}: VM powered on, waiting up to "
                                   f"{format_duration(limit)} for its DHCP lease")  # fmt: skip
            guest.ip = self.hv.wait_for_lease(vm.domain_name, vm.mac, limit, check)
            guest.facts["ip"] = phase.detail = guest.ip

    def _ready(self, guest: _Guest, check: Callable[[], None]) -> None:
        """ssh → settle → restore → steps: the machine is ready for its dependents."""
        clock, label, machine = self.clock, guest.label, guest.machine
        with clock.phase(f"ssh{label}") as phase:
            login = machine.login
            guest.target = Target(guest.ip, login.port, login.user, login.key_file)
            guest.client, key = wait_for_ssh(guest.target, login.timeout_s, check)
            guest.host_key = key
            guest.facts["host_key"] = {"type": key.type, "fingerprint": key.fingerprint}
            phase.detail = f"{key.type} {key.fingerprint}"
        with clock.phase(f"settle{label}") as phase:
            phase.detail = wait_until_settled(guest.client, machine.vm.settle_timeout_s, check)
            guest.facts["system_state"] = phase.detail
        source = guest.source
        if isinstance(source, FileLevelSource):
            with clock.phase(f"restore{label}") as phase, source.restore_stream() as tar:
                limit = machine.backup.restore_timeout_s
                sent = stream_into(guest.client, source.target, tar, limit, check)
                phase.detail = f"{sent} bytes of tar restored into {source.target}"
        for step in machine.restore_steps:
            with clock.phase(f"step{label}: {step.name}") as phase:
                phase.output = run_step(guest.client, phase.name, as_user(step.run, step.user),
                                        step.timeout_s, check)  # fmt: skip
                phase.detail = "exit 0"
        guest.host = testinfra_host(guest.client, guest.target, key)

    def _checks(self) -> None:
        """The scenario's checks, each on its machine; then the user's testinfra files."""
        scenario, clock, result = self.scenario, self.clock, self.result
        by_name = {g.machine.name: g for g in self.guests}
        with clock.phase("checks") as phase:
            for spec in scenario.checks:
                guest = by_name.get(spec.machine or "", self._primary())
                self._record(run_check(guest.host, spec, guest.ip))
            phase.detail = _tally(result.checks)
        if scenario.testinfra:
            guest = by_name.get(scenario.testinfra.machine or "", self._primary())
            assert guest.target is not None  # noqa: S101 - every machine is ready by now
            assert guest.host_key is not None  # noqa: S101
            with clock.phase("testinfra") as phase:
                files, limit = scenario.testinfra.files, scenario.testinfra.timeout_s
                tests = run_testfiles(files, guest.target, guest.host_key, limit)
                for check in tests:
                    self._record(check)
                phase.detail = _tally(tests)

    def _isolation(self, guest: _Guest) -> None:
        with self.clock.phase(f"isolation{guest.label}") as phase:

            def run(command: str, limit: float) -> tuple[int, str]:
                assert guest.client is not None  # noqa: S101 - connected by _ready
                return run_polled(guest.client, phase.name, command, limit, self.interrupts.check)

            provisioned = self.lab.provisioned if self.lab else None
            gateway = provisioned.gateway if provisioned else ""
            with host_listener() as port:
                host = host_targets(gateway, port) if gateway else {}
                attempts = probe_egress(run, self.scenario.isolation_probe, host)
            prefix = f"{guest.machine.name}: " if guest.label else ""
            records = [{**asdict(a), "target": prefix + a.target} for a in attempts]
            self.result.isolation += records
            leaks = [a for a in records if a["outcome"] != "blocked"]
            phase.detail = (
                f"{len(attempts)} attempts to leave the lab, all blocked" if not leaks
                else "not proven isolated: " + "; ".join(f"{a['target']} {a['outcome']}"
                                                         for a in leaks)
            )  # fmt: skip
            if leaks:
                phase.status = "failed"

    def _record(self, check: CheckResult) -> None:
        self.result.checks.append(check)
        status = check.status.lower()
        self.clock.say("check", f"  {check.status.upper()} {check.name}: {check.observed}",
                       status=status)  # fmt: skip

    def _primary(self) -> _Guest:
        assert self.primary is not None  # noqa: S101 - set by _open before any phase
        return self.primary

    def _teardown(self) -> None:
        """Undo whatever exists, each step on its own: one that fails (a bug included) is
        recorded and the others still run. A second signal cuts the waits short."""
        for guest in self.guests:
            if guest.client is not None:
                with suppress(Exception):
                    guest.client.close()
        if self.lab is not None:
            self._safely("teardown of the lab", self._remove_lab)
        if self.hv is not None:
            self._safely("closing libvirt", self.hv.close)
        self._safely("the proof that the backup is unchanged", self._prove_unchanged)
        if self.primary is not None:  # the report's lab section shows the first machine's
            first = self.primary.facts
            self.result.lab.update({k: first[k] for k in ("ip", "host_key", "system_state")
                                    if k in first})  # fmt: skip
        if len(self.guests) > 1:
            self.result.machines = [
                {**g.facts, "backup": asdict(g.evidence) if g.evidence else None}
                for g in self.guests
            ]

    def _remove_lab(self) -> None:
        lab = self.lab
        assert lab is not None  # noqa: S101 - called only with a lab
        self.outcome.console_log = _read_console(lab)
        kept = [
            KeptVm(g.machine.name, g.ip, t.port, t.user, t.key_file, f"{k.type} {k.base64}")
            for g in self.guests
            if (t := g.target) is not None and (k := g.host_key) is not None
        ]
        if self.options.keep and kept:
            lab.keep(kept)
            self.outcome.kept_hint = _kept_hint(lab, self.options.uri)
            return
        for removed in lab.teardown():
            self.clock.say("note", f"teardown: removed {removed}")

    def _prove_unchanged(self) -> None:
        """Each backup's identity (and hash) again. When no VM ever ran, nothing could have
        touched the backup: stat proves it, and no second full read of a large backup is
        spent (nor the rest of the first). A second signal cuts a hash short."""
        aborted = isinstance(self.failure, Aborted) or self.interrupts.received
        skip = "" if self.powered_on else "by stat: the drill ended before any VM ran"
        if skip:
            self.stop_hashing.stop("not needed: the drill ended before any VM ran")
        elif aborted:  # no waiting for a long hash; stat still proves it
            self.stop_hashing.stop("not finished: the drill was aborted")
        forced = self.interrupts.forced
        for guest in self.guests:
            while guest.hasher is not None and guest.hasher.is_alive():
                if forced.is_set():
                    self.stop_hashing.stop("not finished: a second signal forced the stop")
                guest.hasher.join(0.2)
            evidence = guest.evidence
            if evidence is not None and (evidence.identity_before is not None
                                         or evidence.details):  # fmt: skip
                try:
                    guest.source.confirm_unchanged(evidence, Proof(forced, skip))
                except DrillError as exc:
                    self.failure = self.failure or exc


class _Stop(threading.Event):
    """An event that says why it was set (for the hash phase's line in the report)."""

    reason = ""

    def stop(self, reason: str) -> None:
        if not self.is_set():
            self.reason = reason
            self.set()


def _start_hashing(
    source: Source, evidence: BackupEvidence, result: RunResult, clock: _Clock,
    errors: list[BaseException], stop: _Stop, name: str = "hash",
) -> threading.Thread:  # fmt: skip
    record = PhaseResult(name, round(clock.elapsed(), 3), 0.0, "ok", concurrent=True)
    result.phases.append(record)

    def work() -> None:
        try:
            source.hash(evidence, stop)
            record.detail = "sha256 of the backup"
        except HashCancelled:
            record.status, record.detail = "aborted", stop.reason
        except DrillError as exc:
            record.status, record.detail = "failed", str(exc)
            errors.append(exc)
        finally:
            record.duration_s = round(clock.elapsed() - record.start_s, 3)

    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    return thread


def _join(thread: threading.Thread | None, interrupts: Interrupts) -> None:
    while thread is not None and thread.is_alive():
        interrupts.check()
        thread.join(0.5)


def _read_console(lab: Lab) -> bytes:
    """The serial console of every VM (each headed by its machine's name if several)."""
    if lab.provisioned is None:
        return b""
    vms = lab.provisioned.vms
    out = b""
    for vm in vms:
        try:
            data = vm.console_log.read_bytes()[-CONSOLE_KEEP_BYTES // len(vms) :]
        except OSError:
            continue
        out += f"===== {vm.machine} =====\n".encode() + data if len(vms) > 1 else data
    return out


def _kept_hint(lab: Lab, uri: str) -> str:
    several = len(lab.record.machines) > 1
    which = " --vm NAME" if several else ""
    return (
        f"lab {lab.lab_id} kept ({lab.record.login}): restore-drill ssh {lab.lab_id}{which}\n"
        f"  console: virsh -c {uri} console {lab.record.domains[0]}\n"
        f"  remove:  restore-drill cleanup"
    )


def _judge(
    result: RunResult, scenario: Scenario, started: datetime,
    verified_at: float | None, failure: BaseException | None, backups: list[BackupEvidence],
) -> None:  # fmt: skip
    """Set verdict, reason, exit code and the RTO/RPO results."""
    targets = scenario.targets
    result.rpo = _rpo(targets.rpo_s, started, backups)
    failed_checks = [c for c in result.checks if not c.passed and not c.skipped]
    tests = [c for c in result.checks if c.kind == "testinfra"]
    # Skipped tests prove nothing: testinfra files none of whose tests ran, or a drill with
    # no check that passed, verify nothing (docs/decisions.md).
    unproven = (
        "every testinfra test was skipped: the files proved nothing"
        if tests and all(c.skipped for c in tests)
        else "no check ran and passed: nothing was verified"
        if result.checks and not any(c.passed for c in result.checks)
        else ""
    )
    leaks = [a for a in result.isolation if a["outcome"] != "blocked"]
    service_ok = (verified_at is not None and not failed_checks and failure is None
                  and not leaks and not unproven)  # fmt: skip
    changed = [b for b in backups if b.unchanged is False]
    changed_note = (
        "the backup changed during the drill: " + ", ".join(b.path for b in changed)
        if changed else ""
    )  # fmt: skip
    measured = round(verified_at, 1) if verified_at is not None else None
    if service_ok and measured is not None:
        result.rto = TargetResult(
            targets.rto_s,
            measured,
            measured <= targets.rto_s,
            "start of the drill to service verified",
        )
    else:
        result.rto = TargetResult(
            targets.rto_s,
            measured,
            None if measured is None else False,
            "the service was not verified",
        )

    # A changed backup is reported whatever else happened: it leads every reason.
    lead = f"{changed_note}; " if changed_note else ""
    if isinstance(failure, Aborted):
        result.verdict, result.exit_code = Verdict.ABORTED, ExitCode.ABORTED
        result.reason = f"{lead}the drill was {failure} and did not finish"
        return
    if isinstance(failure, PhaseFailed):
        result.verdict, result.exit_code = Verdict.FAIL, ExitCode.FAILED
        result.reason = f"{lead}{failure.phase}: {failure}"
        return
    if isinstance(failure, DrillError):
        result.verdict, result.exit_code = Verdict.ERROR, failure.exit_code
        result.reason = f"{lead}infrastructure: {failure}"
        return
    if failure is not None:  # not ours to expect: a bug, whose traceback is in the evidence
        result.verdict, result.exit_code = Verdict.ERROR, ExitCode.INFRA
        result.reason = lead + _bug_reason(failure)
        return
    reasons = [f"check '{c.name}' failed: {_first_line(c.observed)}" for c in failed_checks]
    if unproven:
        reasons.append(unproven)
    if leaks:
        proven = any(a["outcome"] != "unproven" for a in leaks)
        what = "the lab is not isolated" if proven else "the lab's isolation could not be proven"
        reasons.insert(0, f"{what}: " + ", ".join(f"{a['target']} {a['outcome']}" for a in leaks))
    if changed_note:
        reasons.insert(0, changed_note)
    if result.rto.passed is False and service_ok:  # otherwise the reasons above say why
        reasons.append(
            f"RTO missed: {format_duration(result.rto.measured_s or 0)} > "
            f"{format_duration(targets.rto_s)}"
        )
    if result.rpo.passed is False:
        reasons.append(
            f"RPO missed: backup is {format_duration(result.rpo.measured_s or 0)} old > "
            f"{format_duration(targets.rpo_s)}"
        )
    if reasons:
        result.verdict, result.exit_code = Verdict.FAIL, ExitCode.FAILED
        result.reason = "; ".join(reasons)
    else:
        result.verdict, result.exit_code = Verdict.PASS, ExitCode.PASSED
        result.reason = (
            f"restore verified in {format_duration(measured or 0)} (RTO "
            f"{format_duration(targets.rto_s)}); backup age within RPO "
            f"{format_duration(targets.rpo_s)}; {_tally(result.checks).replace('/', ' of ')}"
        )


def _rpo(rpo_s: float, started: datetime, backups: list[BackupEvidence]) -> TargetResult:
    """With several machines the RPO is judged on the oldest restore point: the application
    is as old as its oldest part."""
    known = [b for b in backups if b.restore_point]
    oldest = min(known, key=lambda b: datetime.fromisoformat(b.restore_point), default=None)
    if oldest is None:
        return TargetResult(rpo_s, None, None, "restore point unknown")
    age = (started - datetime.fromisoformat(oldest.restore_point)).total_seconds()
    return TargetResult(
        rpo_s, round(age, 1), age <= rpo_s,
        f"restore point {oldest.restore_point} ({oldest.restore_point_source})"
        + (f" of {oldest.path}, the oldest" if len(known) > 1 else ""),
    )  # fmt: skip


def _bug_reason(exc: BaseException) -> str:
    return (f"internal error (a bug; please report it): {type(exc).__name__}: {exc} "
            "(traceback in report.json)")  # fmt: skip


def _tally(checks: list[CheckResult]) -> str:
    skipped = sum(c.skipped for c in checks)
    tally = f"{sum(c.passed for c in checks)}/{len(checks)} passed"
    return tally + (f", {skipped} skipped" if skipped else "")


def _first_line(text: str, limit: int = 200) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _environment(options: DrillOptions) -> dict[str, str]:
    return {
        "harness": f"restore-drill {__version__}",
        "python": platform.python_version(),
        "host": socket.getfqdn(),
        "kernel": platform.release(),
        "user": getpass.getuser(),
        "pid": str(os.getpid()),
        "command": " ".join(sys.argv),
        "libvirt_uri": options.uri,
        "qemu_img": qemu_img.version(),
    }
