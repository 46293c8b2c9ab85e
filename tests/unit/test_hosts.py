"""The host inventory (every problem located, exit 2) and placement over many fake hosts,
each one of libvirt's test drivers with a node of its own size."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import InfraError, ScenarioError
from harness.hosts.inventory import HostSpec, load_inventory
from harness.hosts.placement import Placement, needs_local
from harness.lab.hypervisor import Hypervisor
from harness.scenario.loader import load_scenario


def _inventory(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hosts.yaml"
    path.write_text(text)
    return path


def test_an_inventory_is_read_with_its_defaults_and_ssh_accounts(tmp_path: Path) -> None:
    path = _inventory(tmp_path, """\
hosts:
  - {name: hv1, uri: "qemu+ssh://root@hv1.example/system", slots: 3}
  - name: hv2
    uri: "qemu+libssh://drills@hv2.example:2222/system?keyfile=/etc/rd/hv.key"
    memory: 96GiB
    reserve: 2GiB
    known_hosts: /etc/rd/known_hosts
    paths: {/srv/backup: /mnt/backup, /srv/backup/pg: /mnt/pg/}
  - {name: here, uri: "qemu:///system"}
""")
    inv = load_inventory(path)
    hv1, hv2, here = inv.hosts
    assert (hv1.slots, hv1.memory_mib, hv1.reserve_mib) == (3, None, 1024)
    assert hv1.ssh is not None
    assert (hv1.ssh.user, hv1.ssh.hostname, hv1.ssh.port) == (
        "root", "hv1.example", 22)
    assert hv2.ssh is not None
    assert hv2.ssh.port == 2222
    assert hv2.ssh.user == "drills"
    assert hv2.ssh.key_file == Path("/etc/rd/hv.key")
    assert hv2.ssh.known_hosts == Path("/etc/rd/known_hosts")
    assert (hv2.memory_mib, hv2.reserve_mib, hv2.slots) == (96 * 1024, 2048, 2)
    assert not here.remote
    assert here.ssh is None
    # the longest mapped prefix wins; a path outside every prefix is the same there
    assert hv2.host_path(Path("/srv/backup/web.qcow2")) == Path("/mnt/backup/web.qcow2")
    assert hv2.host_path(Path("/srv/backup/pg/repo")) == Path("/mnt/pg/repo")
    assert hv2.host_path(Path("/srv/backupX/a")) == Path("/srv/backupX/a")
    assert hv2.host_path(Path("/srv/backup")) == Path("/mnt/backup")
    assert inv.named("hv2") is hv2


@pytest.mark.parametrize(("text", "line", "field", "words"), [
    ("hosts: []\n", 1, "hosts", "at least 1"),
    ("hosts:\n  - {name: hv1}\n", 2, "hosts[0]", "uri"),
    ("hosts:\n  - {name: hv1, uri: 'qemu+ssh://h/system', slots: 0}\n", 2, "hosts[0].slots",
     "at least 1"),
    ("hosts:\n  - {name: HV, uri: 'qemu:///system'}\n", 2, "hosts[0].name", "expected form"),
    ("hosts:\n  - {name: a, uri: 'qemu:///system'}\n  - {name: a, uri: 'qemu:///system'}\n",
     3, "hosts[1].name", "already the name of host 1"),
    ("hosts:\n  - name: a\n    uri: 'qemu+tcp://h/system'\n", 3, "hosts[0].uri", "qemu+ssh://"),
    ("hosts:\n  - name: a\n    uri: 'qemu+ssh:///system'\n", 3, "hosts[0].uri", "host name"),
    ("hosts:\n  - name: a\n    uri: 'qemu+ssh://h/system?keyfile=k'\n", 3, "hosts[0].uri",
     "absolute"),
    ("hosts:\n  - name: a\n    uri: 'qemu:///system'\n    memory: lots\n", 4, "hosts[0].memory",
     "not a size"),
    ("hosts:\n  - name: a\n    uri: 'qemu:///system'\n    paths: {srv: /x}\n", 4,
     "hosts[0].paths", "srv"),
    ("hosts:\n  - name: a\n    uri: 'qemu:///system'\n    known_hosts: /k\n", 4,
     "hosts[0].known_hosts", "remote"),
    ("hosts:\n  - name: a\n    uri: 'qemu:///system'\n    slot: 2\n", 4, "hosts[0].slot",
     "did you mean 'slots'"),
])  # fmt: skip
def test_a_bad_inventory_names_line_and_field(tmp_path: Path, text: str, line: int, field: str,
                                              words: str) -> None:  # fmt: skip
    with pytest.raises(ScenarioError) as caught:
        load_inventory(_inventory(tmp_path, text))
    problem = caught.value.problems[0]
    assert (problem.line, problem.field) == (line, field), str(caught.value)
    assert words in str(caught.value)


def test_run_with_a_bad_inventory_exits_2_before_anything_starts(tmp_path: Path) -> None:
    path = _inventory(tmp_path, "hosts:\n  - {name: a, uri: 'qemu+tcp://h/system'}\n")
    scenario = Path(__file__).parents[2] / "scenarios" / "demo-web.yaml"
    state = tmp_path / "state"
    out = subprocess.run([sys.executable, "-m", "harness", "run", "--hosts", str(path),
                          "--reports", str(tmp_path / "reports"), str(scenario)],
                         capture_output=True, text=True, timeout=30, check=False,
                         env={"PATH": "/usr/bin:/bin", "RESTORE_DRILL_STATE_DIR": str(state)})
    assert out.returncode == 2, out.stderr
    assert f"{path}:2" in out.stderr
    assert "hosts[0].uri" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "reports").exists()
    assert not state.exists()


# -- placement --------------------------------------------------------------------------------


def _node(tmp_path: Path, name: str, mib: int) -> str:
    """A test-driver URI for a fake host with ``mib`` of memory."""
    path = tmp_path / f"{name}.xml"
    path.write_text(f"""<node><cpu><mhz>2000</mhz><model>x86_64</model><nodes>1</nodes>
