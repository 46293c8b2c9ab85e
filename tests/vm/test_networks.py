"""Servers that keep their production addresses: the lab replicates their subnet in a
namespace of its own, so static servers boot, answer and talk to each other by production IP,
two labs of one subnet run side by side, and the drill host never holds a production address.
"""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path
from typing import Any

from tests.vm import images
from tests.vm.conftest import ROOT, assert_backup_untouched, command, in_lab_ssh, run_cli

DB_IP = images.DB_IP
HOST_IP = "10.250.99.1"  # stands for the drill host's own LAN address


def _scenario(folder: Path, source: str, name: str, replace: dict[str, str]) -> Path:
    """A copy of a demo scenario in ``folder``, with ``replace`` applied (and its testinfra
    files named where they are)."""
    text = (ROOT / "scenarios" / source).read_text()
    text = text.replace("- tests/", f"- {ROOT / 'scenarios' / 'tests'}/")
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


def _by_name(folders: list[Path]) -> dict[str, dict[str, Any]]:
    reports = [json.loads((f / "report.json").read_text()) for f in folders]
    return {r["scenario"]: r for r in reports}


def _sample_host_addresses(stop: threading.Event, seen: list[str]) -> None:
    while not stop.wait(1.0):
        seen.append(subprocess.run(["ip", "-4", "-o", "address", "show"], capture_output=True,
                                   text=True, check=True).stdout)  # fmt: skip


def test_static_servers_keep_their_address_two_labs_of_one_subnet_side_by_side(
    reports: Path, scratch: Path
) -> None:
    """The demo db with a static address passes with its own scenario (only the backup
    named), twice at once with the same address; a server whose address is on ens18, a name
    its lab NIC does not have, fails saying so. The drill host never holds 192.168.10.x."""
    db, ens18 = images.db_static(), images.web_ens18()
    db_path, web_path = 'default(demo ~ "/db.qcow2")', 'default(demo ~ "/web.qcow2")'
    a = _scenario(scratch, "demo-db.yaml", "a", {'default("demo-db")': 'default("static-a")',
                                                 db_path: f'default("{db}")'})
    b = _scenario(scratch, "demo-db.yaml", "b", {'default("demo-db")': 'default("static-b")',
                                                 db_path: f'default("{db}")'})
    c = _scenario(scratch, "demo-web.yaml", "c", {'default("demo-web")': 'default("ens18")',
                                                  web_path: f'default("{ens18}")',
                                                  "boot_timeout: 5m": "boot_timeout: 90s"})
    stop, samples = threading.Event(), []
    sampler = threading.Thread(target=_sample_host_addresses, args=(stop, samples), daemon=True)
    # the drill host's own LAN address (here it has none but loopback): the probe must try it
    subprocess.run(["ip", "link", "add", "rdtest0", "type", "veth", "peer", "name", "rdtest1"],
                   check=True)  # (no dummy module here)
    subprocess.run(["ip", "address", "add", f"{HOST_IP}/32", "dev", "rdtest0"], check=True)
    sampler.start()
    try:
        drill = run_cli("--parallel", "3", str(a), str(b), str(c), reports=reports)
    finally:
        stop.set()
        sampler.join()
        subprocess.run(["ip", "link", "delete", "rdtest0"], check=True)
    assert drill.exit_code == 1, drill.stderr  # the ens18 server fails, the others pass
    by_name = _by_name(drill.folders)
    for name in ("static-a", "static-b"):
        report = by_name[name]
        assert report["verdict"] == "PASS", report["reason"]
        net = report["lab"]["addressing"]
        assert net["mode"] == "replicated"
        assert net["subnets"] == [{"cidr": "192.168.10.0/24", "gateway": "192.168.10.1",
                                   "found": "the gateway in /etc/network/interfaces"}]
        [machine] = net["machines"]
        assert (machine["ip"], machine["interface"]) == (DB_IP, "eth0")
        assert machine["found"] == "static, on eth0 in /etc/network/interfaces"
        assert report["lab"]["ip"] == DB_IP
        assert all(x["outcome"] == "blocked" for x in report["isolation"])
        assert any(x["target"].startswith("the lab's side 192.168.10.1:")
                   for x in report["isolation"])  # fmt: skip
        # the drill host at its own address, never at one of the lab's (it was, once: the
        # host's addresses were listed from inside the lab namespace)
        host = [x["target"] for x in report["isolation"] if x["target"].startswith("drill host")]
        assert [t.split()[2].split(":")[0] for t in host] == [HOST_IP], host
        assert_backup_untouched(report)
    namespaces = {by_name[n]["lab"]["addressing"]["namespace"] for n in ("static-a", "static-b")}
    assert len(namespaces) == 2
    failed = by_name["ens18"]
    assert failed["verdict"] == "FAIL"
    assert failed["reason"].startswith("boot: 192.168.10.30 never answered on port 22 within 90s")
    assert "no frame at all from the guest's NIC" in failed["reason"]
    assert "on ens18 (static, on ens18 in /etc/network/interfaces)" in failed["reason"]
    assert "no interface of that name seems to exist in the lab" in failed["reason"]
    assert samples, "the host's addresses were never sampled"
    assert not [s for s in samples if "192.168.10." in s]


