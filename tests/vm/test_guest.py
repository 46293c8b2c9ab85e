"""Drilling a backup as it is: production never had the drill's key, and its sshd forbids
root logins. Key injection into the lab copy (never the backup) lets the drill in; `init`
writes a first scenario that runs as it is. Real VMs, real libvirt, real libguestfs."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import pytest

from tests.vm.conftest import (
    DEMO,
    ROOT,
    Drill,
    Together,
    assert_backup_untouched,
    command,
    run_cli,
)
from tests.vm.images import variant

SCENARIOS = ROOT / "scenarios"
GUESTFS_ENV = {**os.environ, "LIBGUESTFS_BACKEND": "direct",
               "LIBGUESTFS_BACKEND_SETTINGS": "force_tcg"}  # fmt: skip


@contextmanager
def edited_copy(image: str, script: str) -> Iterator[Path]:
    """A copy of a demo backup changed by a guestfish ``script``, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="rdrill-test-", dir="/var/tmp"))
    try:
        folder.chmod(0o755)
        backup = folder / f"{image}-edited.qcow2"
        shutil.copy2(DEMO / f"{image}.qcow2", backup)
        subprocess.run(["guestfish", "--rw", "-a", str(backup), "-i"], input=script, text=True,
                       env=GUESTFS_ENV, check=True, capture_output=True, timeout=600)  # fmt: skip
        yield backup
    finally:
        shutil.rmtree(folder)


@pytest.fixture(scope="module")
def hardened_db() -> Iterator[Path]:
    """A copy of the demo db backup as a hardened production server has it: root has no
    authorized key, and a drop-in forbids root logins."""
    with edited_copy("db", "rm-f /root/.ssh/authorized_keys\n"
                     'write /etc/ssh/sshd_config.d/50-hardening.conf "PermitRootLogin no\\n"\n'
                     ) as backup:  # fmt: skip
        yield backup


PASSWORD = "drill-pw-7Qz"


@pytest.fixture(scope="module")
def password_only_web() -> Iterator[Path]:
    """A copy of the demo web backup whose root has no authorized key but a password, and
    whose sshd allows root to log in with it."""
    with edited_copy("web", "rm-f /root/.ssh/authorized_keys\n"
                     f'sh "echo root:{PASSWORD} | chpasswd && passwd -u root"\n'
                     "write /etc/ssh/sshd_config.d/50-password.conf "
                     '"PermitRootLogin yes\\nPasswordAuthentication yes\\n"\n') as backup:
        yield backup


def password_scenario(folder: Path) -> Path:
    text = (SCENARIOS / "demo-web.yaml").read_text().replace(
        "  timeout: 3m\n", '  timeout: 3m\n  password: {{ secret("WEB_ROOT_PASSWORD") }}\n', 1)
    scenario = folder / "web-password.yaml"
    scenario.write_text(text.split("testinfra:")[0])  # its test wants key-only root logins
    return scenario


def new_user_scenario(folder: Path) -> Path:
    text = (SCENARIOS / "demo-web.yaml").read_text().split("checks:\n")[0]
    text = text.replace("  user: root\n", "  user: drill\n  create_user: true\n", 1)
    text += ("checks:\n  - {name: logged in as drill, command: id -un, stdout_matches: '^drill$'}\n"
             "  - {name: port 80 listens, port: 80}\n"
             "  - {name: order page, http: /, contains: 'order service'}\n")  # fmt: skip
    scenario = folder / "web-new-user.yaml"
    scenario.write_text(text)
    return scenario


def layout_scenario(root: str, folder: Path) -> Path:
    """The demo web scenario with a check of the root file system's type."""
    scenario = (SCENARIOS / "demo-web.yaml").read_text().replace(
        "checks:\n", f"checks:\n  - name: root is {root}\n    command: findmnt -no FSTYPE /\n"
        f"    stdout_matches: '^{FSTYPES[root]}$'\n", 1)
    path = folder / f"web-{root}.yaml"
    path.write_text(scenario.replace("tests/test_web_extra.py",
                                     str(SCENARIOS / "tests" / "test_web_extra.py")))
    return path


