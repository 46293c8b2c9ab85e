"""Boot readiness on any address: the boot ends when the machine's own address answers on
its login port, from inside the lab namespace (no DHCP lease needed)."""

from __future__ import annotations

import errno
import time
from collections.abc import Callable

from harness.durations import READINESS_POLL_S
from harness.errors import PhaseFailed, PhaseTimeout
from harness.remote.namespace import connect

ATTEMPT_TIMEOUT_S = 5.0  # longer than ARP takes to give up (3 probes, 1 s apart)


def wait_for_address(
    ns: str, ip: str, port: int, timeout_s: float, cancelled: Callable[[], None],
    alive: Callable[[], bool], seen: Callable[[], str], phase: str = "boot",
) -> None:  # fmt: skip
    """Return once ``ip:port`` accepts a TCP connection; a timeout says what was last
    observed (no ARP answer, refused) and what the guest's NIC sent (``seen``)."""
    deadline = time.monotonic() + timeout_s
    last = "no attempt yet"
    while True:
        cancelled()
        if not alive():
            raise PhaseFailed(phase, f"the VM stopped before {ip} answered ({seen()})")
        if time.monotonic() >= deadline:
            raise PhaseTimeout(phase, f"{ip} never answered on port {port} within "
                               f"{timeout_s:g}s (last: {last}); {seen()}")  # fmt: skip
        started = time.monotonic()
        try:
            connect(ns, ip, port, ATTEMPT_TIMEOUT_S).close()
            return
        except ConnectionRefusedError:
            last = f"{ip} answered ARP, port {port} refused"
        except TimeoutError:
            last = f"no answer from {ip}"
        except OSError as exc:
            last = (f"no ARP answer from {ip}" if exc.errno == errno.EHOSTUNREACH
                    else str(exc))  # fmt: skip
        time.sleep(max(0.0, READINESS_POLL_S - (time.monotonic() - started)))
