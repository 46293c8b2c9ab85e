"""The drill's clock: phases timed on a monotonic clock from the drill's start, each
announced as an event and recorded in the result, with the status its exception decides."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from harness.durations import format_duration
from harness.errors import Aborted, DrillError, PhaseFailed, PhaseTimeout
from harness.evidence.model import PhaseResult, RunResult
from harness.output.events import Event, Sink


class Cancelled(Exception):
    """A machine's start stopped at its next wait because another machine's start failed."""


def utc_now() -> datetime:
    """Now, to the millisecond: the report's times and its phases' offsets agree to that.
    (Cut to the second, a screen taken 0.3 s after settle ended could read as taken
    before it.)"""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def utc_stamp(when: datetime | None = None) -> str:
    """``when`` (default: now) as the report writes it: ISO 8601 to the millisecond."""
    return (when or utc_now()).isoformat(timespec="milliseconds")


class Clock:
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
        except Cancelled:
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