<sockets>1</sockets><cores>4</cores><threads>1</threads><active>4</active></cpu>
<memory>{mib * 1024}</memory></node>""")
    return f"test://{path}"


def _free(host: HostSpec) -> int:
    """Each fake host's figure, asked of its libvirt test driver as of a real host."""
    if host.uri.endswith("down.xml"):
        raise InfraError(f"cannot connect to libvirt at {host.uri}: gone")
    with Hypervisor(host.uri, timeout_s=5) as hv:
        return hv.free_memory_mib()


def _hosts(tmp_path: Path, sizes: dict[str, int], slots: int = 2) -> list[HostSpec]:
    from harness.hosts.inventory import SshAccess

    ssh = SshAccess("h", 22, "root", None, tmp_path / "kh")
    return [HostSpec(name, _node(tmp_path, name, mib), slots, reserve_mib=1024, ssh=ssh)
            for name, mib in sizes.items()]  # fmt: skip


def test_four_drills_on_two_hosts_are_placed_two_and_two(tmp_path: Path) -> None:
    said: list[str] = []
    placement = Placement(_hosts(tmp_path, {"hv1": 8192, "hv2": 8192}, slots=3), _free,
                          said.append)  # fmt: skip
    got = [placement.place(1280) for _ in range(4)]
    assert [h.name for h in got if h] == ["hv1", "hv2", "hv1", "hv2"]
    assert said == []


def test_placement_is_deterministic_over_many_hosts(tmp_path: Path) -> None:
    sizes = {f"hv{n:02}": 2048 + 1024 * (n % 5) for n in range(40)}
    runs = []
    for _ in range(2):
        placement = Placement(_hosts(tmp_path, sizes), _free, lambda _m: None)
        runs.append([h.name if h else None for h in (placement.place(1500) for _ in range(70))])
    assert runs[0] == runs[1]
    # every host with room for one drill took one before any took a second
    able = sorted(n for n, m in sizes.items() if m - 1024 >= 1500)
    assert sorted(runs[0][: len(able)]) == able  # type: ignore[type-var]


def test_memory_and_slots_bound_each_host(tmp_path: Path) -> None:
    hosts = _hosts(tmp_path, {"small": 3072, "big": 9216})
    placement = Placement(hosts, _free, lambda _m: None)
    # small: 3072 - 1024 = 2048 MiB for drills; big: 8192 MiB, 2 slots
    assert [h.name for h in (placement.place(1800), placement.place(1800))] == ["small", "big"]
    assert placement.place(1800).name == "big"  # type: ignore[union-attr]
    assert placement.place(300) is None  # small has no room for it, big no slot
    assert "small: 1/2 slots, 248 of 2048 MiB free" in placement.waiting_for(1800)
    placement.release(hosts[1], 1800)
    assert placement.place(1800).name == "big"  # type: ignore[union-attr]


def test_a_host_memory_cap_and_a_drill_too_big_for_every_host(tmp_path: Path) -> None:
    hosts = _hosts(tmp_path, {"hv1": 65536, "hv2": 4096})
    hosts[0] = HostSpec(hosts[0].name, hosts[0].uri, 2, memory_mib=2048, ssh=hosts[0].ssh)
    placement = Placement(hosts, _free, lambda _m: None)
    assert placement.never(3100) == ("it needs 3100 MiB and no host has that much for drills "
                                     "(hv1 2048 MiB, hv2 3072 MiB)")  # fmt: skip
    assert placement.never(3072) == ""  # hv2: 4096 - 1024


def test_a_host_that_does_not_answer_is_left_out_and_said(tmp_path: Path) -> None:
    said: list[str] = []
    hosts = _hosts(tmp_path, {"hv1": 8192, "down": 8192})
    placement = Placement(hosts, _free, said.append)
    assert [h.name for h in (placement.place(1000), placement.place(1000)) if h] == ["hv1"] * 2
    assert placement.place(1000) is None
    assert len(said) == 1
    assert said[0].startswith("host down (test://")
    assert "gone" in said[0]
    only_down = Placement(hosts[1:], _free, lambda _m: None)
    assert only_down.never(100) == "no host of the inventory answers"


