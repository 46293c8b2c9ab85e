"""One drill, from a loaded scenario to its result.

::

    pipeline.py   Run: the phases in order, one boundary, teardown always
    machines.py   the lab's machines, started in dependency order (independent ones together)
    proof.py      the backup hashed beside the boot, and proven unchanged after
    verdict.py    verdict, reason, exit code, RTO and RPO from what was measured
    clock.py      phases timed on the drill's monotonic clock, announced as events

Data flows one way: scenario → drill → evidence (the result the evidence layer writes).
"""

from harness.drill.pipeline import DrillOptions, DrillOutcome, run_drill

__all__ = ["DrillOptions", "DrillOutcome", "run_drill"]
