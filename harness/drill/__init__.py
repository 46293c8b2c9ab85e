"""One drill, from a loaded scenario to its result.

::

    pipeline.py   run_drill: the phases in order, one boundary, teardown always
    context.py    Drill: what one drill has made and found, shared by the phases
    verifying.py  verify, integrity, hashing beside the boot
    provisioning.py  prepare, network, provision, prepare guest
    booting.py    boot, ssh, settle (rescue boot, partition, boot loader)
    restoring.py  restore and its proof, pgBackRest recovery
    checking.py   data, checks, testinfra, isolation
    teardown.py   everything undone, the backup proven unchanged
    machines.py   the lab's machines, started in dependency order (independent ones together)
    proof.py      the backup hashed beside the boot, and proven unchanged after
    verdict.py    verdict, reason, exit code, RTO and RPO from what was measured
    clock.py      phases timed on the drill's monotonic clock, announced as events

Data flows one way: scenario → drill → evidence (the result the evidence layer writes).
"""

from harness.drill.context import DrillOptions, DrillOutcome
from harness.drill.pipeline import run_drill

__all__ = ["DrillOptions", "DrillOutcome", "run_drill"]
