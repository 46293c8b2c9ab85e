"""Prometheus node-exporter textfile metrics, built from the ledger (every scenario ever
drilled into this reports folder, not only tonight's) with prometheus_client, written
atomically (``write_to_textfile`` renames a temporary file into place)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from prometheus_client import CollectorRegistry, Enum, Gauge, write_to_textfile

from harness.evidence import ledger

VERDICTS = ["PASS", "FAIL", "ERROR", "ABORTED"]


def write_textfile(reports: Path, target: Path) -> int:
    """Write the metrics of every scenario's latest run to ``target``; how many scenarios."""
    latest, verified = ledger.latest_runs(ledger.runs(ledger.entries(reports)))
    registry = CollectorRegistry()
    labels = ["scenario"]

    def gauge(name: str, doc: str) -> Gauge:
        return Gauge(f"restore_drill_{name}", doc, labels, registry=registry)

    last_run = gauge("last_run_timestamp_seconds", "Start of the latest drill")
    last_ok = gauge("last_verified_timestamp_seconds",
                    "Start of the latest drill that passed (0: never)")
    recovery = gauge("recovery_seconds", "Measured recovery time of the latest drill")
    rto = gauge("rto_target_seconds", "Recovery time objective")
    rto_met = gauge("rto_met", "1 if the latest drill met its RTO, 0 if not")
    rpo = gauge("rpo_target_seconds", "Recovery point objective")
    age = gauge("backup_age_seconds", "Age of the restore point at the latest drill")
    rpo_met = gauge("rpo_met", "1 if the latest drill's backup was within its RPO, 0 if not")
    verdict = Enum("restore_drill_verdict", "Verdict of the latest drill", labels,
                   states=VERDICTS, registry=registry)  # fmt: skip
    for name, run in latest.items():
        last_run.labels(name).set(_timestamp(str(run["time"])))
        # Never verified: the epoch, so an alert on the time since then fires at once.
        last_ok.labels(name).set(_timestamp(str(verified[name]["time"])) if name in verified
                                 else 0)  # fmt: skip
        for metric, key in ((recovery, "rto_measured_s"), (rto, "rto_target_s"),
                            (rpo, "rpo_target_s"), (age, "rpo_age_s")):  # fmt: skip
            if isinstance(run.get(key), int | float):
                metric.labels(name).set(float(run[key]))
        for metric, key in ((rto_met, "rto_passed"), (rpo_met, "rpo_passed")):
            if isinstance(run.get(key), bool):
                metric.labels(name).set(1 if run[key] else 0)
        if run["verdict"] in VERDICTS:
            verdict.labels(name).state(str(run["verdict"]))
    target.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(target), registry)
    return len(latest)


def _timestamp(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()
