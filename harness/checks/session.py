"""A testinfra ``Host`` on the drill's own, host-key-pinned SSH connection.

testinfra's paramiko backend would open its own connection and accept any host key; worse,
when a connection drops it reconnects by itself with a policy that accepts any key and with
``~/.ssh/config``, root's keys and an SSH agent. Our backend hands testinfra the drill's
connection and, should testinfra reconnect, reconnects with the pinned host key and the
drill's key only, or fails the check saying why. Pinning can never be silently lost.
"""

from __future__ import annotations

import functools
from typing import Any

from testinfra.backend.paramiko import ParamikoBackend
from testinfra.host import Host

from harness.remote.keys import HostKey
from harness.remote.ssh import Target, connect_pinned

RECONNECT_TIMEOUT_S = 30.0


class PinnedBackend(ParamikoBackend):  # type: ignore[misc]
    """testinfra's paramiko backend whose (re)connection is always the drill's own."""

    def __init__(self, target: Target, host_key: HostKey, client: Any) -> None:
        super().__init__(f"{target.user}@{target.ip}:{target.port}")
        self.target, self.host_key = target, host_key
        self.__dict__["client"] = client  # the drill's connection: no second one

    @functools.cached_property
    def client(self) -> Any:
        """Only after testinfra dropped a dead connection (``del self.client``)."""
        return connect_pinned(self.target, self.host_key, RECONNECT_TIMEOUT_S)


def testinfra_host(client: Any, target: Target, host_key: HostKey) -> Any:
    """A testinfra host whose commands run over ``client`` (a connected, pinned client)."""
    backend = PinnedBackend(target, host_key, client)
    host = Host(backend)
    backend.set_host(host)
    return host
