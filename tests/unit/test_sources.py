"""File-level sources with the real tools (tar, zstd, restic, borg) and real repositories,
no VM: what verify reads from each backup's own metadata, the tar stream each produces,
repositories left byte-for-byte unchanged, and damage reported with the tool's own words."""

from __future__ import annotations

import importlib
import io
import os
import subprocess
import tarfile
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from harness.errors import InfraError, PhaseFailed
from harness.kinds import REGISTRY
from harness.scenario.loader import load_scenario
from harness.scenario.schema import SCHEMA
from harness.sources import Proof, open_source
from harness.sources.files import FileLevelSource

PASSWORD = "correct horse battery staple"
PAGE = b"<h1>restored from a file-level backup</h1>\n"


@pytest.fixture(scope="module")
def backups(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("backups")
    site = root / "site"
    (site / "assets").mkdir(parents=True)
    (site / "index.html").write_bytes(PAGE)
    (site / "assets" / "VERSION").write_text("2026.11\n")
    subprocess.run(["tar", "-C", str(site), "-czf", str(root / "site.tar.gz"), "."], check=True)
    subprocess.run(["tar", "-C", str(site), "--zstd", "-cf", str(root / "site.tar.zst"), "."],
                   check=True)  # fmt: skip
    (root / "pass").write_text(PASSWORD + "\n")
    env = {**os.environ, "RESTIC_PASSWORD": PASSWORD, "BORG_PASSPHRASE": PASSWORD,
           "BORG_BASE_DIR": str(root / "borg-home")}  # fmt: skip
    subprocess.run(["restic", "--repo", str(root / "restic"), "--no-cache", "init"], env=env,
                   check=True, capture_output=True)  # fmt: skip
    subprocess.run(["restic", "--repo", "../restic", "--no-cache", "backup", "--host", "web", "."],
                   env=env, cwd=site, check=True, capture_output=True)  # fmt: skip
    subprocess.run(["borg", "init", "-e", "repokey", str(root / "borg")], env=env, check=True,
                   capture_output=True)  # fmt: skip
    subprocess.run(["borg", "create", "../borg::site-1", "."], env=env, cwd=site, check=True,
                   capture_output=True)  # fmt: skip
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(root / "base.qcow2"), "16M"],
                   check=True)  # fmt: skip
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / "key")],
                   check=True)  # fmt: skip
    return root


def source(folder: Path, backup: str, target: str = "  target: /var/www/html\n") -> FileLevelSource:
    """The file-level source a scenario in ``folder`` with this ``backup:`` section opens."""
    scenario = folder / "s.yaml"
    scenario.write_text(
        f"version: 1\nname: unit-files\nbackup:\n{backup}{target}"
        "targets: {rto: 15m, rpo: 1d}\nvm: {image: base.qcow2}\n"
        "login: {user: root, key_file: key}\n"
    )
    spec = load_scenario(scenario)
    made = open_source(spec.primary.backup, spec.primary.vm)
    assert isinstance(made, FileLevelSource)
    return made


def members(src: FileLevelSource) -> dict[str, bytes]:
    with src.restore_stream() as stream:
        data = stream.read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name.removeprefix("./"): tar.extractfile(m).read()  # type: ignore[union-attr]
                for m in tar.getmembers() if m.isfile()}  # fmt: skip