FSTYPES = {"xfs": "xfs", "lvm": "ext4"}


@pytest.fixture(scope="module")
def singles(tmp_path_factory: pytest.TempPathFactory, module_scratch: Path, hardened_db: Path,
            password_only_web: Path) -> Together[Drill]:  # fmt: skip
    """This module's one-machine drills, three at a time (one after the other they took
    266 s): the hardened server without and with injection, the server that allows a
    password, a user the backup does not have, both server layouts."""
    folder = tmp_path_factory.mktemp("singles")
    db = str(SCENARIOS / "demo-db.yaml")
    runs = {
        "hardened": (db, "--var", f"backup={hardened_db}", "--var", "name=db-hardened"),
        "injected": (db, "--var", f"backup={hardened_db}", "--var", "name=db-injected",
                     "--var", "inject_key=true"),
        "new-user": (str(new_user_scenario(module_scratch)), "--var", "inject_key=true",
                     "--var", "name=web-new-user"),
        **{root: (str(layout_scenario(root, module_scratch)), "--var", f"backup={variant(root)}",
                  "--var", f"name=web-{root}", "--var", "inject_key=true") for root in FSTYPES},
    }  # fmt: skip
    jobs: dict[str, Callable[[], Drill]] = {
        name: partial(run_cli, *args, reports=folder / name) for name, args in runs.items()
    }
    jobs["password"] = partial(run_cli, str(password_scenario(module_scratch)), "--var",
                               f"backup={password_only_web}", "--var", "name=web-password",
                               reports=folder / "password",
                               env={"WEB_ROOT_PASSWORD": PASSWORD})  # fmt: skip
    return Together(jobs, at_once=3)


def test_without_injection_the_drill_fails_clearly_at_ssh(singles: Together[Drill]) -> None:
    drill = singles["hardened"]
    assert drill.exit_code == 1, drill.stderr
    assert drill.report["reason"].startswith("ssh: root@")
    assert "refused the key" in drill.report["reason"]
    assert_backup_untouched(drill.report)


def test_injection_lets_the_drill_in_and_lists_every_change(singles: Together[Drill]) -> None:
    drill = singles["injected"]
    assert drill.exit_code == 0, drill.stderr
    report = drill.report
    assert report["verdict"] == "PASS"
    changes = {c["path"]: c for c in report["guest_changes"]}
    assert set(changes) == {"/etc/ssh/restore-drill", "/etc/ssh/restore-drill/authorized_keys",
                            "/etc/ssh/sshd_config.d/00-restore-drill.conf"}  # fmt: skip
    assert all(c["action"] == "added" and c["before"] is None for c in changes.values())
    assert changes["/etc/ssh/restore-drill/authorized_keys"]["after"]["mode"] == "0o644"
    assert len(changes["/etc/ssh/sshd_config.d/00-restore-drill.conf"]["after"]["sha256"]) == 64
    [prep] = [p for p in report["phases"] if p["name"] == "prepare guest"]
    assert "the backup is opened read-only" in prep["detail"]
    # drill work before boot: reading the network configuration, then the injection
    [network] = [p for p in report["phases"] if p["name"] == "network"]
    assert prep["duration_s"] > 0
    assert report["preparation_s"] == pytest.approx(prep["duration_s"] + network["duration_s"],
                                                    abs=0.002)  # fmt: skip
    verified = next(p for p in report["phases"] if p["name"] == "checks")
    end = verified["start_s"] + verified["duration_s"]
    assert report["rto"]["measured_s"] == pytest.approx(end - report["preparation_s"], abs=0.2)
    assert "not recovery" in report["rto"]["detail"]
    html = drill.file("report.html")
    assert "What the drill changed in the lab copy" in html
    assert "the backup itself is unchanged (proof below)" in html
    assert_backup_untouched(report)


