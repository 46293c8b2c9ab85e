"""The exceptions restore-drill raises, each owning its exit code.

::

    DrillError                    base; never raised itself
    ├── ConfigError          (2)  bad input: scenario file, --var, CLI arguments
    │   └── ScenarioError    (2)  one or more problems, each naming file, line, field
    ├── InfraError           (3)  the machine cannot run a drill: libvirt, qemu-img, disk
    │   └── LabError         (3)  creating or tearing down the lab failed
    ├── Busy                (75)  another run is drilling this scenario (EX_TEMPFAIL)
    └── PhaseFailed          (1)  a drill phase failed: the backup, the guest, a wait
        └── PhaseTimeout     (1)  a bounded wait ran out

Only ``harness.cli`` turns these into messages and exit codes. Library code raises; foreign
exceptions (libvirt, paramiko, OSError) are translated at the one module that imports them.
"""

from __future__ import annotations

from dataclasses import dataclass


class ExitCode:
    """The documented exit codes: an interface for cron jobs and CI."""

    PASSED = 0
    FAILED = 1
    CONFIG = 2
    INFRA = 3
    BUSY = 75  # EX_TEMPFAIL: another run holds the scenario; try again later
    ABORTED = 130

    #: How bad each code is, for the one code that sums up several drills.
    SEVERITY = (PASSED, BUSY, FAILED, CONFIG, INFRA, ABORTED)

    @classmethod
    def worst(cls, codes: list[int]) -> int:
        """The exit code of a run of several drills: its worst drill's."""
        return max(codes, key=cls.SEVERITY.index, default=cls.PASSED)


class DrillError(Exception):
    """Base of every error restore-drill raises on purpose."""

    exit_code = ExitCode.INFRA


class ConfigError(DrillError):
    """The user's input is wrong; nothing was created."""

    exit_code = ExitCode.CONFIG


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a scenario file, located as precisely as we can."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class ScenarioError(ConfigError):
    """A scenario file has problems; all of them are listed, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class InfraError(DrillError):
    """The host cannot run the drill (libvirt down, qemu-img missing, disk full)."""

    exit_code = ExitCode.INFRA


class LabError(InfraError):
    """Creating, starting or removing a lab object failed."""


class Busy(DrillError):
    """Another restore-drill process holds this scenario's lock; this one did not run it."""

    exit_code = ExitCode.BUSY


class PhaseFailed(DrillError):
    """A phase of the drill failed: this is a verdict about the backup, not a crash."""

    exit_code = ExitCode.FAILED

    def __init__(self, phase: str, message: str, output: str = "") -> None:
        self.phase, self.output = phase, output  # output: what a failed command printed
        super().__init__(message)


class PhaseTimeout(PhaseFailed):
    """A bounded wait ran out; the message names what was awaited and for how long."""


class Aborted(Exception):
    """The drill was interrupted by SIGINT or SIGTERM; cleanup and a report still happen."""

    def __init__(self, signal_name: str) -> None:
        self.signal_name = signal_name
        super().__init__(f"interrupted by {signal_name}")
