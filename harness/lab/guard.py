"""Nothing from the lab reaches the drill host: an nftables table per lab that rejects every
connection a guest opens toward the host (the gateway address, or any other address of the
host) except DHCP, and the lab's own DNS when its machines have names.

libvirt's isolated network stops forwarding only: a restored guest (ransomware included)
could still connect to anything listening on the host, where the signing key and the
evidence are. The rules match the lab's bridge by name, live in the network namespace that
holds the bridge (where the harness runs), are created before any VM starts and removed
with the lab; a table whose lab is gone is reaped like the lab's other objects. Rejected,
not dropped: the guest is told at once, so the isolation probe sees "blocked", not a hang.
A TCP connection is refused with a reset, the rest with ICMP admin-prohibited: the kernel
rate-limits the ICMP errors it sends to one guest (a burst of about six, then one a
second), and attempts beyond that waited for their SYN retries, some past any limit (a leak
verdict for an isolated lab); a reset is not rate-limited.
"""

from __future__ import annotations

import json

from harness.errors import LabError
from harness.lab.tool import run_tool
from harness.remote.namespace import link_exists

TABLE_PREFIX = "rdrill_"
NFT = "nft"


def table_name(lab_id: str) -> str:
    return f"{TABLE_PREFIX}{lab_id}"


def ruleset(lab_id: str, bridge: str, dns: bool, dhcp: bool = True) -> str:
    """The lab's table on the host: traffic from the lab's bridge."""
    return rules(table_name(lab_id), bridge, dns, dhcp)


def rules(table: str, iface: str, dns: bool, dhcp: bool) -> str:
    """A table rejecting every connection that arrives on ``iface`` except answers to the
    harness's own, and DHCP and the lab's DNS when the lab serves them."""
    allowed = ['udp dport 67 accept comment "DHCP"'] if dhcp else []
    if dns:
        allowed += ['udp dport 53 accept comment "the lab\'s own DNS"', "tcp dport 53 accept"]
    lines = "".join(f'    iifname "{iface}" {rule}\n' for rule in allowed)
    return (
        f"table inet {table} {{\n"
        "  chain guest_to_host {\n"
        "    type filter hook input priority -10; policy accept;\n"
        f'    iifname "{iface}" ct state established,related accept comment "answers to '
        'the harness"\n'
        f"{lines}"
        f'    iifname "{iface}" meta l4proto tcp reject with tcp reset\n'
        f'    iifname "{iface}" reject with icmpx type admin-prohibited\n'
        "  }\n"
        "}\n"
    )


def block_guest_to_host(lab_id: str, bridge: str, dns: bool, dhcp: bool = True) -> str:
    """Install the lab's table; the ruleset, for the evidence. The bridge must be visible
    here: rules for an interface of another namespace would silently match nothing."""
    if not link_exists(bridge):
        raise LabError(f"the lab bridge {bridge} is not in this network namespace, so guest "
                       "traffic to this host cannot be blocked: run restore-drill in the "
                       "namespace where libvirtd runs (scripts/lab-env.sh: in_lab)")  # fmt: skip
    rules = ruleset(lab_id, bridge, dns, dhcp)
    _nft(["-f", "-"], rules, "block guest traffic to this host")
    return rules


def unblock(lab_id: str) -> bool:
    """Remove the lab's table; False if it was not there."""
    if table_name(lab_id) not in tables():
        return False
    try:
        _nft(["delete", "table", "inet", table_name(lab_id)], "", "remove the lab's host guard")
    except LabError:
        if table_name(lab_id) not in tables():  # another run's reap removed it meanwhile
            return False
        raise
    return True


def tables() -> list[str]:
    """Every lab table present (for reaping what a killed drill left)."""
    return parse_tables(_nft(["-j", "list", "tables", "inet"], "", "list nftables tables"))


def parse_tables(out: str) -> list[str]:
    """The lab tables in ``nft -j list tables``'s output."""
    try:
        items = json.loads(out or "{}").get("nftables", [])
    except ValueError:
        return []
    names = [str(item["table"]["name"]) for item in items if "table" in item]
    return [n for n in names if n.startswith(TABLE_PREFIX)]


def _nft(args: list[str], stdin: str, what: str) -> str:
    return run_tool([NFT, *args], stdin, what, "nftables")
