"""The scanner with real ClamAV and real YARA: signatures built by the test itself from the
EICAR string and Debian's clamav-testfiles (nothing downloaded), a planted ransom note, a clean
tree that still counts what it scanned, and every skipped file counted with its reason."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from harness.errors import ConfigError, PhaseTimeout
from harness.scan import ScanSpec, scan_tree
from harness.scan.clamav import ClamAV, _describe
from harness.scan.yara_rules import Yara

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
TESTFILES = Path("/usr/share/clamav-testfiles")
RANSOM_RULE = """rule ransom_note {
  strings: $a = "YOUR FILES HAVE BEEN ENCRYPTED" nocase
  condition: $a
}
"""


def _tree(root: Path) -> Path:
    """A small restored system: clean files, EICAR in /tmp, a ransom note in /home."""
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("web\n")
    (root / "srv" / "app").mkdir(parents=True)
    (root / "srv" / "app" / "VERSION").write_text("order-service 2026.11\n")
    (root / "tmp").mkdir()
    (root / "tmp" / "eicar.com").write_bytes(EICAR)
    (root / "home" / "ada").mkdir(parents=True)
    (root / "home" / "ada" / "README_RESTORE.txt").write_text(
        "Your files have been encrypted. Pay 2 BTC.\n")
    return root


def _database(folder: Path, *samples: Path) -> Path:
    """A ClamAV database of MD5 signatures made from sample files (sigtool --md5)."""
    folder.mkdir()
    lines = []
    for n, sample in enumerate(samples):
        md5 = hashlib.md5(sample.read_bytes()).hexdigest()  # noqa: S324 - ClamAV's .hdb format
        lines.append(f"{md5}:{sample.stat().st_size}:Test.Sample{n}\n")
    (folder / "local.hdb").write_text("".join(lines))
    return folder


@pytest.fixture(autouse=True)
def _needs_clamscan() -> None:
    if shutil.which("clamscan") is None:
        pytest.fail("clamscan missing: scripts/setup installs ClamAV")


def test_eicar_and_a_clamav_test_sample_are_found_with_a_database_built_here(
    tmp_path: Path,
) -> None:
    root = _tree(tmp_path / "restored")
    sample = TESTFILES / "clam.exe"
    shutil.copy(sample, root / "srv" / "app" / "setup.exe")
    eicar = tmp_path / "eicar"
    eicar.write_bytes(EICAR)
    engine = ClamAV(_database(tmp_path / "db", eicar, sample), 10 * 1024 * 1024)
    report = scan_tree(root, ScanSpec(), [engine])
    found = {(h.path, h.signature) for h in report.hits}
    assert found == {("/tmp/eicar.com", "Test.Sample0.UNOFFICIAL"),
                     ("/srv/app/setup.exe", "Test.Sample1.UNOFFICIAL")}  # fmt: skip
    hit = next(h for h in report.hits if h.path == "/tmp/eicar.com")
    assert (hit.size, hit.sha256, hit.engine) == (len(EICAR), hashlib.sha256(EICAR).hexdigest(),
                                                  "clamav")  # fmt: skip
    assert report.files_scanned == 5
    assert not report.clean
    [db] = report.engines[0]["files"]
    assert (db["file"], db["kind"], db["signatures"]) == ("local.hdb", "local", "2")
    assert report.engines[0]["version"].startswith("ClamAV ")


def test_a_yara_rule_finds_a_planted_ransom_note(tmp_path: Path) -> None:
    root = _tree(tmp_path / "restored")
    rules = tmp_path / "ransom.yar"
    rules.write_text(RANSOM_RULE)
    report = scan_tree(root, ScanSpec(paths=("/home", "/etc")), [Yara([rules])])
    assert [(h.path, h.engine, h.signature) for h in report.hits] == [
        ("/home/ada/README_RESTORE.txt", "yara", "ransom_note")]
    assert report.files_scanned == 2  # only the paths asked for
    assert report.engines[0]["rule_count"] == 1
    assert report.engines[0]["rules"][0]["sha256"] == hashlib.sha256(rules.read_bytes()).hexdigest()


def test_a_clean_tree_reports_what_it_scanned_and_no_hit(tmp_path: Path) -> None:
    root = tmp_path / "restored"
    (root / "etc").mkdir(parents=True)
    for n in range(5):
        (root / "etc" / f"f{n}").write_text(f"clean {n}\n")
    eicar = tmp_path / "eicar"
    eicar.write_bytes(EICAR)
    rules = tmp_path / "ransom.yar"
    rules.write_text(RANSOM_RULE)
    report = scan_tree(root, ScanSpec(), [ClamAV(_database(tmp_path / "db", eicar), 1 << 20),
                                          Yara([rules])])  # fmt: skip
    assert report.clean
    assert report.files_scanned == 5
    assert report.summary() == "0 hits; 5 file(s) scanned (40 bytes)"


def test_every_skipped_file_is_counted_with_its_reason_and_links_are_not_followed(
    tmp_path: Path,
) -> None:
    root = _tree(tmp_path / "restored")
    (root / "var").mkdir()
    (root / "var" / "big.img").write_bytes(b"\0" * 2048)
    (root / "var" / "odd\nname").write_bytes(EICAR)
    (root / "var" / "to-eicar").symlink_to(root / "tmp" / "eicar.com")
    (root / "var" / "outside").symlink_to("/etc")
    eicar = tmp_path / "eicar"
    eicar.write_bytes(EICAR)
    report = scan_tree(root, ScanSpec(max_file_size=1024),
                       [ClamAV(_database(tmp_path / "db", eicar), 1024)])  # fmt: skip
    assert report.skipped == {"larger than max_file_size (1024 bytes)": 1,
                              "name with a line break (no scanner takes it)": 1}  # fmt: skip
    assert [h.path for h in report.hits] == ["/tmp/eicar.com"]  # once: the link not followed
    assert "skipped: 1 larger than max_file_size (1024 bytes)" in report.summary()


def test_a_file_clamscan_cannot_read_is_counted_as_unreadable(tmp_path: Path) -> None:
    root = _tree(tmp_path / "restored")
    eicar = tmp_path / "eicar"
    eicar.write_bytes(EICAR)
    engine = ClamAV(_database(tmp_path / "db", eicar), 1 << 20)
    gone = root / "etc" / "hostname"
    deadline = time.monotonic() + 60
    matched, unreadable = engine.scan([root / "tmp" / "eicar.com", gone.with_name("gone")],
                                      deadline)  # fmt: skip
    assert unreadable == {gone.with_name("gone"): "unreadable"}
    assert list(matched) == [root / "tmp" / "eicar.com"]


def test_a_clamav_limit_is_a_file_scanned_in_part_never_a_hit(tmp_path: Path) -> None:
    """A compressed file unpacks to more than clamscan may scan: --alert-exceeds-max says so
    as a 'Heuristics.Limits.Exceeded' signature, which is no finding (an initramfs failed a
    drill as 'infected' with it)."""
    root = _tree(tmp_path / "restored")
    (root / "boot").mkdir()
    (root / "boot" / "initrd.img").write_bytes(gzip.compress(bytes(8 << 20)))
    eicar = tmp_path / "eicar"
    eicar.write_bytes(EICAR)
    spec = ScanSpec(paths=("/",), max_file_size=1 << 20)
    report = scan_tree(root, spec, [ClamAV(_database(tmp_path / "db", eicar), 1 << 20)])
    assert [h.path for h in report.hits] == ["/tmp/eicar.com"]
    assert report.skipped == {"scanned in part (ClamAV's MaxFileSize limit)": 1}
    assert report.files_scanned == 4  # of 5: the initramfs is not counted as scanned


def test_an_official_database_is_described_by_its_own_header(tmp_path: Path) -> None:
    cvd = tmp_path / "daily.cvd"
    # sigtool writes the build time with a dash, not a colon: 08-38
    header = b"ClamAV-VDB:14 Nov 2025 08-38 -0500:27823:2076544:90:md5:dsig:raynman:1763127480"
    cvd.write_bytes(header.ljust(512, b" ") + b"\x1f\x8b rest")
    described = _describe(cvd)
    assert described["kind"] == "official"
    assert (described["version"], described["built"], described["signatures"],
            described["builder"]) == ("27823", "14 Nov 2025 08-38 -0500", "2076544", "raynman")


def test_no_signatures_and_bad_rules_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="never downloads one"):
        ClamAV(tmp_path / "empty", 1024)
    bad = tmp_path / "bad.yar"
    bad.write_text("rule broken { condition: }\n")
    with pytest.raises(ConfigError, match="YARA rules do not compile"):
        Yara([bad])


def test_the_scan_is_bounded(tmp_path: Path) -> None:
    root = _tree(tmp_path / "restored")
    rules = tmp_path / "ransom.yar"
    rules.write_text(RANSOM_RULE)
    with pytest.raises(PhaseTimeout, match="scan"):
        scan_tree(root, ScanSpec(timeout_s=0), [Yara([rules])])


def test_sigtool_agrees_with_the_database_the_test_builds(tmp_path: Path) -> None:
    """The .hdb lines are what ClamAV's own sigtool writes (MD5:size:name)."""
    eicar = tmp_path / "eicar.com"
    eicar.write_bytes(EICAR)
    own = subprocess.run(["sigtool", "--md5", str(eicar)], capture_output=True, text=True,
                         check=True).stdout.strip()  # fmt: skip
    md5, size, _ = own.split(":")
    assert (md5, int(size)) == (hashlib.md5(EICAR).hexdigest(), len(EICAR))  # noqa: S324


def test_a_folder_the_walk_cannot_list_is_counted_not_passed_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its files are never seen: the report must say a folder was unreadable, or "0 hits"
    would hide files nobody scanned."""
    root = _tree(tmp_path / "restored")
    closed = root / "home" / "ada"
    real = os.scandir

    def scandir(path: Any = ".") -> Any:
        if Path(path) == closed:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    rules = tmp_path / "ransom.yar"
    rules.write_text(RANSOM_RULE)
    report = scan_tree(root, ScanSpec(), [Yara([rules])])
    assert report.skipped == {"unreadable folder (its files not counted)": 1}
    assert report.clean  # the note it holds was never read, and the report says so
    assert "skipped: 1 unreadable folder" in report.summary()
