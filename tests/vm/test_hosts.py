"""Drills spread over two libvirt hosts: this machine and a second host in network and mount
namespaces of its own (``scripts/lab-env.sh``: ``start_second_host``), reached over
``qemu+ssh://`` with its SSH key pinned. Real VMs on both, real SSH through the second host
as jump host, and a host that dies mid-drill."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.vm.conftest import ROOT, Running, assert_backup_untouched, command, run_cli
from tests.vm.test_guest import edited_copy

NAME, ADDRESS, LAB_SIDE = "hv2", "10.250.0.2", "10.250.0.1"
STATE = Path("/var/lib/restore-drill-hosts") / NAME
REMOTE_URI = f"qemu+ssh://root@{ADDRESS}/system?keyfile={STATE}/client_key&no_verify=1"


def _lab_env(call: str) -> None:
    subprocess.run(["bash", "-c", f". scripts/lab-env.sh && {call}"], cwd=ROOT, check=True,
                   timeout=120)  # fmt: skip


@pytest.fixture(scope="module")
def inventory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """This machine and the second host, two drills at a time on each."""
    _lab_env(f"start_second_host {NAME} {ADDRESS} {LAB_SIDE}")
    path = tmp_path_factory.mktemp("hosts") / "hosts.yaml"
    path.write_text(f"""\
hosts:
  - {{name: here, uri: "qemu:///system", slots: 2}}
  - name: {NAME}
    uri: "{REMOTE_URI}"
    known_hosts: {STATE}/known_hosts
    accelerator: tcg   # this machine's KVM cannot boot a guest (docs: LAB-NOTES)
    slots: 2
