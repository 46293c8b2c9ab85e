"""Sinks for logs nobody watches live: one timestamped line per event, text or JSON."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import TextIO

from harness.output.events import Event
from harness.redact import redact


class LineSink:
    """Writes each event as one line, redacting ``secrets`` first; ``json`` for log shippers."""

    def __init__(self, stream: TextIO, json: bool = False, secrets: Iterable[str] = ()) -> None:
        self.stream, self.json = stream, json
        self.secrets: set[str] = set(secrets)

    def __call__(self, event: Event) -> None:
        event = replace(event, message=redact(event.message, self.secrets))
        if self.json:
            line = event.to_json()
        else:
            who = f"[{event.scenario}] " if event.scenario else ""
            line = f"{event.time} {who}{event.message}"
        self.stream.write(line + "\n")
        self.stream.flush()
