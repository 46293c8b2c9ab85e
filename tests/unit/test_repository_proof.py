"""The proof that a repository was left unchanged scales: restic's pack files (named by
their content's SHA-256) and borg's segments (written once) are proven by name and stat, the
files that may change in place (config, index, keys, snapshots) by SHA-256; the report says
which proof covered which files, and ``verify_after: full-hash`` hashes every file."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from harness.scenario.loader import load_scenario
from harness.sources import Proof, open_source
from harness.sources.files import FileLevelSource

PASSWORD = "proof password"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    env = {**os.environ, "RESTIC_PASSWORD": PASSWORD}
    data = tmp_path / "site"
    data.mkdir()
    for i in range(20):
        (data / f"f{i}").write_bytes(os.urandom(2048))
    subprocess.run(["restic", "--repo", str(tmp_path / "repo"), "--no-cache", "init"], env=env,
                   check=True, capture_output=True)  # fmt: skip
    subprocess.run(["restic", "--repo", str(tmp_path / "repo"), "--no-cache", "backup",
                    str(data)], env=env, check=True, capture_output=True)  # fmt: skip
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(tmp_path / "base.qcow2"),
                    "16M"], check=True)  # fmt: skip
    (tmp_path / "key").write_text("")
    return tmp_path


def source(folder: Path, extra: str = "", kind: str = "restic") -> FileLevelSource:
    (folder / "s.yaml").write_text(
        f"version: 1\nname: unit-proof\nbackup:\n  kind: {kind}\n  repository: repo\n"
        f"  password: '{PASSWORD}'\n{extra}targets: {{rto: 15m, rpo: 1d}}\n"
        "vm: {image: base.qcow2}\nlogin: {user: root, key_file: key}\n")  # fmt: skip
    machine = load_scenario(folder / "s.yaml").primary
    made = open_source(machine.backup, machine.vm)
    assert isinstance(made, FileLevelSource)
    return made


def packs(folder: Path) -> list[Path]:
    return sorted(p for p in (folder / "repo" / "data").rglob("*") if p.is_file())


def test_packs_by_name_and_stat_the_rest_by_hash_and_the_report_says_so(repo: Path) -> None:
    src = source(repo)
    evidence, _ = src.verify()
    src.hash(evidence, threading.Event())
    said = evidence.details["repository proof"]
    total = sum(1 for p in (repo / "repo").rglob("*") if p.is_file())
    n_packs = len(packs(repo))
    assert said.startswith(f"{n_packs} content-addressed file(s) under data/ by name and stat")
    assert f"; {total - n_packs} other file(s) by SHA-256" in said
    src.confirm_unchanged(evidence, Proof())
    assert evidence.unchanged is True
    assert evidence.unchanged_by == "hash"


@pytest.mark.root  # writes a read-only pack file, as only root could
def test_a_pack_rewritten_in_place_with_the_same_size_is_caught(repo: Path) -> None:
    src = source(repo)
    evidence, _ = src.verify()
    src.hash(evidence, threading.Event())
    pack = packs(repo)[0]
    stat = pack.stat()
    time.sleep(0.01)
    data = bytearray(pack.read_bytes())
    data[100] ^= 0xFF
    pack.write_bytes(bytes(data))
    os.utime(pack, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even with its mtime put back
    src.confirm_unchanged(evidence, Proof())
    assert evidence.unchanged is False  # its ctime moved (and the folder identity with it)


def test_full_hash_hashes_every_file(repo: Path) -> None:
    src = source(repo, "  verify_after: full-hash\n")
    evidence, _ = src.verify()
    src.hash(evidence, threading.Event())
    assert "repository proof" not in evidence.details
    src.confirm_unchanged(evidence, Proof())
    assert evidence.unchanged is True
    by_stat, _ = source(repo).verify()
    source(repo).hash(by_stat, threading.Event())
    assert evidence.sha256 != by_stat.sha256  # every pack's content went into this one


def test_borg_segments_are_named_for_what_they_are(tmp_path: Path) -> None:
    """borg's segments are append-only logs, not content-addressed files: the report says so."""
    env = {**os.environ, "BORG_PASSPHRASE": PASSWORD, "BORG_BASE_DIR": str(tmp_path / "home")}
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "f").write_bytes(os.urandom(4096))
    subprocess.run(["borg", "init", "-e", "repokey", str(tmp_path / "repo")], env=env,
                   check=True, capture_output=True)  # fmt: skip
    subprocess.run(["borg", "create", f"{tmp_path / 'repo'}::a", str(tmp_path / "site")],
                   env=env, check=True, capture_output=True)  # fmt: skip
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(tmp_path / "base.qcow2"),
                    "16M"], check=True)  # fmt: skip
    (tmp_path / "key").write_text("")
    src = source(tmp_path, kind="borg")
    evidence, _ = src.verify()
    src.hash(evidence, threading.Event())
    n_segments = len(packs(tmp_path))
    assert evidence.details["repository proof"].startswith(
        f"{n_segments} append-only segment file(s) under data/ by name and stat")
