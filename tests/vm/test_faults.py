"""Faults on real VMs: each gives its documented verdict, a report, and leaves nothing."""

from __future__ import annotations

import subprocess
from pathlib import Path

import libvirt
import pytest

from tests.vm.conftest import (
    DEMO,
    ROOT,
    URI,
    Drill,
    Together,
    assert_backup_untouched,
    drills_together,
    leftovers,
    run_cli,
)

FAULTS = ROOT / "tests" / "data" / "faults"
BAD = ROOT / "tests" / "data" / "bad"
TOKEN = "tok-42-sEcReT"


@pytest.fixture(scope="module")
def booted(tmp_path_factory: pytest.TempPathFactory, module_scratch: Path) -> Together[Drill]:
    """The faults that boot a VM, side by side."""
    runs = {
        "hung check": (str(FAULTS / "web-faults.yaml"),),
        "dead sshd": (str(FAULTS / "web-dead-sshd.yaml"), "--var",
                      f"backup={dead_sshd_backup(module_scratch)}"),
        "never boots": (str(blank_scenario(module_scratch)),),
        "host key": (str(FAULTS / "web-hostkey.yaml"),),
    }  # fmt: skip
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RESTORE_DRILL_TEST_TOKEN", TOKEN)
        return drills_together(runs, tmp_path_factory.mktemp("faults"))


def test_hung_check_leaky_lab_and_secret(booted: Together[Drill]) -> None:
    drill = booted["hung check"]
    assert drill.exit_code == 1, drill.stderr
    report = drill.report
    assert report["verdict"] == "FAIL"
    checks = {c["name"]: c for c in report["checks"]}
    hung = checks["a check that hangs"]
    assert not hung["passed"]
    assert hung["observed"] == "no answer within 3s (timed out)"
    assert hung["duration_s"] < 10
    assert checks["the token reaches the guest"]["passed"]  # the secret was really used
    assert checks["nginx is running"]["passed"]  # later checks still ran
    assert checks["a bare port means any address"]["passed"]
    assert checks["a bare port means any address"]["observed"] == (
        "listening on 127.0.0.1:8081, [::1]:8081")
    explicit = checks["an explicit address means that address"]
    assert not explicit["passed"]
    assert explicit["observed"] == (
        "not listening on 0.0.0.0:8081; listening on 127.0.0.1:8081, [::1]:8081 only")
    assert checks["contains is an extended regular expression"]["passed"]
    assert checks["a command as another user runs from /"]["passed"]
    assert "could not change directory" not in checks["a command as another user runs from /"][
        "output"]
    skipped = checks["test_skipped::test_database"]
    assert (skipped["passed"], skipped["skipped"]) == (False, True)
    assert checks["test_skipped::test_os_release"]["passed"]
    assert "1/2 passed, 1 skipped" in next(p["detail"] for p in report["phases"]
                                             if p["name"] == "testinfra")
    assert "1 skipped" in drill.file("report.html")
    assert report["reason"].startswith("the lab is not isolated: 127.0.0.1:22 connected")
    outcomes = {a["target"]: a["outcome"] for a in report["isolation"]}
    assert outcomes["127.0.0.1:22"] == "connected"
    assert outcomes["192.0.2.1:443"] == "blocked"
    assert [p["status"] for p in report["phases"] if p["name"] == "isolation"] == ["failed"]
    for file in drill.folders[0].iterdir():
        assert TOKEN not in file.read_text(errors="replace"), file.name
    assert TOKEN not in drill.stderr
    assert "********" in drill.file("scenario.yaml")
    assert_backup_untouched(report)


def dead_sshd_backup(scratch: Path) -> Path:
    """A real dead sshd: a copy of the web backup with ssh.service masked."""
    backup = scratch / "web-dead-sshd.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(DEMO / "web.qcow2"), str(backup)],
                   check=True)  # fmt: skip
    loop = subprocess.run(["losetup", "-f", "--show", "-o", "1048576", str(backup)],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    mnt = scratch / "mnt"
    mnt.mkdir()
    try:
        subprocess.run(["mount", loop, str(mnt)], check=True)
        (mnt / "etc/systemd/system/ssh.service").symlink_to("/dev/null")
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
        subprocess.run(["losetup", "-d", loop], check=True)
    backup.chmod(0o644)
    return backup


def test_dead_sshd_is_a_bounded_fail_at_ssh(booted: Together[Drill]) -> None:
    drill = booted["dead sshd"]
    assert drill.exit_code == 1, drill.stderr
    report = drill.report
    assert report["reason"].startswith("ssh: no SSH login within 20s")
    ssh = next(p for p in report["phases"] if p["name"] == "ssh")
    assert ssh["status"] == "timeout"
    assert 20 <= ssh["duration_s"] < 35
    assert "Debian GNU/Linux 12" in drill.file("console.log")  # it did boot: evidence says so
    # and its screen when SSH gave up: the only screenshot (none at the lease any more)
    assert [(s["when"], s["file"]) for s in report["screens"]] == [
        ("ssh timed out", "screen-timeout.png")]  # fmt: skip
    assert_backup_untouched(report)


def blank_scenario(scratch: Path) -> Path:
    """A backup that is readable but holds no boot loader: the bounded lease wait must end."""
    backup = scratch / "blank.raw"
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(backup), "64M"], check=True)
    backup.chmod(0o644)
    scenario = scratch / "blank.yaml"
    scenario.write_text(
        "version: 1\nname: fault-no-boot\nbackup: {path: blank.raw, format: raw}\n"
        "targets: {rto: 15m, rpo: 1d}\nvm: {memory: 256MiB, boot_timeout: 15s}\n"
        f"login: {{user: root, key_file: {DEMO / 'demo_ed25519'}}}\n"
    )
    return scenario


