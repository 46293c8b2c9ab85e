"""Detection of a guest's own network configuration, one format at a time."""

from __future__ import annotations

from harness.guest.netconf import detect


def _statics(files: dict[str, str]) -> list[tuple[str, str, str | None, str]]:
    return [(a.interface, a.cidr, a.gateway, a.source) for a in detect(files).addresses]


def test_ifupdown_static_with_prefix_or_netmask_and_sourced_files() -> None:
    files = {
        "/etc/network/interfaces": (
            "source /etc/network/interfaces.d/*\n"
            "auto lo\niface lo inet loopback\n"
            "auto eth0\niface eth0 inet static\n  address 192.168.10.20/24\n"
            "  gateway 192.168.10.1  # the router\n"
        ),
        "/etc/network/interfaces.d/eth1": (
            "allow-hotplug eth1\niface eth1 inet static\n  address 10.0.5.7\n"
            "  netmask 255.255.0.0\n"
        ),
        "/etc/network/interfaces.d/eth2": "auto eth2\niface eth2 inet dhcp\n",
    }
    assert _statics(files) == [  # in the order ifupdown reads them: sourced files first
        ("eth1", "10.0.5.7/16", None, "/etc/network/interfaces.d/eth1"),
        ("eth0", "192.168.10.20/24", "192.168.10.1", "/etc/network/interfaces"),
    ]
    found = detect(files)
    assert found.dhcp == ("on eth2 in /etc/network/interfaces.d/eth2 (inet dhcp)",)
    assert "/etc/network/interfaces.d/eth1" in found.files


def test_ifupdown_ignores_interfaces_not_brought_up_at_boot() -> None:
    files = {"/etc/network/interfaces": "iface eth0 inet static\n address 192.168.1.5/24\n"}
    assert detect(files).addresses == ()


def test_ifupdown_source_directory_follows_run_parts_names() -> None:
    files = {
        "/etc/network/interfaces": "source-directory interfaces.d\n",
        "/etc/network/interfaces.d/eth0": "auto eth0\niface eth0 inet static\n address 1.2.3.4/8",
        "/etc/network/interfaces.d/old.bak": "auto eth9\niface eth9 inet static\n address 9.9.9.9",
    }
    assert [a.interface for a in detect(files).addresses] == ["eth0"]


def test_ifupdown_ipv6_is_detected_beside_ipv4() -> None:
    files = {"/etc/network/interfaces": (
        "auto eth0\niface eth0 inet static\n address 192.168.10.20/24\n gateway 192.168.10.1\n"
        "iface eth0 inet6 static\n address 2001:db8::20/64\n gateway 2001:db8::1\n"
    )}  # fmt: skip
    found = detect(files)
    assert [a.cidr for a in found.ipv4] == ["192.168.10.20/24"]
    assert [(a.cidr, a.gateway) for a in found.ipv6] == [("2001:db8::20/64", "2001:db8::1")]
    assert "2001:db8::20/64 on eth0 via 2001:db8::1" in found.summary()


def test_ifupdown_bond_and_vlan_are_unsupported_with_a_reason() -> None:
    files = {"/etc/network/interfaces": (
        "auto bond0\niface bond0 inet static\n address 10.1.1.5/24\n bond-slaves eth0 eth1\n"
        "auto eth0.20\niface eth0.20 inet static\n address 10.20.0.5/24\n"
        " vlan-raw-device eth0\n"
    )}  # fmt: skip
    found = detect(files)
    assert found.addresses == ()
    assert len(found.unsupported) == 2
    assert found.unsupported[0].startswith("bond0 (/etc/network/interfaces): a bond;")
    assert "a VLAN" in found.unsupported[1]
    assert "one plain NIC" in found.unsupported[1]


