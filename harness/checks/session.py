"""A testinfra ``Host`` on an already-open, host-key-pinned paramiko connection.

testinfra's paramiko backend would open its own connection and accept any host key; handing
it ours means one SSH connection for every check and no silent trust.
"""

from __future__ import annotations

from typing import Any

from testinfra.backend.paramiko import ParamikoBackend
from testinfra.host import Host


def testinfra_host(client: Any, user: str, ip: str, port: int) -> Any:
    """A testinfra host whose commands run over ``client`` (a connected paramiko client)."""
    backend = ParamikoBackend(f"{user}@{ip}:{port}")
    backend.client = client  # fills testinfra's cached_property: no second connection
    host = Host(backend)
    backend.set_host(host)
    return host
