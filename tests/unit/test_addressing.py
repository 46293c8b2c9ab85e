"""Each machine's lab address and the subnets a lab replicates, from what the scenario states
and what each machine's own network configuration says."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import PhaseFailed
from harness.guest.netconf import detect
from harness.lab.addressing import MachineNet, plan
from harness.lab.netns import guard_rules

STATIC = ("auto eth0\niface eth0 inet static\n address {address}\n gateway {gateway}\n"
          "{more}")  # fmt: skip


def _config(address: str, gateway: str = "192.168.10.1", more: str = "") -> MachineNet:
    files = {"/etc/network/interfaces": STATIC.format(address=address, gateway=gateway,
                                                      more=more)}  # fmt: skip
    return MachineNet("m", None, detect(files))


def test_dhcp_machines_make_a_plain_lab() -> None:
    dhcp = detect({"/etc/network/interfaces": "auto eth0\niface eth0 inet dhcp\n"})
    addressing = plan([MachineNet("web", None, dhcp), MachineNet("db", None, None, "not read")])
    assert not addressing.replicated
    assert [(m.ip, m.found) for m in addressing.machines] == [
        (None, "DHCP, on eth0 in /etc/network/interfaces (inet dhcp)"),
        (None, "DHCP (not read)"),
    ]


def test_a_static_machine_keeps_its_address_and_the_lab_takes_its_gateway() -> None:
    addressing = plan([_config("192.168.10.20/24", "192.168.10.254")])
    assert addressing.replicated
    [subnet] = addressing.subnets
    assert (subnet.cidr, subnet.gateway, subnet.lab_address) == (
        "192.168.10.0/24", "192.168.10.254", "192.168.10.254/24")
    assert subnet.found == "the gateway in /etc/network/interfaces"
    [machine] = addressing.machines
    assert (machine.ip, machine.interface, machine.dhcp) == ("192.168.10.20", "eth0", False)


def test_no_gateway_configured_takes_the_first_free_address() -> None:
    files = {"/etc/network/interfaces": "auto eth0\niface eth0 inet static\n address 10.0.0.1/29\n"}
    addressing = plan([MachineNet("m", None, detect(files))])
    assert addressing.subnets[0].gateway == "10.0.0.2"
    assert addressing.subnets[0].found == "no gateway configured: the first free address"


def test_a_dhcp_machine_beside_a_static_one_gets_a_fixed_lease_in_the_subnet() -> None:
    dhcp = detect({"/etc/network/interfaces": "auto eth0\niface eth0 inet dhcp\n"})
    addressing = plan([_config("192.168.10.20/24"), MachineNet("web", None, dhcp)])
    web = addressing.of("web")
    assert (web.ip, web.cidr, web.dhcp) == ("192.168.10.254", "192.168.10.254/24", True)
    assert web.found.endswith("the lab's DHCP gives it 192.168.10.254")


def test_stated_addresses_and_subnets_win_over_detection() -> None:
    addressing = plan([MachineNet("db", "172.16.5.9/16", None)],
                      [("172.16.0.0/16", "172.16.0.254")])  # fmt: skip
    assert addressing.subnets[0].gateway == "172.16.0.254"
    assert addressing.subnets[0].found == "stated in the scenario"
    assert addressing.of("db").found == "stated in the scenario"


def test_second_interface_and_ipv6_are_reported_not_replicated() -> None:
    more = ("iface eth0 inet6 static\n address 2001:db8::5/64\n"
            "auto eth1\niface eth1 inet static\n address 10.9.0.5/24\n")  # fmt: skip
    [machine] = plan([_config("192.168.10.20/24", more=more)]).machines
    assert machine.ip == "192.168.10.20"
    assert "10.9.0.5/24 on eth1: not in the lab (one NIC)" in machine.notes
    assert any(n.startswith("IPv6 2001:db8::5/64 on eth0") for n in machine.notes)


def test_a_bond_only_server_cannot_come_up_and_says_why() -> None:
    files = {"/etc/network/interfaces": (
        "auto bond0\niface bond0 inet static\n address 10.1.1.5/24\n bond-slaves eth0 eth1\n")}
    with pytest.raises(PhaseFailed) as failed:
        plan([MachineNet("db", None, detect(files))])
    assert failed.value.phase == "network"
    assert "bond0 (/etc/network/interfaces): a bond" in str(failed.value)


def test_a_gateway_that_is_a_machine_address_is_refused() -> None:
    with pytest.raises(PhaseFailed, match="which is db's address"):
        plan([MachineNet("db", "10.5.0.1/24", None)], [("10.5.0.0/24", "10.5.0.1")])


def test_the_lab_namespace_rejects_guest_connections_and_forwards_nothing() -> None:
    rules = guard_rules("abcd1234", dhcp=False, dns=True)
    assert 'iifname "rdlabcd1234" udp dport 53 accept' in rules
    assert "dport 67" not in rules
    assert 'iifname "rdlabcd1234" meta l4proto tcp reject with tcp reset' in rules
    assert 'iifname "rdlabcd1234" reject with icmpx type admin-prohibited' in rules
    assert "type filter hook forward priority -10; policy drop;" in rules


def test_the_resolvers_static_servers_name_are_served_by_the_lab() -> None:
    web = _config("192.168.10.20/24", more=" dns-nameservers 192.168.10.53 192.168.10.21\n")
    db = MachineNet("db", "192.168.10.21/24", None)
    addressing = plan([web, db])
    # the second resolver is the db machine itself: it answers for itself, not the lab
    assert addressing.nameservers == (("192.168.10.53", "/etc/network/interfaces"),)


def test_without_libguestfs_a_drill_still_runs_with_dhcp_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.guest import appliance, network

    monkeypatch.setattr(appliance, "SYSTEM_PYTHON", str(tmp_path / "no-python"))
    disk = tmp_path / "d.qcow2"
    disk.write_bytes(b"")
    reading = network.read_config([(disk, "qcow2")], [disk], True, tmp_path / "cache")
    config, why = reading.config, reading.why
    assert config is None
    assert why.startswith("its configuration was not read: ")
    assert "libguestfs needs the system's Python" in why
    [machine] = plan([MachineNet("m", None, None, why)]).machines
    assert machine.found == f"DHCP ({why})"


def test_a_detection_is_kept_per_backup_and_read_again_when_the_backup_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.guest import appliance, network

    calls: list[dict[str, object]] = []

    def inspect(request: dict[str, object], phase: str) -> dict[str, object]:
        calls.append(request)
        return {"network_files": {"/etc/network/interfaces": STATIC.format(
            address="10.1.2.3/24", gateway="10.1.2.1", more="")},
            "system": {"filesystems": {"/": "/dev/sda1", "/boot": "/dev/sda2"}}}

    monkeypatch.setattr(appliance, "call", inspect)
    disk = tmp_path / "d.qcow2"
    disk.write_bytes(b"one")
    first = network.read_config([(disk, "qcow2")], [disk], True, tmp_path / "cache")
    again = network.read_config([(disk, "qcow2")], [disk], True, tmp_path / "cache")
    assert first == again
    assert first.config is not None
    assert [a.cidr for a in first.config.addresses] == ["10.1.2.3/24"]
    assert again.mounts == {"/": "/dev/sda1", "/boot": "/dev/sda2"}  # kept for key injection
    assert len(calls) == 1  # the second answer came from the cache
    disk.write_bytes(b"two")  # a new backup at the same path
    network.read_config([(disk, "qcow2")], [disk], True, tmp_path / "cache")
    assert len(calls) == 2
    cached = next((tmp_path / "cache").iterdir()).read_text()
    assert "iface eth0" not in cached  # only the parsed result is kept, never the files


def test_the_detection_cache_forgets_what_no_drill_read_for_30_days(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every nightly backup is a new entry: without pruning the cache grows by one a night
    for ever. An entry read stays; one nobody read for 30 days, another version's, and a
    killed writer's temporary file go when the next entry is written."""
    import os
    import time

    from harness.guest import appliance, network

    monkeypatch.setattr(appliance, "call", lambda request, phase: {"network_files": {}})
    cache = tmp_path / "cache"
    disks = []
    for name in ("used", "fresh", "new"):
        disk = tmp_path / f"{name}.qcow2"
        disk.write_bytes(name.encode())
        disks.append(disk)
    used, fresh, new = disks
    network.read_config([(used, "qcow2")], [used], True, cache)
    network.read_config([(fresh, "qcow2")], [fresh], True, cache)
    month = time.time() - 31 * 86400
    for entry in cache.iterdir():
        os.utime(entry, (month, month))
    (cache / "0123.4242.tmp").write_text("{}")
    (cache / "old-version.json").write_text('{"version": 3}')
    for leftover in ("0123.4242.tmp", "old-version.json"):
        os.utime(cache / leftover, (month, month))
    network.read_config([(used, "qcow2")], [used], True, cache)  # read again: kept
    network.read_config([(new, "qcow2")], [new], True, cache)  # written: prunes
    kept = {p.name for p in cache.iterdir()}
    assert kept == {f"{network._key([used])}.json", f"{network._key([new])}.json"}