""")
    yield path
    _lab_env(f"stop_second_host {NAME}")


def _virsh(*args: str) -> list[str]:
    done = subprocess.run(["virsh", "-c", REMOTE_URI, *args], capture_output=True, text=True,
                          timeout=60, check=True)  # fmt: skip
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


def remote_leftovers() -> list[str]:
    """Every lab object, guard or folder restore-drill has on the second host."""
    found = [f"domain {d}" for d in _virsh("list", "--all", "--name") if d.startswith("rdrill")]
    found += [f"network {n}" for n in _virsh("net-list", "--all", "--name")
              if n.startswith("rdrill")]  # fmt: skip
    found += [f"pool {p}" for p in _virsh("pool-list", "--all", "--name")
              if p.startswith("rdrill")]  # fmt: skip
    tables = subprocess.run(["ip", "netns", "exec", f"rdhost-{NAME}", "nft", "list", "tables",
                             "inet"], capture_output=True, text=True, check=True).stdout.split()
    found += [f"host guard {t}" for t in tables if t.startswith("rdrill_")]
    folders = STATE / "lib" / "restore-drill"  # its private /var/lib/libvirt
    found += [f"folder {p}" for p in folders.iterdir()] if folders.exists() else []
    return found


def _scenarios(folder: Path, names: list[str], sources: dict[str, str] | None = None
               ) -> list[str]:  # fmt: skip
    """Demo scenarios under names of their own (one lock and one report each): the web drill,
    or for a name in ``sources`` that demo scenario (its default name replaced)."""
    files = []
    for name in names:
        source = (sources or {}).get(name, "demo-web")
        text = (ROOT / "scenarios" / f"{source}.yaml").read_text()
        path = folder / f"{name}.yaml"
        path.write_text(re.sub(r"^name: .*$", f"name: {name}", text, count=1, flags=re.M))
        files.append(str(path))
    (folder / "tests").mkdir(exist_ok=True)  # the scenarios' testinfra files, by relative path
    for test in (ROOT / "scenarios" / "tests").glob("*.py"):
        (folder / "tests" / test.name).write_text(test.read_text())
    return files


def _placed(stderr: str) -> dict[str, str]:
    return dict(re.findall(r"\[([\w-]+)\] placed on host (\w+)", stderr))


def test_four_drills_on_two_hosts_are_placed_two_and_two_and_pass(
    inventory: Path, reports: Path, tmp_path: Path
) -> None:
    """Two web drills here; on the second host the two-VM shop (a restic and a file-level
    backup, a lab network with its own DNS) and the web site from restic: file-level streams
    and several machines go through the host too."""
    names = ["web-a", "shop-b", "web-c", "files-d"]
    files = _scenarios(tmp_path, names, {"shop-b": "demo-shop", "files-d": "demo-web-files"})
    drill = run_cli("--hosts", str(inventory), "--parallel", "4", *files, reports=reports,
                    timeout=1800)  # fmt: skip
    assert drill.exit_code == 0, drill.stderr
    assert _placed(drill.stderr) == {"web-a": "here", "shop-b": NAME, "web-c": "here",
                                     "files-d": NAME}  # fmt: skip
    assert len(drill.folders) == 4
    for folder in drill.folders:
        report = json.loads((folder / "report.json").read_text())
        assert report["verdict"] == "PASS", report["reason"]
        assert_backup_untouched(report)
        remote = report["scenario"] in ("shop-b", "files-d")
        host = report["environment"].get("lab_host")
        attempts = {a["target"]: a["outcome"] for a in report["isolation"]}
        assert set(attempts.values()) == {"blocked"}, attempts
        if not remote:
            assert host is None
            assert report["environment"]["libvirt_uri"] == "qemu:///system"
            continue
        assert host["name"] == NAME
        assert host["uri"] == REMOTE_URI
        assert host["host_key"].startswith("ssh-ed25519 SHA256:")
        assert host["libvirt"]
        assert host["qemu"]
        assert host["cpu_model"]
        assert report["environment"]["accelerator"] == "tcg"
        # its sshd, its lab address and the controller: each tried from the guest, blocked
        sshd = f"lab host {NAME} {ADDRESS}:22 (its sshd)"  # "web: …" in a lab of several
        assert any(t.endswith(sshd) for t in attempts), attempts
        assert any(f"drill host {LAB_SIDE}:" in t for t in attempts)
        # http checks, the file-level restore streams and its proof went through the host
        assert any(c["kind"] == "http" and c["passed"] for c in report["checks"])
        assert report["data"]
        assert all(p["passed"] for p in report["data"])
        console = (folder / "console.log").read_bytes()
        assert b"login:" in console  # read from the host's file over SSH
    assert remote_leftovers() == []


def test_a_host_whose_libvirtd_dies_mid_drill(inventory: Path, reports: Path,
                                              tmp_path: Path) -> None:  # fmt: skip
    """That drill is an ERROR with a report; the other host's drill passes; once the host
    is back, cleanup removes what the dead drill left there."""
    files = _scenarios(tmp_path, ["web-e", "web-f"])
    run = Running("--hosts", str(inventory), "--parallel", "2", *files, reports=reports)
    run.wait_for("[web-f] boot: VM powered on", timeout=600)
    os.kill(int((STATE / "libvirtd.pid").read_text()), signal.SIGKILL)
    code = run.wait(timeout=900)
    assert code == 3, "".join(run.log)
    found = {f.name.split("_", 1)[1]: f for f in reports.iterdir() if f.is_dir()}
    assert set(found) == {"web-e", "web-f"}
    passed = json.loads((found["web-e"] / "report.json").read_text())
    assert passed["verdict"] == "PASS"
    failed = json.loads((found["web-f"] / "report.json").read_text())
    assert failed["verdict"] == "ERROR"
    assert failed["environment"]["lab_host"]["name"] == NAME
    assert "libvirt" in failed["reason"] or "lease" in failed["reason"], failed["reason"]
    assert failed["backup"]["unchanged"] is True  # proven on the host, whose sshd lives
    # the host comes back; cleanup reaps what the killed drill left on it
    _lab_env(f"start_second_host {NAME} {ADDRESS} {LAB_SIDE}")
    left = remote_leftovers()
    assert any(item.startswith("domain rdrill") for item in left), left
    done = subprocess.run(command("cleanup", "--hosts", str(inventory)), capture_output=True,
                          text=True, timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"on {NAME}" in done.stdout
    # each line names the host once: "removed folder /var/lib/libvirt/restore-drill/… on hv2"
    assert re.search(rf"^removed folder /var/lib/libvirt/restore-drill/\w+ on {NAME}$",
                     done.stdout, re.M), done.stdout  # fmt: skip
    assert f"on {NAME} on {NAME}" not in done.stdout
    assert remote_leftovers() == []


def test_a_disk_image_kept_on_the_second_host_is_proven_there_and_answers_ssh(
    inventory: Path, reports: Path, tmp_path: Path
) -> None:
    only = tmp_path / "only-hv2.yaml"  # the second host alone: the drill goes there
    only.write_text("".join(line for line in inventory.read_text().splitlines(keepends=True)
                            if "name: here" not in line))  # fmt: skip
    files = _scenarios(tmp_path, ["web-k"])
    drill = run_cli("--hosts", str(only), "--keep", *files, reports=reports)
    assert drill.exit_code == 0, drill.stderr
    assert _placed(drill.stderr) == {"web-k": NAME}
    # the disk image QEMU reads on the host: stat and hash taken there; testinfra files
    # reached the guest through the host
    report = drill.report
    assert report["backup"]["details"]["proven on"].startswith(f"host {NAME}, where QEMU")
    assert any(c["kind"] == "testinfra" and c["passed"] for c in report["checks"])
    assert_backup_untouched(report)
    listed = subprocess.run(command("labs"), capture_output=True, text=True, check=True).stdout
    assert re.search(rf"kept\s+web-k on {NAME}", listed), listed
    # OpenSSH through the host (ProxyCommand), both host keys pinned
    done = subprocess.run(command("ssh", "web-k", "--", "cat", "/etc/hostname"),
                          capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "web"
    assert any(item.startswith("domain rdrill") for item in remote_leftovers())
    done = subprocess.run(command("cleanup", "--hosts", str(only)), capture_output=True,
                          text=True, timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert remote_leftovers() == []


def test_key_injection_on_the_second_host(inventory: Path, reports: Path, tmp_path: Path) -> None:
    """A backup production never gave the drill's key: the overlay is prepared here and
    uploaded over the lab's volume on the host; the drill gets in, the backup unchanged."""
    only = tmp_path / "only-hv2.yaml"
    only.write_text("".join(line for line in inventory.read_text().splitlines(keepends=True)
                            if "name: here" not in line))  # fmt: skip
    script = ("rm-f /root/.ssh/authorized_keys\n"
              'write /etc/ssh/sshd_config.d/50-hardening.conf "PermitRootLogin no\\n"\n')
    with edited_copy("web", script) as backup:
        drill = run_cli("--hosts", str(only), str(ROOT / "scenarios" / "demo-web.yaml"),
                        "--var", f"backup={backup}", "--var", "name=web-hardened",
                        "--var", "inject_key=true", reports=reports)  # fmt: skip
        assert drill.exit_code == 0, drill.stderr
        report = drill.report
        assert report["environment"]["lab_host"]["name"] == NAME
        changes = {c["path"] for c in report["guest_changes"]}
        assert "/etc/ssh/restore-drill/authorized_keys" in changes
        assert_backup_untouched(report)
    assert remote_leftovers() == []