def test_disk_that_never_boots_never_gets_a_lease(booted: Together[Drill]) -> None:
    drill = booted["never boots"]
    assert drill.exit_code == 1, drill.stderr
    report = drill.report
    assert report["reason"].startswith("boot: no DHCP lease within 15s: no frame at all from "
                                       "the guest's NIC")  # fmt: skip
    assert "DHCP (its configuration could not be read: " in report["lab"]["addressing"][
        "machines"][0]["found"]  # a blank disk: nothing to read, DHCP as ever
    assert report["backup"]["format"] == "raw"
    assert_backup_untouched(report)


def test_bad_input_creates_no_libvirt_object(tmp_path: Path) -> None:
    """Every malformed scenario is refused before libvirt is asked for anything."""

    def inventory() -> tuple[list[str], list[str]]:  # every domain and network, ours or not
        conn = libvirt.open(URI)
        try:
            return (sorted(d.name() for d in conn.listAllDomains()),
                    sorted(n.name() for n in conn.listAllNetworks()))  # fmt: skip
        finally:
            conn.close()

    before = inventory()
    for file in sorted(BAD.glob("*.yaml")):
        reports = tmp_path / file.stem
        drill = run_cli(str(file), "--connect", URI, reports=reports, timeout=60)
        assert drill.exit_code == 2, f"{file.name}: {drill.stderr}"
        assert not reports.exists(), file.name
    assert inventory() == before
    assert leftovers() == []


def test_a_reconnect_accepts_the_pinned_host_key_only(booted: Together[Drill]) -> None:
    """A connection that drops during a round of checks is made again once, and only with the
    pinned host key: a guest whose host key changed fails its checks saying so (testinfra's
    own reconnection would have accepted any key)."""
    drill = booted["host key"]
    assert drill.exit_code == 1, drill.stderr
    report = drill.report
    fingerprint = report["lab"]["host_key"]["fingerprint"]
    for check in report["checks"]:  # the round the drop cut short, asked again: refused
        assert not check["passed"]
        assert "cannot reconnect" in check["observed"], check
        assert f"changed: expected {fingerprint}" in check["observed"]
    assert len(report["checks"]) == 2
    # the isolation probe reconnects pinned too: it says the key changed, not that the
    # connection was gone, after the checks that failed first
    assert report["reason"].startswith("check "), report["reason"]
    isolation = next(p for p in report["phases"] if p["name"] == "isolation")
    assert isolation["status"] == "failed"
    assert f"changed: expected {fingerprint}" in report["reason"].split("; isolation: ")[1]
    assert_backup_untouched(report)


def test_a_backup_qemu_cannot_read_fails_at_verify_with_the_exact_fix(
    reports: Path, scratch: Path
) -> None:
    """QEMU runs as libvirt-qemu: a backup in a folder closed to it, or a file only its owner
    may read, is found before anything is created, with the command that fixes it; the
    command given does fix it."""
    from harness.lab.access import unreadable

    closed = scratch / "closed"
    closed.mkdir(mode=0o700)
    backup = closed / "web.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(backup), "64M"], check=True)
    backup.chmod(0o600)
    scenario = scratch / "closed.yaml"
    scenario.write_text(
        f"version: 1\nname: fault-closed\nbackup: {{path: {backup}}}\n"
        "targets: {rto: 15m, rpo: 1d}\nvm: {memory: 256MiB}\n"
        f"login: {{user: root, key_file: {DEMO / 'demo_ed25519'}}}\n"
    )
    drill = run_cli(str(scenario), reports=reports, timeout=120)
    assert drill.exit_code == 1, drill.stderr
    report = drill.report
    assert report["reason"] == (
        f"verify: QEMU's user libvirt-qemu cannot open {backup}: the folder {closed} is closed "
        f"to it; fix: setfacl -m u:libvirt-qemu:x {closed} (and every folder above {backup} "
        "it cannot enter)")
    assert [p["name"] for p in report["phases"]] == ["verify"]  # nothing created, no boot
    subprocess.run(["setfacl", "-m", "u:libvirt-qemu:x", str(closed)], check=True)
    [problem] = unreadable([backup], URI)
    assert problem == (f"QEMU's user libvirt-qemu cannot read {backup}; fix: "
                       f"setfacl -m u:libvirt-qemu:r {backup}")  # fmt: skip
    subprocess.run(["setfacl", "-m", "u:libvirt-qemu:r", str(backup)], check=True)
    assert unreadable([backup], URI) == []
    assert backup.stat().st_mode & 0o777 == 0o640  # an ACL mask shows in the group bits
