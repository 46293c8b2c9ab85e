"""``junit.xml``: one test case per check, plus the backup, RTO and RPO verdicts, so a CI
system shows a drill like any test run."""

from __future__ import annotations

from typing import Any

from junitparser import Error, Failure, JUnitXml, Skipped, TestCase, TestSuite


def _case(name: str, classname: str, seconds: float, ok: bool | None, message: str) -> TestCase:
    case = TestCase(name, classname=classname, time=round(seconds, 3))
    if ok is None:
        case.result = [Skipped(message)]
    elif not ok:
        case.result = [Failure(message)]
    return case


def render_junit(data: dict[str, Any]) -> str:
    """The JUnit XML document for a run (``data`` is the redacted report.json tree)."""
    scenario = data["scenario"]
    suite = TestSuite(f"restore-drill.{scenario}")
    suite.timestamp = data["started_at"]
    for phase in data["phases"]:
        case = _case(
            f"phase {phase['name']}", f"{scenario}.phases", phase["duration_s"],
            phase["status"] == "ok", f"{phase['status']}: {phase['detail']}",
        )  # fmt: skip
        if phase["status"] == "error":
            case.result = [Error(phase["detail"] or "error")]
        suite.add_testcase(case)
    for check in data["checks"]:
        case = _case(
            check["name"], f"{scenario}.checks", check["duration_s"],
            None if check.get("skipped") else check["passed"],
            f"expected {check['expectation']}; observed {check['observed']}",
        )  # fmt: skip
        if check["output"]:
            case.system_out = check["output"]
        suite.add_testcase(case)
    backup = data.get("backup") or {}
    suite.add_testcase(
        _case("backup unchanged", f"{scenario}.targets", 0, backup.get("unchanged"),
              f"backup unchanged: {backup.get('unchanged')} (by {backup.get('unchanged_by')})")
    )  # fmt: skip
    for key in ("rto", "rpo"):
        target = data.get(key) or {}
        suite.add_testcase(
            _case(key.upper(), f"{scenario}.targets", 0, target.get("passed"),
                  f"target {target.get('target_s')}s, measured {target.get('measured_s')}s: "
                  f"{target.get('detail', '')}")
        )  # fmt: skip
    if data["verdict"] in ("ERROR", "ABORTED"):
        case = TestCase("drill", classname=f"{scenario}.drill")
        case.result = [Error(f"{data['verdict']}: {data['reason']}")]
        suite.add_testcase(case)
    suite.update_statistics()  # type: ignore[no-untyped-call]
    xml = JUnitXml("restore-drill")
    xml.add_testsuite(suite)
    xml.update_statistics()  # type: ignore[no-untyped-call]
    return str(xml.tostring().decode())  # type: ignore[no-untyped-call]