KINDS = {
    "tar-gz": "  kind: tar\n  path: site.tar.gz\n",
    "tar-zstd": "  kind: tar\n  path: site.tar.zst\n",
    "restic": "  kind: restic\n  repository: restic\n  password_file: pass\n",
    "borg": f"  kind: borg\n  repository: borg\n  password: {PASSWORD}\n",
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_kind_streams_the_backed_up_files_and_leaves_the_backup_unchanged(
    backups: Path, kind: str
) -> None:
    src = source(backups, KINDS[kind])
    evidence, disk = src.verify()
    assert disk.path == backups / "base.qcow2"
    assert evidence.base_image == str(backups / "base.qcow2")
    age = datetime.now(UTC) - datetime.fromisoformat(evidence.restore_point)
    assert timedelta(0) <= age < timedelta(hours=1)  # the backup's own time, made just now
    expected_source = {"restic": "restic snapshot time", "borg": "borg archive time"}
    assert evidence.restore_point_source == expected_source.get(kind, "mtime")
    src.hash(evidence, threading.Event())
    files = members(src)
    assert files["index.html"] == PAGE
    assert files["assets/VERSION"] == b"2026.11\n"
    src.confirm_unchanged(evidence, Proof())
    assert evidence.unchanged is True
    assert evidence.unchanged_by == "hash"
    assert evidence.sha256 == evidence.sha256_after


def test_single_file_is_placed_under_its_own_name(backups: Path) -> None:
    src = source(backups, "  kind: file\n  path: site.tar.gz\n")
    src.verify()
    assert list(members(src)) == ["site.tar.gz"]


def test_an_explicit_restore_point_wins(backups: Path) -> None:
    src = source(backups, KINDS["restic"] + "  restore_point: 2026-11-22T02:00:00Z\n")
    evidence, _ = src.verify()
    assert evidence.restore_point == "2026-11-22T02:00:00+00:00"
    assert evidence.restore_point_source == "scenario"


def test_a_wrong_password_fails_verify_with_the_tools_words(backups: Path, tmp_path: Path) -> None:
    (backups / "wrong").write_text("not the password\n")
    src = source(backups, "  kind: restic\n  repository: restic\n  password_file: wrong\n")
    with pytest.raises(PhaseFailed) as failed:
        src.verify()
    assert failed.value.phase == "verify"
    assert "restic failed" in str(failed.value)
    assert "wrong password" in str(failed.value)


def test_a_truncated_archive_fails_verify(backups: Path) -> None:
    data = (backups / "site.tar.gz").read_bytes()
    (backups / "cut.tar.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(PhaseFailed) as failed:
        source(backups, "  kind: tar\n  path: cut.tar.gz\n").verify()
    assert failed.value.phase == "verify"
    assert "tar failed" in str(failed.value)


def corrupt_largest_file(folder: Path) -> None:
    victim = max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    for i in range(len(data) // 2, min(len(data) // 2 + 64, len(data))):
        data[i] ^= 0xFF
    victim.chmod(0o600)
    victim.write_bytes(bytes(data))


@pytest.mark.parametrize("kind", ["restic", "borg"])
def test_a_corrupted_repository_fails_the_restore_with_the_tools_error(
    backups: Path, tmp_path: Path, kind: str
) -> None:
    copy = tmp_path / kind
    subprocess.run(["cp", "-a", str(backups / kind), str(copy)], check=True)
    folder = copy / "data"
    corrupt_largest_file(folder)
    for file in ("pass", "base.qcow2", "key"):
        (tmp_path / file).write_bytes((backups / file).read_bytes())
    (tmp_path / "key").chmod(0o600)
    src = source(tmp_path, KINDS[kind])
    # restic's snapshot list still reads (the damage is in the data): the restore fails.
    # borg reads each archive's metadata for its host at verify, in the damaged segment.
    with pytest.raises(PhaseFailed) as failed:
        _ = src.verify(), members(src)
    assert failed.value.phase == {"restic": "restore", "borg": "verify"}[kind]
    assert f"{kind} failed (exit " in str(failed.value)


def test_a_missing_tool_is_an_infrastructure_error(
    backups: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    src = source(backups, KINDS["restic"])
    with pytest.raises(InfraError, match=r"restic is not installed on this host \(apt install"):
        src.inspect()


@pytest.mark.parametrize(
    ("kind", "url"),
    [("restic", "local:{root}/restic"), ("borg", "file://{root}/borg")],
)
def test_a_repository_url_is_handed_to_the_tool_and_not_claimed_unchanged(
    backups: Path, kind: str, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Offsite copies: any repository URL the tool understands (here the URL forms of local
    repositories, standing in for sftp:, s3:, ssh://). The password from the environment."""
    monkeypatch.setenv("UNIT_REPO_PASSWORD", PASSWORD)
    repository = url.format(root=backups)
    src = source(backups, f"  kind: {kind}\n  repository: {repository}\n"
                          "  password: \"{{ secret('UNIT_REPO_PASSWORD') }}\"\n")  # fmt: skip
    evidence, _ = src.verify()
    assert evidence.path == repository
    assert evidence.identity_before is None  # nothing on this host to stat
    assert members(src)["index.html"] == PAGE
    src.hash(evidence, threading.Event())
    src.confirm_unchanged(evidence, Proof())
    assert evidence.unchanged is None  # not claimed: it is not here to prove
    assert evidence.details["unchanged"] == "a remote repository: not provable from this host"


def test_a_vmdk_disk_image_is_checked_with_qemu_img(backups: Path) -> None:
    disk = backups / "disk.vmdk"
    subprocess.run(["qemu-img", "create", "-q", "-f", "vmdk", str(disk), "16M"], check=True)
    scenario = backups / "vmdk.yaml"
    scenario.write_text("version: 1\nname: unit-vmdk\nbackup: {path: disk.vmdk}\n"
                        "targets: {rto: 15m, rpo: 1d}\nvm: {}\n"
                        "login: {user: root, key_file: key}\n")  # fmt: skip
    machine = load_scenario(scenario).primary
    evidence, boot = open_source(machine.backup, machine.vm).verify()
    assert evidence.format == boot.image.format == "vmdk"
    assert evidence.image_check == "No errors were found on the image."


@pytest.mark.parametrize("name", list(REGISTRY))
def test_each_registered_kind_is_whole_in_its_one_registry_line(name: str) -> None:
    """The registry is the only table of kinds: its class exists and matches how it is
    restored, and every backup key it takes is described in the scenario schema."""
    kind = REGISTRY[name]
    module, _, cls_name = kind.impl.partition(":")
    cls = getattr(importlib.import_module(module), cls_name)
    assert issubclass(cls, FileLevelSource) is kind.restored
    backup_schema = SCHEMA["properties"]["backup"]
    assert name in backup_schema["properties"]["kind"]["enum"]
    assert kind.keys <= set(backup_schema["properties"])
    assert set(kind.required) <= kind.keys


def test_restic_latest_is_the_newest_time_not_the_greatest_text(tmp_path: Path) -> None:
    """Two snapshots whose times carry different UTC offsets (a daylight-saving change, or two
    hosts): 23:30+02:00 is 21:30Z, older than 22:00Z, though its text sorts after it."""
    env = {**os.environ, "RESTIC_PASSWORD": PASSWORD}
    repo = tmp_path / "restic"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "f").write_text("x")
    subprocess.run(["restic", "--repo", str(repo), "--no-cache", "init"], env=env, check=True,
                   capture_output=True)  # fmt: skip
    for zone, when, host in (("Etc/GMT-2", "2026-10-24 23:30:00", "east"),
                             ("UTC", "2026-10-24 22:00:00", "west")):  # fmt: skip
        subprocess.run(["restic", "--repo", str(repo), "--no-cache", "backup", "--host", host,
                        "--time", when, "."], env={**env, "TZ": zone}, cwd=tmp_path / "data",
                       check=True, capture_output=True)  # fmt: skip
    (tmp_path / "pass").write_text(PASSWORD)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(tmp_path / "base.qcow2"),
                    "16M"], check=True)  # fmt: skip
    (tmp_path / "key").write_text("")
    evidence, _ = source(tmp_path, KINDS["restic"]).verify()
    assert evidence.details["hostname"] == "west"
    assert evidence.restore_point == "2026-10-24T22:00:00+00:00"


def test_borg_latest_compares_parsed_times() -> None:
    from harness.sources.files import newest

    archives = [{"name": "a", "start": "2026-10-24T23:30:00+02:00"},
                {"name": "b", "start": "2026-10-24T22:00:00+00:00"}]  # fmt: skip
    assert newest(archives, "start") == archives[1]
    assert newest([], "start") is None


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_kind_names_sample_files_and_reads_their_content(backups: Path, kind: str) -> None:
    """What `init` writes its file checks from: paths as they land under the target, and
    the content the backup holds."""
    src = source(backups, KINDS[kind])
    src.verify()
    files = src.sample_files(5)
    assert sorted(files) == ["assets/VERSION", "index.html"]
    assert src.file_content("index.html") == PAGE
