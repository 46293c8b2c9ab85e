"""pytest plugin loaded into the child pytest that runs user testinfra files.

Gives the ``host`` fixture on a connection to the restored VM pinned to the recorded host key.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.checks.session import testinfra_host
from harness.checks.testfiles import TARGET_ENV
from harness.remote.jump import Jump
from harness.remote.keys import HostKey
from harness.remote.ssh import Target, connect_pinned


@pytest.fixture(scope="session")
def host() -> Iterator[Any]:
    """The restored VM as a testinfra host."""
    spec = json.loads(os.environ[TARGET_ENV])
    jump = Jump(**spec["jump"]) if spec.get("jump") else None
    target = Target(spec["ip"], spec["port"], spec["user"], Path(spec["key_file"]),
                    spec.get("password"), spec.get("netns"), jump)
    host_key = HostKey(spec["host_key_type"], spec["host_key"])
    client = connect_pinned(target, host_key, 30.0)
    try:
        yield testinfra_host(client, target, host_key)
    finally:
        client.close()