def test_netplan_addresses_routes_and_dhcp_merged_in_file_order() -> None:
    files = {
        "/etc/netplan/01-netcfg.yaml": (
            "network:\n  version: 2\n  ethernets:\n"
            "    ens18:\n      addresses: [192.168.10.20/24, '2001:db8::20/64']\n"
            "      routes:\n        - to: default\n          via: 192.168.10.254\n"
            "    ens19:\n      dhcp4: true\n"
        ),
        "/etc/netplan/99-override.yaml": (
            "network:\n  ethernets:\n    ens18:\n      nameservers: {addresses: [1.1.1.1]}\n"
            "  vlans:\n    vlan10: {id: 10, link: ens18, addresses: [10.10.0.2/24]}\n"
        ),
    }
    found = detect(files)
    assert [(a.interface, a.cidr, a.gateway) for a in found.addresses] == [
        ("ens18", "192.168.10.20/24", "192.168.10.254"),
        ("ens18", "2001:db8::20/64", None),
    ]
    assert found.dhcp == ("on ens19 in /etc/netplan/01-netcfg.yaml (dhcp4)",)
    assert found.unsupported[0].startswith("vlan10 (/etc/netplan/99-override.yaml): a VLAN")


def test_netplan_gateway4_and_set_name() -> None:
    files = {"/etc/netplan/50-cloud-init.yaml": (
        "network:\n  ethernets:\n    nic:\n      match: {macaddress: '52:54:00:12:34:56'}\n"
        "      set-name: eth0\n      addresses: [172.16.4.9/20]\n      gateway4: 172.16.0.1\n"
    )}  # fmt: skip
    assert _statics(files) == [("eth0", "172.16.4.9/20", "172.16.0.1",
                                "/etc/netplan/50-cloud-init.yaml")]  # fmt: skip


def test_networkmanager_keyfile_addresses_with_gateway() -> None:
    files = {
        "/etc/NetworkManager/system-connections/Wired.nmconnection": (
            "[connection]\nid=Wired\ntype=ethernet\ninterface-name=enp1s0\n\n"
            "[ipv4]\nmethod=manual\naddress1=192.168.10.21/24,192.168.10.1\n\n"
            "[ipv6]\nmethod=manual\naddresses=2001:db8::21/64\ngateway=2001:db8::1\n"
        ),
        "/etc/NetworkManager/system-connections/bond.nmconnection": (
            "[connection]\nid=bond0\ntype=bond\ninterface-name=bond0\n"
        ),
        "/etc/NetworkManager/system-connections/dhcp.nmconnection": (
            "[connection]\nid=x\ntype=ethernet\ninterface-name=eth1\n[ipv4]\nmethod=auto\n"
        ),
    }
    found = detect(files)
    path = "/etc/NetworkManager/system-connections/Wired.nmconnection"
    assert _statics(files) == [
        ("enp1s0", "192.168.10.21/24", "192.168.10.1", path),
        ("enp1s0", "2001:db8::21/64", "2001:db8::1", path),
    ]
    assert found.unsupported[0].startswith("bond0 (")
    assert found.dhcp == ("on eth1 in /etc/NetworkManager/system-connections/dhcp.nmconnection "
                          "(ipv4 auto)",)  # fmt: skip


def test_networkd_addresses_gateway_and_bond_netdev() -> None:
    files = {
        "/etc/systemd/network/10-eth0.network": (
            "[Match]\nName=eth0\n\n[Network]\nAddress=10.9.8.7/24\nGateway=10.9.8.1\n"
            "DNS=10.9.8.2\n\n[Address]\nAddress=10.9.9.7/24\n"
        ),
        "/etc/systemd/network/20-bond.netdev": "[NetDev]\nName=bond0\nKind=bond\n",
        "/etc/systemd/network/20-bond.network": "[Match]\nName=bond0\n[Network]\nDHCP=yes\n",
        "/etc/systemd/network/30-dhcp.network": "[Match]\nName=en*\n[Network]\nDHCP=ipv4\n",
    }
    found = detect(files)
    assert [(a.cidr, a.gateway) for a in found.addresses] == [
        ("10.9.8.7/24", "10.9.8.1"), ("10.9.9.7/24", "10.9.8.1")]
    assert found.unsupported[0].startswith("bond0 (/etc/systemd/network/20-bond.network): a bond")
    assert found.dhcp == ("on en* in /etc/systemd/network/30-dhcp.network (DHCP=ipv4)",)


