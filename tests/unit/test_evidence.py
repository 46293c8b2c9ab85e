"""The evidence folder: complete, verifiable, escaped, redacted, atomic."""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.errors import InfraError
from harness.evidence.model import (
    BackupEvidence,
    CheckResult,
    PhaseResult,
    RunResult,
    TargetResult,
)
from harness.evidence.writer import write_evidence

SECRET = "s3cr3t-token-value"


def result(verdict: str = "FAIL") -> RunResult:
    return RunResult(
        run_id="", scenario="unit-web", description="<b>bold</b> description",
        scenario_file="/x/s.yaml", started_at="2026-11-23T02:15:00+00:00",
        finished_at="2026-11-23T02:17:00+00:00", verdict=verdict,
        reason="check '<script>alert(1)</script>' failed", exit_code=1,
        rto=TargetResult(900, 98.2, False, "service not verified"),
        rpo=TargetResult(93600, 3600, True, "restore point"),
        phases=[PhaseResult("verify", 0, 0.1, "ok"), PhaseResult("boot", 0.2, 75, "ok")],
        checks=[
            CheckResult("<script>alert(1)</script>", "command", f"`curl -H {SECRET}` exits 0",
                        "exit 1", False, 0.2, f"token was {SECRET}\n<img src=x onerror=alert(2)>"),
            CheckResult("nginx running", "service", "running", "running", True, 0.1),
        ],
        backup=BackupEvidence(kind="disk-image", path="/b/web.qcow2", format="qcow2",
                              sha256="ab" * 32, unchanged=True, unchanged_by="hash"),
        lab={"lab_id": "0badc0de", "network_xml": "<network/>", "domain": "d", "mac": "m",
             "accelerator": "tcg", "ip": "10.213.1.10"},
        environment={"harness": "restore-drill test"},
    )  # fmt: skip


def write(tmp_path: Path, run: RunResult | None = None) -> Path:
    return write_evidence(run or result(), f"token: {SECRET}\n", b"console\n", tmp_path, [SECRET])


def test_folder_is_dated_and_complete(tmp_path: Path) -> None:
    folder = write(tmp_path)
    assert folder.name == "2026-11-23T021500Z_unit-web"
    names = {p.name for p in folder.iterdir()}
    assert names == {"report.json", "junit.xml", "report.html", "console.log", "scenario.yaml",
                     "manifest.sha256"}  # fmt: skip
    again = write(tmp_path)
    assert again.name == "2026-11-23T021500Z_unit-web-2"
    assert not list(tmp_path.glob(".*partial"))


def test_manifest_covers_every_file(tmp_path: Path) -> None:
    folder = write(tmp_path)
    lines = (folder / "manifest.sha256").read_text().splitlines()
    assert len(lines) == 5
    for line in lines:
        digest, name = line.split("  ")
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest


def test_secrets_never_reach_any_file(tmp_path: Path) -> None:
    folder = write(tmp_path)
    for file in folder.iterdir():
        assert SECRET not in file.read_text(), file.name
    assert "********" in (folder / "scenario.yaml").read_text()


def test_html_escapes_hostile_text(tmp_path: Path) -> None:
    html = (write(tmp_path) / "report.html").read_text()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html
    assert "<b>bold</b>" not in html
    assert 'class="banner FAIL"' in html
    assert "default-src 'none'" in html  # CSP: the page can load nothing


def test_json_is_versioned_and_junit_counts_failures(tmp_path: Path) -> None:
    folder = write(tmp_path)
    data = json.loads((folder / "report.json").read_text())
    assert data["schema_version"] == 1
    assert data["run_id"] == folder.name
    suite = ET.parse(folder / "junit.xml").getroot()
    assert suite.get("failures") == "2"  # the failed check and the missed RTO
    assert suite.get("tests") == "7"  # 2 phases, 2 checks, backup, RTO, RPO


def test_unwritable_reports_folder_is_an_infra_error_and_leaves_nothing(tmp_path: Path) -> None:
    blocker = tmp_path / "reports"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(InfraError, match="cannot write the report"):
        write(blocker)


def test_a_broken_view_still_leaves_complete_evidence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(data: object, images: object = None) -> str:
        raise KeyError("controls")

    monkeypatch.setattr("harness.evidence.writer.render_html", broken)
    folder = write(tmp_path)
    page = (folder / "report.html").read_text()
    assert "FAIL: unit-web" in page
    assert "KeyError" in page
    assert json.loads((folder / "report.json").read_text())["verdict"] == "FAIL"
    assert not list(tmp_path.glob(".*partial"))


