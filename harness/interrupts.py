"""SIGINT and SIGTERM as a clean abort: an :class:`Aborted` exception while the drill runs,
a remembered flag while it tears down and writes its report (which must not be cut short)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from harness.errors import Aborted


class Interrupts:
    """Owns the process's SIGINT/SIGTERM handlers between :meth:`install` and :meth:`restore`.

    The first signal aborts the drill; teardown and the report still run in full. A second
    one *forces*: :attr:`forced` is set, and teardown's own waits (the backup's re-hash, the
    join of a start that will not stop) are cut short. Teardown itself still runs."""

    def __init__(self) -> None:
        self.received: str | None = None
        self.forced = threading.Event()
        self._armed = False
        self._previous: dict[int, object] = {}

    def _handler(self, signum: int, _frame: FrameType | None) -> None:
        first = self.received is None
        if first:
            self.received = signal.Signals(signum).name
        else:
            self.forced.set()
        if self._armed and first:
            raise Aborted(self.received or "signal")

    def install(self) -> Interrupts:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]

    @contextmanager
    def armed(self) -> Iterator[None]:
        """Signals raise :class:`Aborted` inside this block."""
        self.check()
        self._armed = True
        try:
            yield
        finally:
            self._armed = False

    def check(self) -> None:
        """Raise :class:`Aborted` if a signal came; long waits call this as they poll."""
        if self.received:
            raise Aborted(self.received)
