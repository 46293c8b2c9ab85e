"""The backup tool's own integrity check (``backup.integrity``), with the real tools on real
repositories: a sound one passes, a damaged one fails naming the tool's words, and the
repository is proven unchanged afterwards, though ``borg check`` writes (its config and a
nonce) wherever it may: it only ever sees a copy-on-write view."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import PhaseFailed
from harness.sources.identity import identity
from tests.unit.test_pgbackrest import pgbackrest_source
from tests.unit.test_scenario_loader import problems, write
from tests.unit.test_sources import KINDS, backups, corrupt_largest_file, source

__all__ = ["backups"]  # the fixture, shared

pytestmark = pytest.mark.root  # mount namespaces


def copy_of(backups: Path, tmp_path: Path, kind: str) -> Path:
    subprocess.run(["cp", "-a", str(backups / kind), str(tmp_path / kind)], check=True)
    for file in ("pass", "base.qcow2", "key"):
        (tmp_path / file).write_bytes((backups / file).read_bytes())
    (tmp_path / "key").chmod(0o600)
    return tmp_path / kind


@pytest.mark.parametrize(("kind", "options", "said"), [
    ("restic", "read_data_subset: 100%", "restic --repo <repository> --no-lock --no-cache check "
     "--read-data-subset=100% (through a copy-on-write view of the repository): read 100.0% "
     "of data packs; no errors were found"),
    ("borg", "verify_data: true", "borg --bypass-lock check -v --verify-data -- <repository> "
     "(through a copy-on-write view of the repository): Finished full repository check, no "
     "problems found."),
])  # fmt: skip
def test_a_sound_repository_passes_and_is_left_exactly_as_it_was(
    backups: Path, tmp_path: Path, kind: str, options: str, said: str
) -> None:
    repository = copy_of(backups, tmp_path, kind)
    before = identity(repository)
    src = source(tmp_path, KINDS[kind] + f"  integrity: {{{options}}}\n")
    src.verify()
    found = src.check_integrity()
    assert found.startswith(said), found
    if kind == "borg":
        assert "Finished cryptographic data integrity verification" in found
        assert "no problems found" in found
    assert identity(repository) == before  # content, mode, owner, ctime of every file


@pytest.mark.parametrize("kind", ["restic", "borg"])
def test_a_damaged_repository_fails_the_integrity_phase(
    backups: Path, tmp_path: Path, kind: str
) -> None:
    repository = copy_of(backups, tmp_path, kind)
    corrupt_largest_file(repository / "data")
    options = "read_data_subset: 100%" if kind == "restic" else "verify_data: true"
    src = source(tmp_path, KINDS[kind] + f"  integrity: {{{options}}}\n")
    if kind == "restic":
        src.verify()
    with pytest.raises(PhaseFailed) as failed:
        src.check_integrity()
    assert failed.value.phase == "integrity"
    assert str(failed.value).startswith(f"{kind} failed (exit "), failed.value


def test_a_pg_dump_is_read_whole(tmp_path: Path) -> None:
    dump = Path("/var/cache/restore-drill/demo/shop.dump")
    if not dump.exists():
        pytest.skip("the demo data is not built (scripts/build-demo-data)")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(tmp_path / "base.qcow2"),
                    "16M"], check=True)  # fmt: skip
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "key")],
                   check=True)  # fmt: skip
    (tmp_path / "shop.dump").write_bytes(dump.read_bytes())
    src = source(tmp_path, "  kind: file\n  path: shop.dump\n  integrity: {}\n",
                 "  target: /var/backups\n")
    found = src.check_integrity()
    assert found.startswith("pg_restore --file=/dev/null -- <file> (reading the file): the "
                            "whole archive read and decompressed, "), found
    data = dump.read_bytes()
    (tmp_path / "shop.dump").write_bytes(data[: len(data) * 2 // 3])  # cut short
    with pytest.raises(PhaseFailed) as failed:
        src.check_integrity()
    assert str(failed.value).startswith("pg_restore failed (exit 1): ")


def test_what_a_kind_cannot_check_is_refused_at_load(scenario_dir: Path) -> None:
    base = ("version: 1\nname: t\ntargets: {rto: 1h, rpo: 1d}\nvm: {image: backup.qcow2}\n"
            "login: {user: root, key_file: id_ed25519}\nbackup:\n")
    cases = {
        "  kind: borg\n  repository: ssh://backup@host/./repo\n  integrity: {}\n":
            "backup.integrity: borg check writes to the repository",
        "  kind: borg\n  repository: /r\n  integrity: {read_data_subset: 5%}\n":
            "backup.integrity.read_data_subset: only restic reads a subset",
        "  kind: restic\n  repository: /r\n  integrity: {verify_data: true}\n":
            "backup.integrity.verify_data: only borg check has --verify-data",
        "  kind: file\n  path: id_ed25519\n  target: /x\n  integrity: {}\n":
            "backup.integrity: the only check of a single file is pg_restore's, for a pg_dump "
            "archive (custom format); this file is not one",
        "  kind: restic\n  repository: /r\n  integrity: {read_data_subset: lots}\n":
            "backup.integrity.read_data_subset: ",
    }  # fmt: skip
    for backup, message in cases.items():
        found = problems(write(scenario_dir, base + backup))
        assert any(message in p for p in found), (backup, found)


def test_a_drill_fails_at_integrity_before_anything_is_created(
    backups: Path, tmp_path: Path
) -> None:
    repository = copy_of(backups, tmp_path, "restic")
    corrupt_largest_file(repository / "data")
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        "version: 1\nname: unit-integrity\nbackup:\n" + KINDS["restic"]
        + "  integrity: {read_data_subset: 100%}\n  target: /var/www/html\n"
        "targets: {rto: 15m, rpo: 1d}\nvm: {image: base.qcow2}\n"
        "login: {user: root, key_file: key}\n")  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "harness", "run", "--connect", "test:///default",
                           "--reports", str(tmp_path / "reports"), "--log-format", "text",
                           str(scenario)], capture_output=True, text=True, check=False)
    assert done.returncode == 1, done.stderr
    [report_file] = (tmp_path / "reports").glob("*/report.json")
    report = json.loads(report_file.read_text())
    assert report["reason"].startswith("integrity: restic failed (exit 1): "), report["reason"]
    assert [p["name"] for p in report["phases"]] == ["verify", "integrity"]
    assert report["backup"]["unchanged"] is True
    assert report["rto"]["measured_s"] is None


def test_pgbackrest_verify_reads_every_file_and_its_report_decides(tmp_path: Path) -> None:
    """pgBackRest 2.45's verify exits 0 even when a file is damaged, and says so in its
    report: a damaged backup file fails the phase with that report; the repository (a copy of
    the demo's, owned by postgres) is left exactly as it was."""
    demo = Path("/var/cache/restore-drill/demo/pgbackrest-repo")
    if not demo.exists():
        pytest.skip("the demo data is not built (scripts/build-demo-data)")
    subprocess.run(["cp", "-a", str(demo), str(tmp_path / "repo")], check=True)
    repository = tmp_path / "repo"
    before = identity(repository)
    src = pgbackrest_source(tmp_path, "  integrity: {}\n")
    src.verify()
    found = src.check_integrity()
    assert found.startswith("pgbackrest --config=/dev/null --repo1-path=<repository> "
                            "--stanza=db --log-level-console=info --log-level-file=off "
                            "--verbose verify (through a copy-on-write view of the "
                            "repository): status: ok; archiveId: 15-1, total WAL checked: "), found
    assert ", status: valid, total files checked: " in found
    assert identity(repository) == before
    damaged = max((repository / "backup").rglob("*.gz"), key=lambda p: p.stat().st_size)
    with damaged.open("r+b") as fh:
        fh.seek(100)
        fh.write(b"XXXX")
    with pytest.raises(PhaseFailed) as failed:
        src.check_integrity()
    assert failed.value.phase == "integrity"
    assert str(failed.value).startswith("pgbackrest found damage: status: error; "), failed.value
    assert "checksum invalid: 1" in str(failed.value)