def test_rhel_ifcfg_static_netmask_and_global_gateway() -> None:
    files = {
        "/etc/sysconfig/network": "NETWORKING=yes\nGATEWAY=192.168.20.1\n",
        "/etc/sysconfig/network-scripts/ifcfg-eth0": (
            'DEVICE=eth0\nBOOTPROTO=none\nONBOOT=yes\nIPADDR="192.168.20.30"\n'
            "NETMASK=255.255.255.0\nIPV6ADDR=2001:db8:20::30/64\n"
        ),
        "/etc/sysconfig/network-scripts/ifcfg-eth1": "DEVICE=eth1\nBOOTPROTO=dhcp\nONBOOT=yes\n",
        "/etc/sysconfig/network-scripts/ifcfg-eth2": "DEVICE=eth2\nMASTER=bond0\nSLAVE=yes\n",
        "/etc/sysconfig/network-scripts/ifcfg-lo": "DEVICE=lo\nIPADDR=127.0.0.1\n",
    }
    found = detect(files)
    assert [(a.interface, a.cidr, a.gateway) for a in found.addresses] == [
        ("eth0", "192.168.20.30/24", "192.168.20.1"),
        ("eth0", "2001:db8:20::30/64", None),
    ]
    assert found.dhcp == ("on eth1 in /etc/sysconfig/network-scripts/ifcfg-eth1 (BOOTPROTO=dhcp)",)
    assert "eth2" in found.unsupported[0]


def test_nothing_found_says_so() -> None:
    found = detect({})
    assert found.addresses == ()
    assert found.files == ()
    assert found.summary() == "no network configuration found"


def test_a_broken_file_is_reported_not_fatal() -> None:
    found = detect({"/etc/netplan/x.yaml": "network: [unclosed\n",
                    "/etc/network/interfaces": "auto eth0\niface eth0 inet static\n address no"})
    assert any("not valid YAML" in u for u in found.unsupported)
    assert any("'no' is not an address" in u for u in found.unsupported)


def test_nameservers_from_every_format_loopback_stubs_left_out() -> None:
    files = {
        "/etc/resolv.conf": "# stub\nnameserver 127.0.0.53\nnameserver 10.255.255.53\n",
        "/etc/network/interfaces": ("auto eth0\niface eth0 inet static\n address 10.0.0.5/24\n"
                                    " dns-nameservers 10.0.0.2 10.0.0.3\n"),
        "/etc/netplan/1.yaml": ("network:\n  ethernets:\n    eth1:\n"
                                "      addresses: [10.1.0.5/24]\n"
                                "      nameservers: {addresses: [10.1.0.2]}\n"),
        "/etc/systemd/network/1.network": "[Match]\nName=eth2\n[Network]\nDNS=10.2.0.2\n",
    }
    assert detect(files).nameservers == (
        ("10.0.0.2", "/etc/network/interfaces"), ("10.0.0.3", "/etc/network/interfaces"),
        ("10.1.0.2", "/etc/netplan/1.yaml"), ("10.2.0.2", "/etc/systemd/network/1.network"),
        ("10.255.255.53", "/etc/resolv.conf"),
    )


def test_the_summary_reads_as_one_sentence_per_interface() -> None:
    found = detect({"/etc/network/interfaces": (
        "auto eth0\niface eth0 inet dhcp\nauto eth1\niface eth1 inet static\n"
        " address 10.0.0.5/24\n gateway 10.0.0.1\n")})  # fmt: skip
    assert found.summary() == ("10.0.0.5/24 on eth1 via 10.0.0.1 (/etc/network/interfaces); "
                               "DHCP on eth0 in /etc/network/interfaces (inet dhcp)")