def test_a_drill_that_needs_this_machine_goes_only_to_a_local_host(tmp_path: Path) -> None:
    remote = _hosts(tmp_path, {"hv1": 8192})
    local = HostSpec("here", _node(tmp_path, "here", 4096), 1)
    placement = Placement([*remote, local], _free, lambda _m: None)
    why = "a whole-system restore"
    assert placement.place(500, local_only=why).name == "here"  # type: ignore[union-attr]
    assert placement.place(500, local_only=why) is None  # its one slot is taken
    assert placement.place(500).name == "hv1"  # type: ignore[union-attr]
    no_local = Placement(remote, _free, lambda _m: None)
    assert "needs this machine's own libvirt (a whole-system restore)" in no_local.never(
        500, "a whole-system restore")


def test_a_scanned_disk_image_needs_this_machine_a_scanned_restic_backup_does_not(
    scenario_dir: Path,
) -> None:
    """The scan reads the restore point on this machine: a disk image is read where it lies,
    so only a local host can run that drill; a file-level one is read from its stream."""
    valid = (scenario_dir / "scenario.yaml").read_text()
    scanned = scenario_dir / "scanned.yaml"
    (scenario_dir / "r.yar").write_text("rule r { condition: false }\n")
    scanned.write_text(valid + "scan:\n  yara: {rules: [r.yar]}\n")
    assert needs_local(load_scenario(scanned)) == ("a malware scan of a disk image (read on "
                                                   "this machine)")  # fmt: skip
    assert needs_local(load_scenario(scenario_dir / "scenario.yaml")) == ""


# -- the pieces of a remote lab that need no host ------------------------------------------------


def test_stat_times_are_read_to_the_nanosecond() -> None:
    from harness.sources.host_identity import _ns

    assert _ns("1796216674.754664653") == 1796216674754664653
    assert _ns("1796216674.75") == 1796216674750000000
    assert _ns("1796216674") == 1796216674000000000


def test_a_backup_s_owner_with_no_name_on_the_host_is_its_number_as_here() -> None:
    """As :func:`harness.sources.identity.identity` names it on this machine, not UNKNOWN."""
    from harness.sources.host_identity import parse_stat

    got = parse_stat("168689664 644 4242 4243 UNKNOWN UNKNOWN 612 65024 1796216674.754664653 "
                     "1796258640.5\n")  # fmt: skip
    assert (got.owner, got.group, got.uid, got.gid) == ("4242", "4243", 4242, 4243)
    assert (got.mode, got.size, got.mtime_ns, got.ctime_ns) == (
        "0o644", 168689664, 1796216674754664653, 1796258640500000000)
    named = parse_stat("1 600 0 0 root root 1 2 3.0 4.0")
    assert (named.owner, named.group) == ("root", "root")


def test_the_probe_tries_the_lab_host_and_the_controller() -> None:
    from harness.checks.isolation import lab_host_targets

    got = lab_host_targets("hv2", "10.213.9.1", ["127.0.0.1", "10.213.9.1", "10.250.0.2"],
                           "10.250.0.1", 40123)  # fmt: skip
    assert got == {
        "lab host hv2 10.213.9.1:22": "10.213.9.1:22",
        "lab host hv2 10.213.9.1:16509": "10.213.9.1:16509",
        "lab host hv2 10.213.9.1:5900": "10.213.9.1:5900",
        "lab host hv2 10.250.0.2:22 (its sshd)": "10.250.0.2:22",
        "drill host 10.250.0.1:40123 (a listener on 0.0.0.0)": "10.250.0.1:40123",
    }


def test_a_kept_remote_lab_is_reached_through_its_host_with_both_keys_pinned() -> None:
    from harness.lab.lifecycle import _proxy
    from harness.remote.jump import Jump

    jump = Jump("hv2", "hv2.example", 2222, "root", "/etc/rd/key with space", "/etc/rd/kh")
    [flag, option] = _proxy(jump)
    assert flag == "-o"
    assert option == ("ProxyCommand=ssh -i '/etc/rd/key with space' -o IdentitiesOnly=yes "
                      "-p 2222 -o UserKnownHostsFile=/etc/rd/kh -o StrictHostKeyChecking=yes "
                      "-W %h:%p root@hv2.example")  # fmt: skip


def test_run_refuses_both_connect_and_hosts(tmp_path: Path) -> None:
    path = _inventory(tmp_path, "hosts:\n  - {name: a, uri: 'qemu:///system'}\n")
    scenario = Path(__file__).parents[2] / "scenarios" / "demo-web.yaml"
    out = subprocess.run([sys.executable, "-m", "harness", "run", "--hosts", str(path),
                          "--connect", "qemu:///system", str(scenario)], capture_output=True,
                         text=True, timeout=30, check=False)  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert "give --connect or --hosts, not both" in out.stderr
