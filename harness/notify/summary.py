"""What a notification says about a run: one record per drill, a subject line, a text."""

from __future__ import annotations

import json
import socket
from collections.abc import Sequence
from typing import Any

from harness import __version__
from harness.durations import format_duration
from harness.errors import ExitCode
from harness.finished import Finished


def drill_records(finished: Sequence[Finished]) -> list[dict[str, Any]]:
    """Each drill's verdict, targets and evidence location (from its report.json)."""
    records = []
    for done in finished:
        record: dict[str, Any] = {
            "scenario": done.scenario, "verdict": done.verdict, "exit_code": done.exit_code,
            "reason": done.reason, "run_id": None, "report": None, "started_at": None,
            "rto": None, "rpo": None,
        }  # fmt: skip
        if done.report is not None:
            record["run_id"] = done.report.name
            record["report"] = str(done.report.resolve() / "report.html")
            try:
                report = json.loads((done.report / "report.json").read_text())
                record.update(started_at=report["started_at"], rto=report["rto"],
                              rpo=report["rpo"])  # fmt: skip
            except (OSError, ValueError, KeyError):
                pass  # the verdict and reason above still say what matters
        records.append(record)
    return records


def failed(records: Sequence[dict[str, Any]]) -> bool:
    return any(r["verdict"] != "PASS" for r in records)


def payload(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The webhook's JSON body."""
    return {
        "source": "restore-drill", "version": __version__, "host": socket.getfqdn(),
        "ok": not failed(records),
        "exit_code": ExitCode.worst([r["exit_code"] for r in records]), "drills": records,
    }  # fmt: skip


def subject(records: Sequence[dict[str, Any]]) -> str:
    bad = [r for r in records if r["verdict"] != "PASS"]
    if not bad:
        return f"[restore-drill] PASS: {len(records)} restore(s) verified"
    names = ", ".join(f"{r['scenario']} {r['verdict']}" for r in bad)
    return f"[restore-drill] {len(bad)} of {len(records)} drill(s) not verified: {names}"


def text(records: Sequence[dict[str, Any]]) -> str:
    lines = [f"restore-drill on {socket.getfqdn()}", ""]
    for r in records:
        lines.append(f"{r['verdict']:8} {r['scenario']}: {r['reason']}")
        for target in ("rto", "rpo"):
            t = r.get(target)
            if t and t.get("measured_s") is not None:
                met = {True: "met", False: "MISSED", None: "unknown"}[t.get("passed")]
                lines.append(f"         {target.upper()} {format_duration(t['measured_s'])} of "
                             f"{format_duration(t['target_s'])}: {met}")  # fmt: skip
        if r["report"]:
            lines.append(f"         evidence: {r['report']}")
    lines += ["", "Every drill's evidence (HTML, JSON, JUnit) is in its report folder; "
              "`restore-drill verify` checks it has not been altered."]  # fmt: skip
    return "\n".join(lines) + "\n"
