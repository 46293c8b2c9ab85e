"""Drilling a backup as it is, without a VM: how the injection decides where sshd reads the
drill's settings, and `init`'s answers to input that is no disk image."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.guest.agent import include_first
from tests.conftest import VALID
from tests.unit.test_scenario_loader import problems, write

DEBIAN = "# comment\nInclude /etc/ssh/sshd_config.d/*.conf\n\nPermitRootLogin no\nPort 22\n"


@pytest.mark.parametrize(
    ("config", "first"),
    [(DEBIAN, True),  # Debian 12, Ubuntu: the drop-in folder is read first, a drop-in wins
     ("PermitRootLogin no\nInclude /etc/ssh/sshd_config.d/*.conf\n", False),  # too late
     ("Match User backup\n  PermitRootLogin no\nInclude /etc/ssh/sshd_config.d/*.conf\n",
      False),
     ("Port 22\nPasswordAuthentication no\n", False),  # no Include at all (RHEL 8, older)
     ("Include /etc/ssh/other/*.conf\nPort 22\n", False)],
)  # fmt: skip
def test_a_drop_in_is_used_only_where_sshd_reads_it_first(config: str, first: bool) -> None:
    assert include_first(config) is first


def run_init(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", "init", *args],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


def test_init_of_something_that_is_no_disk_image_is_bad_input(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a disk\n")
    proc = run_init(str(text))
    assert proc.returncode == 2
    assert "not a disk image" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_init(str(tmp_path / "missing.qcow2"))
    assert (proc.returncode, proc.stderr.strip()) == (
        2, f"restore-drill: error: {tmp_path / 'missing.qcow2'}: no such file")
    assert not (tmp_path / "missing.qcow2").exists()
    # nothing created, nothing probed: KVM was once probed first (seconds, on a machine's
    # first run) and its answer saved in the state folder before the input was even read
    state = tmp_path / "state"
    assert not state.exists() or list(state.iterdir()) == []


def test_create_user_needs_inject_key(scenario_dir: Path) -> None:
    text = VALID.replace("  key_file: id_ed25519\n",
                         "  key_file: id_ed25519\n  create_user: true\n")
    assert any("login.create_user: needs inject_key: true" in p
               for p in problems(write(scenario_dir, text)))  # fmt: skip


def test_a_first_scenario_keeps_a_colon_in_what_was_found(tmp_path: Path) -> None:
    """What init found goes into the description: a summary holding ": " (pgBackRest's
    "stanza db: 1 backup set(s)") must stay one YAML string, not break the file."""
    import yaml

    from harness.guest.init import Draft, scenario_text

    draft = Draft("ledger", "pgBackRest stanza db: 1 backup set(s); set 20261202-201413F",
                  ['  path: "/b.qcow2"'], [], [], database=True)  # fmt: skip
    loaded = yaml.safe_load(scenario_text(draft, tmp_path / "key"))
    assert loaded["description"] == ("restore drill (pgBackRest stanza db: 1 backup set(s); "
                                     "set 20261202-201413F)")
    assert loaded["checks"][-1]["stdout_matches"] == "^f$"
