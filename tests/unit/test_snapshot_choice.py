"""Which snapshot a drill restores and where its files land: restic's and borg's own
selectors applied to "latest" in a repository several servers share, and ``subpath`` cutting
the absolute paths the tools keep, checked by extracting the real stream as the guest does."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from harness.errors import PhaseFailed, ScenarioError
from harness.scenario.loader import load_scenario
from harness.sources.files import FileLevelSource
from tests.unit.test_sources import source as files_source

PASSWORD = "shared repository password"


def server(root: Path, name: str, page: str) -> Path:
    """A server's web root at an absolute path, as ``restic backup /…/var/www/html`` sees it."""
    www = root / name / "var" / "www" / "html"
    (www / "assets").mkdir(parents=True)
    (www / "index.html").write_text(page)
    (www / "assets" / "VERSION").write_text(f"{name} 1\n")
    return www


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One restic and one borg repository holding two servers: web (older, tagged daily)
    and db (newer)."""
    root = tmp_path_factory.mktemp("shared")
    env = {**os.environ, "RESTIC_PASSWORD": PASSWORD, "BORG_PASSPHRASE": PASSWORD,
           "BORG_BASE_DIR": str(root / "borg-home")}  # fmt: skip

    def run(*argv: str, **extra: str) -> None:
        subprocess.run(argv, env={**env, **extra}, check=True, capture_output=True)

    run("restic", "--repo", str(root / "restic"), "--no-cache", "init")
    run("borg", "init", "-e", "repokey", str(root / "borg"))
    for host, when, tag in (("web", "2026-11-20 02:00:00", "daily"),
                            ("db", "2026-11-21 02:00:00", "weekly")):  # fmt: skip
        www = server(root, host, f"<h1>{host}</h1>\n")
        run("restic", "--repo", str(root / "restic"), "--no-cache", "backup", "--host", host,
            "--tag", tag, "--time", when, str(www), TZ="UTC")  # fmt: skip
        # borg records the machine's hostname: a UTS namespace (in a user namespace, so no
        # root is needed) gives each server its own.
        run("unshare", "--user", "--map-root-user", "--uts", "sh", "-c",
            f'hostname {host} && exec "$@"', "-", "borg", "create", "--timestamp",
            when.replace(" ", "T"), f"{root / 'borg'}::{host}-{when[:10]}", str(www))  # fmt: skip
    (root / "pass").write_text(PASSWORD + "\n")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(root / "base.qcow2"), "16M"],
                   check=True)  # fmt: skip
    (root / "key").write_text("")
    return root


def source(folder: Path, backup: str) -> FileLevelSource:
    return files_source(folder, backup, target="")


RESTIC = "  kind: restic\n  repository: restic\n  password_file: pass\n"
BORG = f"  kind: borg\n  repository: borg\n  password: {PASSWORD}\n"


def extracted(src: FileLevelSource, into: Path) -> dict[str, str]:
    """The stream unpacked exactly as the guest does it: ``tar -x -C TARGET -f - ARGS``."""
    into.mkdir()
    with src.restore_stream() as stream:
        subprocess.run(["tar", "-x", "-C", str(into), "-f", "-", *src.extract_args()],
                       stdin=stream, check=True)  # fmt: skip
    return {str(p.relative_to(into)): p.read_text() for p in into.rglob("*") if p.is_file()}


@pytest.mark.parametrize("backup", [RESTIC, BORG], ids=["restic", "borg"])
def test_without_a_host_the_newest_of_any_server_is_drilled_and_said(
    shared: Path, backup: str
) -> None:
    evidence, _ = source(shared, backup).verify()
    assert evidence.details["hostname"] == "db"
    assert evidence.details["selector"].startswith("none")
    [warning] = evidence.warnings
    assert "2 hosts (db, web)" in warning
    assert "host was drilled (db)" in warning
    assert "set backup.host" in warning


@pytest.mark.parametrize("backup", [RESTIC, BORG], ids=["restic", "borg"])
def test_host_makes_latest_the_newest_of_that_server(shared: Path, backup: str) -> None:
    evidence, _ = source(shared, backup + "  host: web\n").verify()
    assert evidence.details["hostname"] == "web"
    assert evidence.details["selector"] == "host=web"
    assert evidence.restore_point.startswith("2026-11-20T02:00:00")
    assert evidence.warnings == []


def test_restic_tags_and_path_select_like_restic(shared: Path) -> None:
    evidence, _ = source(shared, RESTIC + "  tags: [daily]\n").verify()
    assert evidence.details["hostname"] == "web"
    web_path = str(shared / "web" / "var" / "www" / "html")
    evidence, _ = source(shared, RESTIC + f"  path: {web_path}\n").verify()
    assert evidence.details["paths"] == web_path
    assert evidence.details["selector"] == f"path={web_path}"


def test_borg_glob_and_prefix_select_by_archive_name(shared: Path) -> None:
    evidence, _ = source(shared, BORG + "  glob_archives: 'web-*'\n").verify()
    assert evidence.details["archive"] == "web-2026-11-20"
    evidence, _ = source(shared, BORG + "  prefix: web-\n").verify()
    assert evidence.details["archive"] == "web-2026-11-20"


@pytest.mark.parametrize(("backup", "words"), [
    (RESTIC + "  host: mail\n",
     "no snapshot in the repository matches host=mail (2 snapshot(s); hosts: db, web)"),
    (RESTIC + "  tags: [daily, weekly]\n", "matches tags=daily,weekly"),
    (BORG + "  glob_archives: 'mail-*'\n",
     "no archive in the repository matches glob_archives=mail-*"),
])  # fmt: skip
def test_a_selector_nothing_matches_fails_verify_naming_it(
    shared: Path, backup: str, words: str
) -> None:
    with pytest.raises(PhaseFailed) as failed:
        source(shared, backup).verify()
    assert words in str(failed.value)


def test_a_named_restic_snapshot_of_another_host_fails_verify(shared: Path) -> None:
    db = source(shared, RESTIC + "  host: db\n")
    db.verify()
    named, _ = source(shared, RESTIC + f"  snapshot: '{db.snapshot_id[:8]}'\n").verify()
    assert named.details["selector"] == "the snapshot named"  # not "the newest of any host"
    assert named.warnings == []
    with pytest.raises(PhaseFailed, match="does not match host=web"):
        source(shared, RESTIC + f"  snapshot: '{db.snapshot_id[:8]}'\n  host: web\n").verify()


@pytest.mark.parametrize("backup", [RESTIC, BORG], ids=["restic", "borg"])
def test_subpath_restores_that_folders_content_into_target(
    shared: Path, tmp_path: Path, backup: str
) -> None:
    www = str(shared / "web" / "var" / "www" / "html")
    src = source(shared, backup + f"  host: web\n  subpath: {www}\n  target: /srv/site\n")
    evidence, _ = src.verify()
    assert evidence.details["subpath"] == www
    assert evidence.details["restored into"] == "/srv/site"
    files = extracted(src, tmp_path / "guest")
    assert files == {"index.html": "<h1>web</h1>\n", "assets/VERSION": "web 1\n"}


@pytest.mark.parametrize("backup", [RESTIC, BORG], ids=["restic", "borg"])
def test_without_target_files_land_where_they_were_on_the_server(
    shared: Path, tmp_path: Path, backup: str
) -> None:
    src = source(shared, backup + "  host: web\n")
    evidence, _ = src.verify()
    assert evidence.details["restored into"] == "/"
    assert src.extract_args() == []
    files = extracted(src, tmp_path / "root")
    page = str((shared / "web/var/www/html/index.html").relative_to("/"))
    assert files[page] == "<h1>web</h1>\n"
    www = str(shared / "web" / "var" / "www" / "html")
    assert source(shared, backup + f"  subpath: {www}/\n").target == www


def test_a_restic_subpath_outside_the_snapshot_fails_verify(shared: Path) -> None:
    with pytest.raises(PhaseFailed, match=r"subpath /etc is not in restic snapshot .* \(it holds"):
        source(shared, RESTIC + "  host: web\n  subpath: /etc\n").verify()


@pytest.mark.parametrize("how", [["var/www/html"], ["./var/www/html"],
                                 ["-P", "--transform", "s,^,/,", "var/www/html"]])
def test_tar_subpath_finds_the_folder_however_the_archive_spells_it(
    shared: Path, tmp_path: Path, how: list[str]
) -> None:
    root = shared / "web"
    archive = tmp_path / "site.tar.gz"
    subprocess.run(["tar", "-C", str(root), "-czf", str(archive), *how], check=True,
                   capture_output=True)  # fmt: skip
    (tmp_path / "key").write_text("")
    (tmp_path / "base.qcow2").symlink_to(shared / "base.qcow2")
    src = source(tmp_path, f"  kind: tar\n  path: {archive}\n  subpath: /var/www/html\n")
    src.verify()
    assert src.target == "/var/www/html"
    files = extracted(src, tmp_path / "guest")
    assert files == {"index.html": "<h1>web</h1>\n", "assets/VERSION": "web 1\n"}
    missing = source(tmp_path, f"  kind: tar\n  path: {archive}\n  subpath: /etc\n")
    with pytest.raises(PhaseFailed, match="the archive holds nothing under /etc"):
        missing.verify()


@pytest.mark.parametrize(("backup", "field", "words"), [
    ("  kind: restic\n  repository: r\n  path: var/www\n", "backup.path", "absolute"),
    ("  kind: borg\n  repository: r\n  glob_archives: a*\n  prefix: a\n", "backup.prefix",
     "not both"),
    ("  kind: borg\n  repository: r\n  archive: a\n  host: web\n", "backup.archive", "no selector"),
    ("  kind: file\n  path: f\n", "backup", "needs 'target'"),
    ("  kind: tar\n  path: f\n  tags: [x]\n", "backup.tags", "not used by a tar backup"),
    ("  kind: restic\n  repository: r\n  subpath: www\n", "backup.subpath", ""),
])  # fmt: skip
def test_selector_and_subpath_mistakes_are_named(
    tmp_path: Path, backup: str, field: str, words: str
) -> None:
    (tmp_path / "r").mkdir()
    for name in ("f", "key", "base.qcow2"):
        (tmp_path / name).write_text("")
    text = (f"version: 1\nname: unit-choice\nbackup:\n{backup}targets: {{rto: 15m, rpo: 1d}}\n"
            "vm: {image: base.qcow2}\nlogin: {user: root, key_file: key}\n")  # fmt: skip
    (tmp_path / "s.yaml").write_text(text)
    with pytest.raises(ScenarioError) as refused:
        load_scenario(tmp_path / "s.yaml")
    found = [str(p) for p in refused.value.problems]
    assert any(f" {field}:" in p and words in p for p in found), found


@pytest.mark.parametrize("backup", [RESTIC, BORG], ids=["restic", "borg"])
def test_init_samples_files_under_the_subpath_where_they_land(shared: Path, backup: str) -> None:
    """`init`'s file checks: every file of the subfolder (subfolders too), at its place."""
    www = str(shared / "web" / "var" / "www" / "html")
    src = source(shared, backup + f"  host: web\n  subpath: {www}\n  target: /srv/site\n")
    src.verify()
    files = src.sample_files(5)
    assert sorted(src.restored_path(f) for f in files) == ["/srv/site/assets/VERSION",
                                                           "/srv/site/index.html"]
    assert {src.file_content(f) for f in files} == {b"<h1>web</h1>\n", b"web 1\n"}
