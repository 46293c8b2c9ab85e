"""Golden files for the lab's libvirt XML. Regenerate: RESTORE_DRILL_REGOLD=1 pytest ..."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

from harness.lab.xml import (
    DNSMASQ_NS,
    DomainPlan,
    NetworkHost,
    NetworkPlan,
    domain_xml,
    network_xml,
)

GOLDEN = Path(__file__).parents[1] / "data" / "golden"
NET = NetworkPlan(name="rdrill-0badc0de", bridge="rd0badc0de", subnet=42)
DOM = DomainPlan(
    name="rdrill-0badc0de-vm", lab_id="0badc0de", scenario="demo-web", domain_type="qemu",
    memory_mib=1024, vcpus=2, overlay=Path("/var/lib/restore-drill/labs/0badc0de/overlay.qcow2"),
    backing=Path("/backups/web.qcow2"), backing_format="qcow2", network="rdrill-0badc0de",
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
