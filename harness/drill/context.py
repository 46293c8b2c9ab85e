"""One drill's state, shared by the modules of its phases (:mod:`.verifying`,
:mod:`.provisioning`, :mod:`.booting`, :mod:`.restoring`, :mod:`.checking`,
:mod:`.teardown`), and how to run it (:class:`DrillOptions`)."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from harness.checks.declarative import Connector
from harness.drill.clock import Clock, utc_now, utc_stamp
from harness.drill.machines import Guest
from harness.drill.proof import Stop
from harness.errors import DrillError
from harness.evidence.model import CheckResult, RunResult
from harness.hosts.inventory import HostSpec
from harness.interrupts import Interrupts
from harness.lab.addressing import Addressing
from harness.lab.host import LabHost, RemoteHost
from harness.lab.hypervisor import CALL_TIMEOUT_S, Hypervisor
from harness.lab.lifecycle import Lab
from harness.output.events import Sink
from harness.remote.host import session
from harness.remote.jump import Jump
from harness.scenario.model import Scenario


@dataclass(frozen=True)
class DrillOptions:
    """How to run a drill (as opposed to what to drill, which is the scenario)."""

    uri: str = "qemu:///system"
    keep: bool = False
    accelerator: str | None = None  # overrides the scenario's
    libvirt_timeout_s: float = CALL_TIMEOUT_S  # one libvirt call longer than this: hung
    host: HostSpec | None = None  # an inventory's host (its uri is ``uri``); None: this machine
    scan_only: bool = False  # find-clean: verify and scan the restore point, restore nothing


@dataclass
class DrillOutcome:
    """The result plus the artefacts the evidence writer stores beside it."""

    result: RunResult
    console_log: bytes
    images: dict[str, bytes] = field(default_factory=dict)  # PNG files of the run folder
    kept_hint: str = ""


class Drill:
    """What one drill has made and found so far; each phase reads and extends it."""

    def __init__(
        self, scenario: Scenario, options: DrillOptions, sink: Sink, interrupts: Interrupts
    ) -> None:
        self.scenario, self.options = scenario, options
        self.interrupts = interrupts
        self.started = utc_now()
        self.result = RunResult(
            run_id="", scenario=scenario.name, description=scenario.description,
            scenario_file=str(scenario.source), started_at=utc_stamp(self.started),
        )  # fmt: skip
        self.clock = Clock(self.result, sink)
        self.clock.say("drill", f"drill started ({scenario.source})", rto_s=scenario.targets.rto_s)
        self.outcome = DrillOutcome(self.result, b"")
        self.guests: list[Guest] = []
        self.primary: Guest | None = None
        self.hv: Hypervisor | None = None
        self.host: LabHost | None = None  # where the lab runs: this machine or a remote host
        self.lab: Lab | None = None
        self.powered_on = 0  # VMs started: none means nothing ever ran on the backup
        self.stop_hashing = Stop()
        self.hash_errors: list[BaseException] = []
        self.failure: BaseException | None = None
        self.verified_at: float | None = None
        self.addressing: Addressing | None = None
        self.namespace: str | None = None  # a replicated lab's: the harness's sockets go there

    def primary_guest(self) -> Guest:
        assert self.primary is not None  # noqa: S101 - set when the drill opens
        return self.primary

    def record(self, check: CheckResult) -> None:
        self.result.checks.append(check)
        status = check.status.lower()
        self.clock.say("check", f"  {check.status.upper()} {check.name}: {check.observed}",
                       status=status)  # fmt: skip

    def unexpected(self, exc: BaseException, during: str) -> None:
        """A bug of ours: this drill's failure (the first one wins the verdict), its
        traceback in the evidence and on stderr (cron mail shows it)."""
        text = "".join(traceback.format_exception(exc)).rstrip()
        self.result.tracebacks.append(f"during {during}:\n{text}")
        self.clock.say("traceback", f"unexpected error during {during}:\n{text}")
        if self.failure is None:
            self.failure = exc

    def safely(self, during: str, step: Callable[[], None]) -> None:
        """One teardown step: its failure is recorded, and the next steps still run."""
        try:
            step()
        except DrillError as exc:
            self.failure = self.failure or exc
        except Exception as exc:
            self.unexpected(exc, during)

    def jump(self) -> Jump | None:
        """A remote lab's host: its guests are reachable only through it."""
        return self.host.jump if isinstance(self.host, RemoteHost) else None

    def via(self) -> Connector | None:
        """How the harness's own connections (http checks) reach a remote lab's guests."""
        jump = self.jump()
        if jump is None:
            return None
        return lambda ip, port, limit: session(jump).channel_to(ip, port, limit)
