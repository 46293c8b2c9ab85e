"""Phases data, checks, testinfra (the recovery's end) and isolation (the harness's own
proof, after the clock): each check on its machine, each attempt to leave the lab."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict
from typing import Any

from harness.checks.batch import Answer, Machine, over_ssh, prefetch, replaying, run_batch
from harness.checks.isolation import host_listener, host_targets, lab_host_targets, probe_egress
from harness.checks.session import RECONNECT_TIMEOUT_S
from harness.checks.testfiles import run_testfiles
from harness.drill.context import Drill
from harness.drill.dataproof import prove
from harness.drill.machines import Guest, join_polling
from harness.drill.verdict import tally
from harness.lab import netns
from harness.lab.host import RemoteHost
from harness.remote.commands import run_polled
from harness.remote.namespace import entered
from harness.remote.ssh import connect_pinned, connected
from harness.scenario.model import CheckSpec


def ask_ahead(d: Drill, guest: Guest) -> Callable[[], dict[str, Answer]] | None:
    """The system facts the guest's checks ask first, asked now, beside the wait for its
    boot to finish (settle), in a round of their own: the checks' first round then asks the
    checks' own commands. Only for a guest nothing changes between now and its checks (the
    caller knows: no restore, no step); None if it has no check that runs in it. What the
    round gave, once it ended: nothing if it failed (the checks then ask again)."""
    mine = [s for s in d.scenario.checks if s.kind != "http"
            and (s.machine or d.primary_guest().machine.name) == guest.machine.name]  # fmt: skip
    if not mine:
        return None
    limit_s = max(s.timeout_s for s in mine)
    execute = over_ssh(lambda: guest.client, None, "checks", d.interrupts.check)
    known: dict[str, Answer] = {}

    def ask() -> None:
        with suppress(Exception):  # a failed round: asked again in the checks' first round
            known.update(prefetch(execute, limit_s))

    thread = threading.Thread(target=ask, name=f"facts{guest.label}", daemon=True)
    thread.start()

    def answers() -> dict[str, Answer]:
        join_polling(thread, d.interrupts)  # bounded: the round's own limit
        return known

    return answers


def checks(d: Drill) -> None:
    """Each machine's data against its manifests; the scenario's checks, each on its
    machine; then the user's testinfra files."""
    scenario, clock, result = d.scenario, d.clock, d.result
    by_name = {g.machine.name: g for g in d.guests}
    for guest in d.guests:
        if guest.expected:
            _data(d, guest)
    with clock.phase("checks") as phase:
        machines: dict[str, Machine] = {}

        def machine_of(spec: CheckSpec) -> Machine:
            guest = by_name.get(spec.machine or "", d.primary_guest())
            if guest.machine.name not in machines:
                execute = over_ssh(lambda: guest.client, lambda: _reconnect(guest), phase.name,
                                   d.interrupts.check)  # fmt: skip
                known = guest.known() if guest.known else {}
                machines[guest.machine.name] = replaying(guest.ip, execute, known)
            return machines[guest.machine.name]

        with entered(d.namespace):  # an http check's socket goes into the lab
            found = run_batch(scenario.checks, machine_of, d.via())
        for outcome in found:
            d.record(outcome)
        phase.detail = tally(result.checks)
    if scenario.testinfra:
        guest = by_name.get(scenario.testinfra.machine or "", d.primary_guest())
        assert guest.target is not None  # noqa: S101 - every machine is ready by now
        assert guest.host_key is not None  # noqa: S101
        with clock.phase("testinfra") as phase:
            files, limit = scenario.testinfra.files, scenario.testinfra.timeout_s
            tests = run_testfiles(files, guest.target, guest.host_key, limit)
            for check in tests:
                d.record(check)
            phase.detail = tally(tests)


def _reconnect(guest: Guest, phase: str = "checks") -> Any:
    """The guest's connection made again, its host key pinned (the old one is closed)."""
    assert guest.target is not None  # noqa: S101 - every machine is ready by now
    assert guest.host_key is not None  # noqa: S101
    if guest.client is not None:
        guest.client.close()
    guest.client = connect_pinned(guest.target, guest.host_key, RECONNECT_TIMEOUT_S, phase)
    return guest.client


def _data(d: Drill, guest: Guest) -> None:
    """The guest's restored folders against the manifests recorded at backup time."""
    with d.clock.phase(f"data{guest.label}") as phase:
        proofs = []
        for expected in guest.expected:
            proof, check = prove(
                guest.client,
                expected,
                guest.machine.name,
                bool(guest.label),
                guest.machine.login.user == "root",
                phase.name,
                d.interrupts.check,
            )
            proofs.append(proof)
            d.result.data.append(proof)
            d.record(check)
        phase.detail = "; ".join(
            f"{p.root}: {p.files_matching}/{p.files_expected} files identical" for p in proofs
        )
        if not all(p.passed for p in proofs):
            phase.status = "failed"


def isolation(d: Drill, guest: Guest) -> None:
    with d.clock.phase(f"isolation{guest.label}") as phase:

        def run(command: str, limit: float) -> tuple[int, str]:
            # a connection a check dropped is made again, pinned: a guest whose host key
            # changed is said to have changed it, not to have lost the connection
            client = guest.client if connected(guest.client) else _reconnect(guest, phase.name)
            return run_polled(client, phase.name, command, limit, d.interrupts.check)

        provisioned = d.lab.provisioned if d.lab else None
        gateway = provisioned.gateway if provisioned else ""
        with host_listener() as port:
            if isinstance(d.host, RemoteHost):  # its host, and no way to the controller
                there = d.host.session
                host = lab_host_targets(
                    d.host.name, gateway, there.addresses(), there.local_address(), port
                )
                attempts = probe_egress(run, d.scenario.isolation_probe, host)
            elif d.namespace:  # the lab's side, then the drill host on its own addresses
                # listed here, outside the lab: a command started inside it would list the
                # lab side's addresses as the drill host's
                own = netns.host_addresses()
                with entered(d.namespace), host_listener() as lab_port:
                    host = host_targets(gateway, lab_port, "the lab's side")
                    host |= {
                        f"drill host {a}:{port} (a listener on 0.0.0.0)": f"{a}:{port}" for a in own
                    }
                    attempts = probe_egress(run, d.scenario.isolation_probe, host)
            else:
                host = host_targets(gateway, port) if gateway else {}
                attempts = probe_egress(run, d.scenario.isolation_probe, host)
        prefix = f"{guest.machine.name}: " if guest.label else ""
        records = [{**asdict(a), "target": prefix + a.target} for a in attempts]
        d.result.isolation += records
        leaks = [a for a in records if a["outcome"] != "blocked"]
        phase.detail = (
            f"{len(attempts)} attempts to leave the lab, all blocked"
            if not leaks
            else "not proven isolated: " + "; ".join(f"{a['target']} {a['outcome']}" for a in leaks)
        )
        if leaks:
            phase.status = "failed"
