"""The live display for a drill run at a terminal (rich): one row per scenario with its
phase, recovery time against the RTO and its checks, and the log scrolling above it."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from harness.durations import format_duration
from harness.output.events import Event
from harness.redact import redact

_VERDICT_STYLE = {"PASS": "bold green", "FAIL": "bold red", "ERROR": "bold magenta",
                  "ABORTED": "bold yellow", "SKIPPED": "yellow"}  # fmt: skip
_STATUS_MARK = {"ok": "[green]✓[/]", "pass": "[green]✓[/]", "fail": "[red]✗[/]",
                "failed": "[red]✗[/]", "timeout": "[red]⏱[/]", "aborted": "[yellow]![/]",
                "error": "[magenta]![/]", "cancelled": "[dim]-[/]"}  # fmt: skip


@dataclass
class _Row:
    started: float
    rto_s: float | None = None
    phase: str = "waiting"
    passed: int = 0
    failed: int = 0
    verdict: str = ""
    frozen_s: float | None = None

    def elapsed(self) -> float:
        return self.frozen_s if self.frozen_s is not None else time.monotonic() - self.started


class LiveSink:
    """Use as a context manager around the run; call it with each event."""

    def __init__(self, console: Console | None = None, secrets: Iterable[str] = ()) -> None:
        self.console = console or Console(stderr=True)
        self.secrets: set[str] = set(secrets)
        self.rows: dict[str, _Row] = {}
        self.live = Live(
            console=self.console, get_renderable=self._table, refresh_per_second=4,
            redirect_stdout=False, redirect_stderr=False,
        )  # fmt: skip

    def __enter__(self) -> LiveSink:
        self.live.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.live.stop()

    def __call__(self, event: Event) -> None:
        event = replace(event, message=redact(event.message, self.secrets))
        row = self.rows.get(event.scenario)
        if event.scenario and row is None:
            row = self.rows[event.scenario] = _Row(time.monotonic())
        mark = _STATUS_MARK.get(event.status, "")
        if row is not None and event.kind == "drill":
            row.started, row.rto_s = time.monotonic(), event.rto_s
        elif row is not None and event.kind == "phase":
            if event.status == "started":
                row.phase = event.phase
                return  # the row shows it; the log line comes when the phase ends
            if event.status != "ok":
                row.phase = f"{event.phase} ({event.status})"
        elif row is not None and event.kind == "check":
            row.passed += event.status == "pass"
            row.failed += event.status == "fail"
        elif row is not None and event.kind == "verdict":
            row.verdict, row.frozen_s = event.status, row.elapsed()
            row.phase = "done" if event.status == "PASS" else row.phase
            style = _VERDICT_STYLE.get(event.status, "bold")
            self.console.print(Text(f"[{event.scenario}] {event.message}", style=style))
            return
        who = f"[dim]{event.scenario}[/] " if event.scenario else ""
        self.console.print(f"{who}{mark + ' ' if mark else ''}{escape(event.message)}")

    def _table(self) -> Table:
        table = Table(expand=False, box=None, pad_edge=False, header_style="bold")
        for column in ("scenario", "phase", "time against RTO", "", "checks", "verdict"):
            table.add_column(column)
        for name, row in list(self.rows.items()):  # rich redraws from its own thread
            elapsed = row.elapsed()
            rto = row.rto_s or 0.0
            over = bool(rto) and elapsed > rto
            bar = ProgressBar(total=rto or 1.0, completed=min(elapsed, rto or 0.0), width=24,
                              complete_style="red" if over else "green")  # fmt: skip
            clock = f"{format_duration(elapsed)} / {format_duration(rto)}" if rto else ""
            checks = f"[green]{row.passed}✓[/] [red]{row.failed}✗[/]" if row.failed else (
                f"[green]{row.passed}✓[/]")  # fmt: skip
            verdict = Text(row.verdict, style=_VERDICT_STYLE.get(row.verdict, ""))
            table.add_row(name, row.phase, bar, clock, checks, verdict)
        return table
