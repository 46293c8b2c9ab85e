"""Sockets inside a lab's network namespace (:mod:`harness.lab.netns`): the one place that
moves a thread between network namespaces.

Linux keeps the network namespace per thread, and a socket belongs for good to the
namespace it was made in: so a thread enters the lab's namespace, makes its socket, and comes
back. Only that thread moves; the rest of the harness never sees the lab's addresses.
"""

from __future__ import annotations

import ctypes
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.errors import LabError

RUN_NETNS = Path("/run/netns")
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise LabError(f"cannot enter the lab's network namespace: {os.strerror(err)}")


@contextmanager
def entered(ns: str | None) -> Iterator[None]:
    """Run the block with this thread in namespace ``ns`` (no-op for None): sockets made in
    it belong there for good. Only this thread moves; it comes back after the block."""
    if not ns:
        yield
        return
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        try:
            target = os.open(RUN_NETNS / ns, os.O_RDONLY)
        except OSError as exc:
            raise LabError(f"the lab's network namespace {ns} is gone: {exc.strerror}") from exc
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)


def connect(ns: str | None, ip: str, port: int, timeout_s: float) -> socket.socket:
    """A TCP connection to ``ip:port`` made from inside ``ns``."""
    with entered(ns):
        return socket.create_connection((ip, port), timeout=timeout_s)


def link_exists(name: str) -> bool:
    """Whether this thread's network namespace has interface ``name`` (asked of the kernel:
    /sys/class/net shows the namespace /sys was mounted in, which may be another)."""
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True