def test_an_application_whose_web_server_names_the_database_by_production_ip(
    reports: Path, scratch: Path
) -> None:
    """The demo shop with its database on a static address and its web server on DHCP, the
    order page asking the database at its production IP (no name): the database keeps its
    address, the web server gets a lease in the replicated subnet from the lab's own DHCP,
    and the page reads the restored database; the lab's DNS answers production names."""
    db, web = images.db_static(), images.web_dhcp_shop()
    scenario = _scenario(scratch, "demo-shop.yaml", "shop", {
        "{{ demo }}/web.qcow2": str(web), "{{ demo }}/db.qcow2": str(db)})  # fmt: skip
    with scenario.open("a") as more:  # the lab's DNS, as the lab's DHCP told the web server
        more.write("  - name: the lab's DNS answers the production name\n"
                   "    machine: web\n    command: getent hosts db.shop.internal\n"
                   f"    stdout_contains: \"{DB_IP}\"\n")  # fmt: skip
    drill = run_cli(str(scenario), "--keep", reports=reports)
    try:
        report = drill.report
        assert report["verdict"] == "PASS", report["reason"]
        # the kept lab is reachable afterwards, from a process of its own, by production IP
        said = in_lab_ssh(report["lab"]["lab_id"], "web", "ip", "-4", "-o", "address", "show")
        assert "192.168.10.254/24" in said.stdout
    finally:
        cleanup = subprocess.run(command("cleanup"), capture_output=True, text=True, check=True)
    assert f"network namespace rdrill-{report['lab']['lab_id']}" in cleanup.stdout
    machines = {m["machine"]: m for m in report["lab"]["addressing"]["machines"]}
    assert machines["db"]["ip"] == DB_IP
    assert (machines["web"]["ip"], machines["web"]["dhcp"]) == ("192.168.10.254", True)
    assert machines["web"]["found"] == ("DHCP, on eth0 in /etc/network/interfaces (inet dhcp): "
                                        "the lab's DHCP gives it 192.168.10.254")  # fmt: skip
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["the web server's order page reads the restored database"]["passed"]
    assert checks["the lab's DNS answers the production name"]["passed"]
    assert report["lab"]["addressing"]["nameservers"] == [
        {"address": "10.255.255.53", "found": "named in /etc/resolv.conf"}]
    assert all(x["outcome"] == "blocked" for x in report["isolation"])


def test_a_static_server_whose_gateway_is_not_the_first_address(reports: Path) -> None:
    """Gateway 192.168.20.254: the lab's side takes that address, the http check (opened in
    the lab namespace) and every other check pass."""
    web = images.web_gw254()
    drill = run_cli(str(ROOT / "scenarios" / "demo-web.yaml"), "--var", f"backup={web}",
                    reports=reports)  # fmt: skip
    report = drill.report
    assert report["verdict"] == "PASS", report["reason"]
    [subnet] = report["lab"]["addressing"]["subnets"]
    assert (subnet["cidr"], subnet["gateway"]) == ("192.168.20.0/24", "192.168.20.254")
    assert any(c["kind"] == "http" and c["passed"] for c in report["checks"])
