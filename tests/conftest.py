"""Shared fixtures: a scratch scenario folder with a fake backup and key."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

# tests/data holds inputs (scenarios, testinfra files for guests), not tests of this project.
collect_ignore = ["data"]

VALID = """\
version: 1
name: unit-web
backup:
  path: backup.qcow2
targets:
  rto: 15m
  rpo: 26h
vm:
  memory: 512MiB
  vcpus: 1
login:
  user: root
  key_file: id_ed25519
checks:
  - name: nginx running
    service: nginx
  - name: homepage
    http: /
    contains: hello
"""


@pytest.fixture
def scenario_dir(tmp_path: Path) -> Path:
    """A folder with a real (tiny) qcow2 backup, an SSH key and a valid scenario."""
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", str(tmp_path / "backup.qcow2"), "16M"],
        check=True,
    )
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "id_ed25519")],
        check=True,
    )
    (tmp_path / "scenario.yaml").write_text(VALID)
    return tmp_path