INITS = {
    "web": ([str(DEMO / "web.qcow2")], {"nginx is running", "nginx listens on 80",
                                        "ssh listens on 22"}),
    "db": ([str(DEMO / "db.qcow2")], {"postgresql answers", "postgresql listens on 5432"}),
    "restic": (["--kind", "restic", str(DEMO / "restic-site"), "--password-file",
                str(DEMO / "restic.pass"), "--base-image", str(DEMO / "web.qcow2"),
                "--host", "web", "--subpath", "/var/www/html"],
               {"restored file 1 is intact", "restored file 2 is intact", "nginx is running"}),
}  # fmt: skip


def init_and_drill(backup: str, scratch: Path, reports: Path
                   ) -> tuple[subprocess.CompletedProcess[str], Drill | None]:  # fmt: skip
    """``restore-drill init`` of a backup, and the drill of the scenario it wrote."""
    init = subprocess.run(command("init", *INITS[backup][0], "--key",
                                  str(scratch / f"drill_{backup}_ed25519")),
                          capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    if init.returncode != 0:
        return init, None
    scenario = scratch / f"{backup}.yaml"
    scenario.write_text(init.stdout)
    return init, run_cli(str(scenario), reports=reports / backup)


@pytest.fixture(scope="module")
def inits(tmp_path_factory: pytest.TempPathFactory, module_scratch: Path
          ) -> Together[tuple[subprocess.CompletedProcess[str], Drill | None]]:  # fmt: skip
    """Each backup's init and drill, side by side."""
    reports = tmp_path_factory.mktemp("inits")
    return Together({b: partial(init_and_drill, b, module_scratch, reports) for b in INITS})


@pytest.mark.parametrize("backup", sorted(INITS))
def test_init_writes_a_first_scenario_that_passes_unedited(
    inits: Together[tuple[subprocess.CompletedProcess[str], Drill | None]], backup: str
) -> None:
    expected = INITS[backup][1]
    init, drill = inits[backup]
    assert init.returncode == 0, init.stderr
    assert "inject_key: true" in init.stdout
    # what the (booted) disk's own network configuration says, read by init too
    assert "# Network: DHCP on eth0 in /etc/network/interfaces (inet dhcp).\n" in init.stdout
    assert drill is not None
    assert drill.exit_code == 0, drill.stderr
    checks = {c["name"]: c for c in drill.report["checks"]}
    assert expected <= set(checks)
    if backup == "restic":  # the restored files carry the backup's own content, in place
        assert "sha256" in checks["restored file 1 is intact"]["expectation"]
        for path in ("/var/www/html/index.html", "/var/www/html/assets/VERSION"):
            assert f'file: "{path}"' in init.stdout  # the site's own place (subpath)
        assert "host: \"web\"" in init.stdout
        assert "warning" not in init.stderr
    assert_backup_untouched(drill.report)


def test_a_server_that_allows_password_login_is_drilled_with_a_secret_password(
    singles: Together[Drill],
) -> None:
    drill = singles["password"]
    assert drill.exit_code == 0, drill.stderr
    assert drill.report["verdict"] == "PASS"
    assert PASSWORD not in drill.stderr
    for file in drill.folders[0].iterdir():
        assert PASSWORD not in file.read_text(errors="replace"), file.name


@pytest.mark.parametrize("root", ["xfs", "lvm"])
def test_injection_works_on_real_server_layouts(singles: Together[Drill], root: str) -> None:
    """Root on XFS beside a separate /boot (and, below, LVM): libguestfs mounts what the
    restored system's fstab says, and the drill's key gets in."""
    drill = singles[root]
    assert drill.exit_code == 0, drill.stderr
    checks = {c["name"]: c for c in drill.report["checks"]}
    assert checks[f"root is {root}"]["passed"]
    assert drill.report["guest_changes"]
    assert_backup_untouched(drill.report)


def test_a_user_the_backup_does_not_have_is_created_in_the_lab_copy(
    singles: Together[Drill],
) -> None:
    drill = singles["new-user"]
    assert drill.exit_code == 0, drill.stderr
    changed = {c["path"]: c["action"] for c in drill.report["guest_changes"]}
    assert changed["/etc/passwd"] == "modified"
    assert not any(path.startswith("/etc/sudoers") for path in changed)  # no sudo to rule
    assert "user drill created; sudo is not installed" in drill.file("report.json")
    assert_backup_untouched(drill.report)