def test_an_unexpected_error_leaves_no_partial_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(path: Path, content: bytes) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("harness.evidence.writer._write", explode)
    with pytest.raises(RuntimeError):
        write(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_hashing_stops_promptly_when_asked(tmp_path: Path) -> None:
    import threading
    import time

    from harness.sources import HashCancelled
    from harness.sources.identity import sha256_file

    big = tmp_path / "big.raw"
    with big.open("wb") as fh:
        fh.truncate(8 << 30)  # 8 GiB sparse: several seconds to hash in full
    stop = threading.Event()
    stop.set()
    started = time.monotonic()
    with pytest.raises(HashCancelled):
        sha256_file(big, stop)
    assert time.monotonic() - started < 1


def test_every_new_section_renders_in_the_full_page(tmp_path: Path) -> None:
    """Guest changes, a backing chain, the attempts to leave the lab, the host guard and a
    skipped test all render (a template error would leave only the plain fallback page)."""
    from harness.evidence.model import GuestChange, LayerEvidence

    run = result("PASS")
    run.checks.append(CheckResult("t::test_db", "testinfra", "test passes", "skipped: no db",
                                  False, 0.0, skipped=True))  # fmt: skip
    run.guest_changes = [
        GuestChange("main", "/etc/ssh/restore-drill", "added", "holds the key", None,
                    {"mode": "0o755", "uid": 0, "gid": 0, "size": 4096}),
        GuestChange("main", "/etc/ssh/sshd_config", "modified", "settings first",
                    {"mode": "0o644", "uid": 0, "gid": 0, "size": 10, "sha256": "aa" * 32},
                    {"mode": "0o644", "uid": 0, "gid": 0, "size": 99, "sha256": "bb" * 32}),
    ]  # fmt: skip
    run.preparation_s = 40.5  # reading the network configuration too: not the injection's
    run.phases.append(PhaseResult("prepare guest", 0.1, 19.7, "ok"))
    assert run.backup is not None
    run.backup.chain = [LayerEvidence(1, "/b/full.qcow2", "qcow2", sha256="cc" * 32,
                                      sha256_after="cc" * 32, unchanged=True)]  # fmt: skip
    run.isolation = [{"target": "drill host 10.213.1.1:22", "outcome": "blocked",
                      "detail": "No route to host after 0.0s"}]  # fmt: skip
    run.lab.update(gateway="10.213.1.1", host_guard="table inet rdrill_0badc0de {}",
                   security_driver="none")  # fmt: skip
    run.backup.warnings = ["the repository holds backups of 2 hosts (db, web)"]
    run.backup.disks = [BackupEvidence(kind="disk-image", path="/b/data.qcow2", format="qcow2",
                                       unchanged=True, unchanged_by="hash")]  # fmt: skip
    html = (write(tmp_path, run) / "report.html").read_text()
    assert 'class="banner PASS"' in html  # the full page, not the fallback
    assert "the backup CHANGED" not in html
    for text in ("What the drill changed in the lab copy", "/etc/ssh/sshd_config",
                 "the backup itself is unchanged (proof below)", "/b/full.qcow2",
                 "drill host 10.213.1.1:22", "Attempts to leave the lab (1 of 1 blocked)",
                 "1 skipped (not run: proves nothing)", "host guard rules",
                 "Warning: the repository holds backups of 2 hosts (db, web)",
                 "Disk 2 of this server (attached as vdb)", "/b/data.qcow2",
                 "This preparation took 19.7s"):  # fmt: skip
        assert text in html, text


def test_the_guest_changes_section_says_the_backup_changed_when_it_did(tmp_path: Path) -> None:
    """Written after the proof: it must not repeat "unchanged" for a backup that changed."""
    from harness.evidence.model import GuestChange

    run = result()
    run.guest_changes = [GuestChange("main", "/etc/ssh/restore-drill", "added", "key", None,
                                     {"mode": "0o755", "uid": 0, "gid": 0, "size": 4096})]
    assert run.backup is not None
    run.backup.unchanged = False
    html = (write(tmp_path, run) / "report.html").read_text()
    assert "yet the backup CHANGED during the drill" in html
    assert "the backup itself is unchanged" not in html


def test_a_replicated_lab_says_what_it_replicates_and_how_each_address_was_found(
    tmp_path: Path,
) -> None:
    run = result("PASS")
    run.lab.update(gateway="192.168.10.1", host_guard="table inet rdrill_0badc0de {}",
                   addressing={
        "mode": "replicated", "namespace": "rdrill-0badc0de",
        "namespace_guard": 'table inet restore_drill_lab { iifname "rdl0badc0de" reject }',
        "subnets": [{"cidr": "192.168.10.0/24", "gateway": "192.168.10.1",
                     "found": "the gateway in /etc/network/interfaces"}],
        "nameservers": [{"address": "10.255.255.53", "found": "named in /etc/resolv.conf"}],
        "machines": [{"machine": "main", "ip": "192.168.10.21", "cidr": "192.168.10.21/24",
                      "interface": "eth0", "found": "static, on eth0 in /etc/network/interfaces",
                      "dhcp": False, "notes": ["IPv6 2001:db8::5/64 on eth0: detected, not "
                                               "replicated (the lab is IPv4)"]}],
    })  # fmt: skip
    html = (write(tmp_path, run) / "report.html").read_text()
    assert 'class="banner PASS"' in html
    for text in ("The lab replicates production: <code>192.168.10.0/24</code> with the lab's "
                 "side at <code>192.168.10.1</code> (the gateway in /etc/network/interfaces)",
                 "<code>rdrill-0badc0de</code>",
                 "put none of these addresses or routes on the drill host's own",
                 "192.168.10.21/24", "static, on eth0 in /etc/network/interfaces",
                 "IPv6 2001:db8::5/64 on eth0", "every address of this host; the lab bridge "
                 "has none", "lab namespace rules"):  # fmt: skip
        assert text in html, text
    # it serves no DNS here (no name to answer): the nameserver line would not be true
    assert "10.255.255.53" not in html
    assert "DHCP allowed" not in html


def test_the_data_section_shows_the_counts_the_differences_and_the_signature(
    tmp_path: Path,
) -> None:
    from harness.evidence.model import DataProof

    run = result()
    run.data = [
        DataProof("main", "manifest", "/var/www/html", "/b/site.manifest", passed=False,
                  files_expected=3, files_found=2, files_matching=1, bytes_expected=300,
                  bytes_matching=100, missing_count=1, changed_count=1, unexpected_count=1,
                  missing=["assets/logo.png"],
                  changed=[{"path": "index.html", "what": ["content: sha256 aa… → bb…",
                                                           "mode: 0644 → 0600"]}],
                  unexpected=["new<b>.html"], compared=["content", "size", "mode"],
                  manifest_sha256="dd" * 32, manifest_created="2026-12-02T02:00:00+00:00",
                  manifest_host="web1", signer="ed25519:ab",
                  signature="signed by ed25519:ab, the scenario's public key: verified"),
        DataProof("main", "restore stream", "/var/www/html", "the restore stream", passed=True,
                  files_expected=2, files_found=2, files_matching=2, bytes_expected=200,
                  bytes_matching=200, compared=["content", "size"]),
    ]  # fmt: skip
    html = (write(tmp_path, run) / "report.html").read_text()
    assert 'class="banner FAIL"' in html  # the full page, not the fallback
    for text in ("Data (1 of 2 folder(s) as expected)", "/b/site.manifest", "dd" * 32,
                 "with what it must hold: a manifest recorded at backup time, or the files of "
                 "the restore stream, as hashed on the drill host while they passed.",
                 "recorded on web1 at 2026-12-02T02:00:00+00:00",
                 "the scenario&#39;s public key: verified", "Missing (1)", "assets/logo.png",
                 "Changed (1)", "content: sha256 aa… → bb…; mode: 0644 → 0600",
                 "Not expected (1): allowed", "new&lt;b&gt;.html",
                 "<strong>1 identical</strong> (100 bytes)"):  # fmt: skip
        assert text in html, text


def test_the_guest_changes_section_says_where_each_key_was_added(tmp_path: Path) -> None:
    """A lab with a machine rebuilt from a whole-system backup (a bootloader phase) and a
    disk-image machine whose overlay got the key: the overlay's change is said as such, and
    the rebuilt machine is not claimed to have had a key added when it had none."""
    from harness.evidence.model import GuestChange

    run = result()
    run.phases += [PhaseResult("bootloader db", 0.1, 15.0, "ok"),
                   PhaseResult("prepare guest", 0.1, 19.7, "ok")]  # fmt: skip
    run.guest_changes = [GuestChange("web", "/root/.ssh/authorized_keys", "added", "key", None,
                                     {"mode": "0o600", "uid": 0, "gid": 0, "size": 81})]
    html = (write(tmp_path, run) / "report.html").read_text()
    assert "copy-on-write overlay only" in html
    assert "This preparation took 19.7s" in html
    assert "the rescue system added it" not in html
    run.guest_changes.append(GuestChange(
        "db", "/root/.ssh/authorized_keys", "modified",
        "login.inject_key: the drill's key, added by the rescue system to the rebuilt disk after "
        "the restore and its proof", None, {"mode": "600", "uid": 0, "gid": 0, "size": 81}))
    html = (write(tmp_path / "both", run) / "report.html").read_text()
    assert "copy-on-write overlay only" in html
    assert "the rescue system added it to the rebuilt disk" in html
    run.guest_changes.pop(0)  # the rebuilt machine's change alone
    html = (write(tmp_path / "rebuilt", run) / "report.html").read_text()
    assert "copy-on-write overlay only" not in html
    assert "This preparation" not in html
    assert "the rescue system added it to the rebuilt disk" in html


def test_the_host_that_ran_a_remote_lab_is_named_in_the_report(tmp_path: Path) -> None:
    run = result("PASS")
    run.environment["lab_host"] = {"name": "hv2", "uri": "qemu+ssh://root@hv2/system",
                                   "host_key": "ssh-ed25519 SHA256:abc", "cpu_model": "EPYC"}
    html = (write(tmp_path, run) / "report.html").read_text()
    assert "<td>lab host</td><td>name <code>hv2</code>; uri <code>qemu+ssh://root@hv2/system" \
           "</code>; host_key <code>ssh-ed25519 SHA256:abc</code>; cpu_model <code>EPYC</code>" \
           "</td>" in html
