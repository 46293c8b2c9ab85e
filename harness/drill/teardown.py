"""Teardown: whatever exists is undone, each step on its own; the console kept; a kept lab's
hint; the proof that every backup is unchanged."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import asdict

from harness.drill.context import Drill
from harness.drill.proof import prove_unchanged
from harness.errors import Aborted, DrillError
from harness.lab.lifecycle import (
    KeptVm,
    Lab,
)

CONSOLE_KEEP_BYTES = 2 * 1024 * 1024


def teardown(d: Drill) -> None:
    """Undo whatever exists, each step on its own: one that fails (a bug included) is
    recorded and the others still run. A second signal cuts the waits short. The network
    is removed beside the VMs; once the VMs are gone, the proof that every backup is
    unchanged runs beside the rest (network, host guard, folder), and its failure is
    recorded after the teardown's, as if it had run after it."""
    for guest in d.guests:
        if guest.client is not None:
            with suppress(Exception):
                guest.client.close()
    lab = d.lab
    keep = lab is not None and d.options.keep and bool(_kept(d))
    if lab is not None:
        d.safely("reading the console", lambda: _read_console(d, lab))
    if lab is not None and keep:
        d.safely("keeping the lab", lambda: _keep(d, lab))
    gone = None if keep else lab  # the lab to remove
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="teardown") as beside:
        network = beside.submit(gone.remove_network) if gone else None  # each waits for libvirt
        if gone:
            d.safely("teardown of the lab", lambda: _say(d, gone.remove_machines()))
        proof = beside.submit(_prove_unchanged, d)  # QEMU has closed every backup
        if gone and network:
            d.safely("teardown of the lab", lambda: _say(d, network.result()))
            d.safely("teardown of the lab", lambda: _say(d, gone.teardown()))  # guard, folder
        if d.hv is not None:
            d.safely("closing libvirt", d.hv.close)
        d.safely("the proof that the backup is unchanged", lambda: _failed(d, proof.result()))
    if d.primary is not None:  # the report's lab section shows the first machine's
        first = d.primary.facts
        d.result.lab.update(
            {k: first[k] for k in ("ip", "host_key", "system_state", "rescue") if k in first}
        )
    if len(d.guests) > 1:
        d.result.machines = [
            {**g.facts, "backup": asdict(g.evidence) if g.evidence else None} for g in d.guests
        ]


def _kept(d: Drill) -> list[KeptVm]:
    return [
        KeptVm(g.machine.name, g.ip, t.port, t.user, t.key_file, f"{k.type} {k.base64}")
        for g in d.guests
        if (t := g.target) is not None and (k := g.host_key) is not None
    ]


def _keep(d: Drill, lab: Lab) -> None:
    lab.keep(_kept(d))
    d.outcome.kept_hint = _kept_hint(lab, d.options.uri)


def _say(d: Drill, removed: list[str]) -> None:
    for what in removed:
        d.clock.say("note", f"teardown: removed {what}")


def _prove_unchanged(d: Drill) -> DrillError | None:
    aborted = isinstance(d.failure, Aborted) or bool(d.interrupts.received)
    return prove_unchanged(
        d.guests, d.stop_hashing, d.interrupts.forced, vm_ran=d.powered_on > 0, aborted=aborted
    )


def _failed(d: Drill, failure: DrillError | None) -> None:
    d.failure = d.failure or failure


def _read_console(d: Drill, lab: Lab) -> None:
    """The serial console of every VM (each headed by its machine's name if several)."""
    if lab.provisioned is None:
        return
    vms = lab.provisioned.vms
    logs = [(f"{vm.machine}: " if len(vms) > 1 else "", vm) for vm in vms]
    files = [(f"{who}rescue system", vm.rescue.console_log) for who, vm in logs if vm.rescue]
    files += [
        (f"{who}rebuilt system" if vm.rescue else who.rstrip(": "), vm.console_log)
        for who, vm in logs
    ]
    out = b""
    for title, path in files:
        data = lab.read_console(path, CONSOLE_KEEP_BYTES // len(files))
        out += f"===== {title} =====\n".encode() + data if len(files) > 1 else data
    d.outcome.console_log = out


def _kept_hint(lab: Lab, uri: str) -> str:
    several = len(lab.record.machines) > 1
    which = " --vm NAME" if several else ""
    return (
        f"lab {lab.lab_id} kept ({lab.record.login}): restore-drill ssh {lab.lab_id}{which}\n"
        f"  console: virsh -c {uri} console {lab.record.domains[0]}\n"
        f"  remove:  restore-drill cleanup"
    )
