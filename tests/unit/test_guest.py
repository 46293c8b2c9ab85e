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


class FakeGuestFS:
    """libguestfs as the agent drives it, over a fixed disk: which file systems mount, what
    its inspection finds, and every call the agent made."""

    def __init__(self, devices: dict[str, set[str]], found: dict[str, str]) -> None:
        self.devices, self.found = devices, found  # device -> files on it; inspection's mounts
        self.calls: list[str] = []
        self.mounted: dict[str, str] = {}

    def __call__(self, python_return_dict: bool) -> FakeGuestFS:
        return self

    def set_backend(self, _name: str) -> None: ...
    def set_backend_settings(self, _settings: list[str]) -> None: ...
    def add_drive_opts(self, _path: str, format: str, readonly: bool) -> None: ...
    def launch(self) -> None: ...

    def mount(self, device: str, mountpoint: str) -> None:
        self.calls.append(f"mount {device} {mountpoint}")
        if device not in self.devices:
            raise RuntimeError(f"mount: {device}: No such file or directory")
        self.mounted[mountpoint] = device

    def umount_all(self) -> None:
        self.calls.append("umount_all")
        self.mounted.clear()

    def is_file(self, path: str) -> bool:
        return path in self.devices.get(self.mounted.get("/", ""), set())

    def inspect_os(self) -> list[str]:
        self.calls.append("inspect_os")
        return [self.found["/"]]

    def inspect_get_type(self, _root: str) -> str:
        return "linux"

    def inspect_get_mountpoints(self, _root: str) -> dict[str, str]:
        return self.found


DISK = {"/dev/sda1": {"/etc/passwd"}, "/dev/sda2": set(), "/dev/sdb1": set()}


@pytest.mark.parametrize(
    ("given", "inspected"),
    [({"/": "/dev/sda1", "/boot": "/dev/sda2", "/var": "/dev/sdc1"}, False),  # /var: not added
     ({}, True),  # nothing given (no network reading before): inspected, as ever
     ({"/": "/dev/sdz9"}, True),  # the given root does not mount
     ({"/": "/dev/sdb1"}, True),  # it mounts, but holds no system
     ],
)  # fmt: skip
def test_key_injection_mounts_what_the_network_reading_found_else_inspects(
    monkeypatch: pytest.MonkeyPatch, given: dict[str, str], inspected: bool
) -> None:
    from harness.guest import agent

    fake = FakeGuestFS(DISK, {"/": "/dev/sda1", "/boot": "/dev/sda2"})
    monkeypatch.setitem(sys.modules, "guestfs", type(sys)("guestfs"))
    monkeypatch.setattr(sys.modules["guestfs"], "GuestFS", fake, raising=False)
    g, root = agent.open_guest({"disks": [], "mounts": given}, readonly=False)
    assert g is fake
    assert ("inspect_os" in fake.calls) is inspected
    assert root == ("/dev/sda1" if inspected else None)
    assert fake.mounted == {"/": "/dev/sda1", "/boot": "/dev/sda2"}  # shortest first, root too
    if inspected and given:
        assert fake.calls.index("umount_all") < fake.calls.index("inspect_os")
