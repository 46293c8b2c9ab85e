"""Golden files for the lab's libvirt XML. Regenerate: RESTORE_DRILL_REGOLD=1 pytest ..."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest

from harness.lab.xml import (
    DNSMASQ_NS,
    DomainPlan,
    NetworkHost,
    NetworkPlan,
    domain_xml,
    network_xml,
)
from harness.qemu_img import Layer

GOLDEN = Path(__file__).parents[1] / "data" / "golden"
NET = NetworkPlan(name="rdrill-0badc0de", bridge="rd0badc0de", subnet=42)
DOM = DomainPlan(
    name="rdrill-0badc0de-vm", lab_id="0badc0de", scenario="demo-web", domain_type="qemu",
    memory_mib=1024, vcpus=2, overlay=Path("/var/lib/restore-drill/labs/0badc0de/overlay.qcow2"),
    backing=(Layer(Path("/backups/web.qcow2"), "qcow2"),), network="rdrill-0badc0de",
    mac="52:54:00:12:34:56", console_log=Path("/var/lib/restore-drill/labs/0badc0de/console.log"),
)  # fmt: skip


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("RESTORE_DRILL_REGOLD"):
        path.write_text(text)
    assert text == path.read_text()


def test_network_xml_golden() -> None:
    check_golden("network.xml", network_xml(NET))


LAB_OF_TWO = NetworkPlan(
    name="rdrill-0badc0de", bridge="rd0badc0de", subnet=42,
    hosts=(NetworkHost("52:54:00:00:00:01", "10.213.42.10", ("db", "db.shop.internal")),
           NetworkHost("52:54:00:00:00:02", "10.213.42.11", ("web",))),
)  # fmt: skip


def test_network_of_several_vms_golden() -> None:
    check_golden("network-several.xml", network_xml(LAB_OF_TWO))


def test_the_lab_dns_answers_lab_names_only() -> None:
    root = ET.fromstring(network_xml(LAB_OF_TWO))
    assert root.find("forward") is None
    names = [h.text for h in root.findall("dns/host/hostname")]
    assert names == ["db", "db.shop.internal", "web"]
    options = root.findall(f"{{{DNSMASQ_NS}}}options/{{{DNSMASQ_NS}}}option")
    assert [o.get("value") for o in options] == ["no-resolv"]  # nothing is forwarded
    fixed = {h.get("name"): h.get("ip") for h in root.findall("ip/dhcp/host")}
    assert fixed == {"db": "10.213.42.10", "web": "10.213.42.11"}
    assert root.find("ip/dhcp/range").get("start") == "10.213.42.100"  # above the fixed ones


def test_domain_xml_golden() -> None:
    check_golden("domain.xml", domain_xml(DOM))


def test_network_is_isolated_without_dns() -> None:
    root = ET.fromstring(network_xml(NET))
    assert root.find("forward") is None  # no <forward>: libvirt's isolated mode
    assert root.find("dns").get("enable") == "no"
    assert root.find("ip").get("address") == "10.213.42.1"


def test_backup_is_never_relabelled() -> None:
    root = ET.fromstring(domain_xml(DOM))
    disk = root.find("devices/disk")
    assert disk.find("source").get("file").endswith("overlay.qcow2")
    labels = disk.findall(".//seclabel")
    assert len(labels) == 2
    assert all(s.get("relabel") == "no" and s.get("model") == "dac" for s in labels)
    assert disk.find("backingStore/source").get("file") == "/backups/web.qcow2"


def test_kvm_domain_uses_host_cpu() -> None:
    from dataclasses import replace

    root = ET.fromstring(domain_xml(replace(DOM, domain_type="kvm")))
    assert root.get("type") == "kvm"
    assert root.find("cpu").get("mode") == "host-passthrough"


def test_an_incremental_boots_with_its_whole_chain_every_layer_kept_as_it_is() -> None:
    """Seen in a trial: an incremental qcow2 booted with its chain cut (an empty
    <backingStore/> right under it) and never found its root file system."""
    chain = (Layer(Path("/backups/web-incr2.qcow2"), "qcow2"),
             Layer(Path("/backups/web-incr1.qcow2"), "qcow2"),
             Layer(Path("/backups/web.raw"), "raw"))  # fmt: skip
    root = ET.fromstring(domain_xml(replace(DOM, backing=chain)))
    store, found = root.find("devices/disk/backingStore"), []
    while store is not None and store.find("source") is not None:
        labels = store.findall("source/seclabel")
        assert [(s.get("model"), s.get("relabel")) for s in labels] == [("dac", "no")]
        found.append((store.find("source").get("file"), store.find("format").get("type")))
        store = store.find("backingStore")
    assert found == [(str(layer.path), layer.format) for layer in chain]
    assert store is not None
    assert len(store) == 0


def test_on_an_selinux_host_every_layer_keeps_its_selinux_label_too() -> None:
    from harness.errors import LabError
    from harness.lab.lifecycle import kept_labels

    root = ET.fromstring(domain_xml(replace(DOM, keep_labels=kept_labels("selinux"))))
    labels = root.findall("devices/disk/backingStore/source/seclabel")
    assert [(s.get("model"), s.get("relabel")) for s in labels] == [("dac", "no"),
                                                                   ("selinux", "no")]
    assert kept_labels("apparmor") == ("dac",)  # AppArmor writes a profile, labels no file
    with pytest.raises(LabError, match="may relabel the backup"):
        kept_labels("smack")


def test_a_replicated_lab_network_is_a_bare_bridge_without_any_host_address() -> None:
    xml = network_xml(NetworkPlan(name="rdrill-x", bridge="rdx", subnet=7, replicated=True))
    assert "<ip" not in xml  # no address on the host's side, no DHCP from the host
    assert "<forward" not in xml
    assert '<dns enable="no" />' in xml
    assert '<bridge name="rdx" stp="off" delay="0" />' in xml
