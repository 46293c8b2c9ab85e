"""When each machine of a lab is powered on: independent machines together, a machine only
once everything it depends on is ready, and a failure stops the others at their next wait.

The scheduler is exercised with boot and readiness stand-ins that take a known time (real
boots of several VMs are in tests/vm/test_application.py)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from harness.drill import DrillOptions
from harness.drill.context import Drill
from harness.drill.machines import Guest as _Guest
from harness.drill.machines import start_machines
from harness.drill.pipeline import open_drill
from harness.errors import PhaseFailed
from harness.interrupts import Interrupts
from harness.output.events import Event
from harness.scenario.loader import load_scenario

APP = """\
version: 1
name: unit-app
targets: {rto: 20m, rpo: 1d}
vm: {memory: 512MiB}
login: {user: root, key_file: id_ed25519}
machines:
  - {name: web, depends_on: [db, cache], backup: {path: backup.qcow2}}
  - {name: db, backup: {path: backup.qcow2}}
  - {name: cache, backup: {path: backup.qcow2}}
checks: [{name: page, http: /}]
"""

STEP = 0.3  # how long each stand-in boot and readiness takes


class Recorder:
    """Stand-ins for _boot and _ready: each a timed phase that waits like the real ones."""

    def __init__(self, run: Drill, failing: str = "") -> None:
        self.run, self.failing = run, failing
        self.ready_at: dict[str, float] = {}

    def boot(self, guest: _Guest, check: object) -> None:
        with self.run.clock.phase(f"boot{guest.label}"):
            self.wait(check)
            if guest.machine.name == self.failing:
                raise PhaseFailed(f"boot{guest.label}", "no DHCP lease")

    def ready(self, guest: _Guest, check: object) -> None:
        with self.run.clock.phase(f"ssh{guest.label}"):
            self.wait(check, 3 * STEP if self.failing else STEP)
        self.ready_at[guest.machine.name] = self.run.clock.elapsed()

    @staticmethod
    def wait(check: object, seconds: float = STEP) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            check()  # type: ignore[operator]
            time.sleep(0.02)


def make_run(scenario_dir: Path, failing: str = "") -> tuple[Drill, Recorder, list[Event]]:
    (scenario_dir / "app.yaml").write_text(APP)
    events: list[Event] = []
    run = Drill(load_scenario(scenario_dir / "app.yaml"), DrillOptions(uri="test:///default"),
               events.append, Interrupts())  # fmt: skip
    open_drill(run)
    return run, Recorder(run, failing), events


def start(run: Drill, recorder: Recorder) -> None:
    """As the drill starts its machines (booting.start), with stand-in boots."""
    start_machines(run.guests, recorder.boot, recorder.ready, run.interrupts,
                   lambda message: run.clock.say("note", message))  # fmt: skip


def phases(run: Drill) -> dict[str, tuple[float, float, str]]:
    return {p.name: (p.start_s, p.start_s + p.duration_s, p.status) for p in run.result.phases}


def test_independent_machines_start_together_and_dependents_wait(scenario_dir: Path) -> None:
    run, recorder, events = make_run(scenario_dir)
    started = time.monotonic()
    start(run, recorder)
    took = time.monotonic() - started
    got = phases(run)
    assert [g.machine.name for g in run.guests] == ["db", "cache", "web"]
    # db and cache overlap: both booted before either was ready.
    assert max(got["boot db"][0], got["boot cache"][0]) < min(got["boot db"][1],
                                                               got["boot cache"][1])  # fmt: skip
    # web was powered on only after both were ready.
    assert got["boot web"][0] >= max(recorder.ready_at["db"], recorder.ready_at["cache"]) - 0.002
    assert took < 4 * STEP + 1.0  # two waves of boot + ready, not three
    assert all(status == "ok" for _, _, status in got.values())
    assert [t for t in threading.enumerate() if t.name.startswith("start")] == []
    assert sum(e.kind == "phase" for e in events) == 2 * len(got)  # started + finished


def test_a_failed_machine_cancels_the_others_and_decides(scenario_dir: Path) -> None:
    run, recorder, _ = make_run(scenario_dir, failing="cache")
    with pytest.raises(PhaseFailed, match="no DHCP lease"):
        start(run, recorder)
    got = phases(run)
    assert got["boot cache"][2] == "failed"
    assert got["ssh db"][2] == "cancelled"  # stopped at its next wait, not run to the end
    assert got["ssh db"][1] < got["boot cache"][1] + 0.5
    assert "boot web" not in got  # its dependencies never became ready
    assert [t for t in threading.enumerate() if t.name.startswith("start")] == []
