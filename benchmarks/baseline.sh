#!/usr/bin/env bash
# The physical floor of a drill: overlay + isolated network + `virsh create` + poll for the
# DHCP lease + one ssh command. No checks, no evidence, no safety. Prints the seconds taken.
# Usage (as root, where restore-drill's labs run): benchmarks/baseline.sh BACKUP.qcow2 KEY
set -euo pipefail
backup=$1 key=$2
work=$(mktemp -d /var/tmp/rdrill-baseline.XXXXXX); chmod 755 "$work"
name=rdbase-$$ subnet=$((RANDOM % 200 + 20))
cleanup() { virsh -q destroy "$name" >/dev/null 2>&1 || true; virsh -q net-destroy "$name" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
start=$(date +%s.%N)
size=$(qemu-img info --output=json -U "$backup" | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])')
qemu-img create -q -f qcow2 -u -b "$backup" -F qcow2 "$work/overlay.qcow2" "$size"
chown libvirt-qemu:libvirt-qemu "$work/overlay.qcow2"
cat >"$work/net.xml" <<XML
<network><name>$name</name><bridge name="rdb$$"/><dns enable="no"/>
<ip address="10.214.$subnet.1" netmask="255.255.255.0"><dhcp><range start="10.214.$subnet.10" end="10.214.$subnet.99"/></dhcp></ip></network>
XML
virsh -q net-create "$work/net.xml" >/dev/null
cat >"$work/dom.xml" <<XML
<domain type="qemu"><name>$name</name><memory unit="MiB">1024</memory><vcpu>2</vcpu>
<os><type arch="x86_64" machine="pc">hvm</type><boot dev="hd"/></os><features><acpi/><apic/></features>
<devices><disk type="file" device="disk"><driver name="qemu" type="qcow2"/>
<source file="$work/overlay.qcow2"><seclabel model="dac" relabel="no"/></source><target dev="vda" bus="virtio"/></disk>
<interface type="network"><source network="$name"/><model type="virtio"/></interface>
<serial type="pty"/><memballoon model="none"/></devices></domain>
XML
virsh -q create "$work/dom.xml" >/dev/null
ip=
until [ -n "$ip" ]; do
    sleep 1
    ip=$(virsh -q domifaddr "$name" --source lease 2>/dev/null | awk '/ipv4/ {split($4,a,"/"); print a[1]}')
done
until ssh -q -i "$key" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
        -o ConnectTimeout=5 "root@$ip" systemctl is-active nginx >/dev/null 2>&1; do sleep 1; done
end=$(date +%s.%N)
python3 -c "print(round($end - $start, 2))"
