"""A drill that meets a running backup: the repository's lock, taken by the real tool, makes
the scenario wait (``--wait-backup``) and then skip with exit 75 naming the lock, instead of a
FAIL "backup changed during the drill". A stale lock does not count."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.scenario.loader import load_scenario
from harness.sources.busy import RESTIC_STALE_S, holder

PASSWORD = "repository password"
ENV = {**os.environ, "RESTIC_PASSWORD": PASSWORD, "BORG_PASSPHRASE": PASSWORD}


def scenario(folder: Path, kind: str) -> Path:
    text = (f"version: 1\nname: unit-busy-{kind}\nbackup:\n  kind: {kind}\n  repository: repo\n"
            f"  password: '{PASSWORD}'\ntargets: {{rto: 15m, rpo: 3650d}}\n"
            "vm: {image: backup.qcow2}\nlogin: {user: root, key_file: id_ed25519}\n")  # fmt: skip
    (folder / "s.yaml").write_text(text)
    return folder / "s.yaml"


@pytest.fixture
def restic_held(scenario_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A restic backup in progress: ``backup --stdin`` holds its lock while its input is open."""
    repo = scenario_dir / "repo"
    subprocess.run(["restic", "--repo", str(repo), "--no-cache", "init"], env=ENV, check=True,
                   capture_output=True)  # fmt: skip
    backup = subprocess.Popen(["restic", "--repo", str(repo), "--no-cache", "backup", "--stdin"],
                              env=ENV, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    for _ in range(100):
        if list((repo / "locks").iterdir()):
            break
        time.sleep(0.1)
    yield backup
    assert backup.stdin is not None
    backup.stdin.close()
    backup.wait(timeout=60)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", "run", "--connect", "test:///default",
                           "--log-format", "text", *args], capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip


def test_a_locked_restic_repository_skips_the_drill_with_75(
    scenario_dir: Path, restic_held: subprocess.Popen[bytes]
) -> None:
    started = time.monotonic()
    done = run(str(scenario(scenario_dir, "restic")), "--reports", str(scenario_dir / "r"),
               "--wait-backup", "3s")  # fmt: skip
    assert done.returncode == 75, done.stderr
    assert 3 <= time.monotonic() - started < 30
    assert "the backup is running: restic repository" in done.stderr
    assert "is locked (1 lock(s); locks/" in done.stderr
    assert "not drilled after waiting 3.0s (--wait-backup waits for it)" in done.stderr
    assert not (scenario_dir / "r").exists() or not list((scenario_dir / "r").glob("*_unit-*"))


def test_the_drill_goes_ahead_once_the_backup_ends(
    scenario_dir: Path, restic_held: subprocess.Popen[bytes]
) -> None:
    def finish() -> None:
        time.sleep(2)
        assert restic_held.stdin is not None
        restic_held.stdin.close()

    threading.Thread(target=finish).start()
    done = run(str(scenario(scenario_dir, "restic")), "--reports", str(scenario_dir / "r"),
               "--wait-backup", "60s")  # fmt: skip
    assert done.returncode != 75, done.stderr
    assert "the backup is running" not in done.stderr
    assert "verify" in done.stderr  # the drill itself ran (and wrote its report)


def test_a_stale_restic_lock_does_not_count(
    scenario_dir: Path, restic_held: subprocess.Popen[bytes]
) -> None:
    spec = load_scenario(scenario(scenario_dir, "restic")).primary.backup
    assert holder(spec) is not None
    assert holder(spec, now=time.time() + RESTIC_STALE_S + 60) is None


def test_borg_lock_held_by_a_running_borg_and_a_dead_ones_stale_lock(scenario_dir: Path) -> None:
    repo = scenario_dir / "repo"
    env = {**ENV, "BORG_BASE_DIR": str(scenario_dir / "borg-home")}
    subprocess.run(["borg", "init", "-e", "repokey", str(repo)], env=env, check=True,
                   capture_output=True)  # fmt: skip
    spec = load_scenario(scenario(scenario_dir, "borg")).primary.backup
    assert holder(spec) is None
    held = subprocess.Popen(["borg", "with-lock", str(repo), "sleep", "60"], env=env)
    try:
        for _ in range(100):
            if (repo / "lock.exclusive").is_dir() and list((repo / "lock.exclusive").iterdir()):
                break
            time.sleep(0.1)
        said = holder(spec)
        assert said is not None
        assert f"is locked by {socket.gethostname()}@" in said
        assert f".{held.pid}-" in said
    finally:
        held.kill()  # as kill -9 would: borg leaves its lock behind
        held.wait()
    assert (repo / "lock.exclusive").is_dir()
    assert holder(spec) is None  # this host's holder is gone: stale


def test_borg_roster_holders_are_named_as_they_are_and_dead_ones_do_not_count(
    scenario_dir: Path,
) -> None:
    """A roster left by a killed `borg list` (a shared lock of a gone process) must not skip
    every drill forever; a live exclusive holder is named as exclusive, not "a shared lock"."""
    repo = scenario_dir / "repo"
    repo.mkdir()
    spec = load_scenario(scenario(scenario_dir, "borg")).primary.backup
    gone = subprocess.Popen(["true"])
    gone.wait()
    here = f"{socket.gethostname()}@1234"
    roster = repo / "lock.roster"
    roster.write_text(json.dumps({"shared": [[here, gone.pid, 0]]}))
    assert holder(spec) is None
    roster.write_text(json.dumps({"exclusive": [[here, os.getpid(), 0]]}))
    assert holder(spec) == f"borg repository {repo} is locked by {here}.{os.getpid()}-0 (exclusive)"
    roster.write_text(json.dumps({"shared": [["backup-host@99", 4321, 0]]}))  # another host's
    assert holder(spec) == f"borg repository {repo} is locked by backup-host@99.4321-0 (shared)"
