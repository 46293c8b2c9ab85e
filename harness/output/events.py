"""What a drill tells whoever watches it, as typed events; a *sink* decides how they look.

The drill emits events and knows nothing of terminals. Sinks: timestamped text lines (cron,
journald), JSON lines (log shippers, and the channel a parallel run reads from its child
drills), and the live terminal display. JSON lines round-trip: :func:`from_json` rebuilds
the event a child wrote.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Event:
    """One thing that happened in a drill.

    ``kind``: ``drill`` (started; ``rto_s`` set), ``phase`` (``status`` is ``started`` or the
    phase's end status), ``check`` (``status`` pass/fail), ``note``, ``verdict`` (``status``
    PASS/FAIL/ERROR/ABORTED, or SKIPPED when another run holds the scenario or a backup its
    repository; ``report`` set) and ``batch`` (about a whole multi-scenario run; ``scenario``
    is empty).
    """

    kind: str
    scenario: str
    message: str
    phase: str = ""
    status: str = ""
    elapsed_s: float | None = None
    rto_s: float | None = None
    report: str = ""
    exit_code: int | None = None
    time: str = field(default_factory=now_iso)

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v not in ("", None)})


_FIELDS = {f.name for f in fields(Event)}


def from_json(line: str, scenario: str) -> Event:
    """The event a child drill wrote; a line that is not one becomes a note (never lost)."""
    try:
        data: Any = json.loads(line)
    except ValueError:
        data = None
    if not isinstance(data, dict) or not {"kind", "message"} <= data.keys():
        return Event("note", scenario, line.rstrip("\n"))
    return Event(**{k: v for k, v in data.items() if k in _FIELDS})


Sink = Callable[[Event], None]
