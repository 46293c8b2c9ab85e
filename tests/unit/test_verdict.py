"""The verdict and its one-line reason from what a drill measured (RTO 15m, RPO 26h)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from harness.drill import _judge
from harness.evidence.model import BackupEvidence, RunResult
from harness.scenario.loader import load_scenario

STARTED = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
BLOCKED = {"target": "192.0.2.1:443", "outcome": "blocked", "detail": "Network is unreachable"}
HUNG = {"target": "DNS example.org", "outcome": "timeout", "detail": "the lookup hung"}


def judged(scenario_dir: Path, verified_at: float, isolation: list[dict[str, str]]) -> RunResult:
    scenario = load_scenario(scenario_dir / "scenario.yaml")
    result = RunResult("run", scenario.name, "", "scenario.yaml", STARTED.isoformat())
    result.isolation = isolation
    backup = BackupEvidence(kind="disk", path="b.qcow2", format="qcow2",
                            restore_point=(STARTED - timedelta(hours=3)).isoformat())  # fmt: skip
    _judge(result, scenario, STARTED, verified_at, None, [backup])
    return result


def test_verified_in_time_isolated_and_fresh_is_a_pass(scenario_dir: Path) -> None:
    result = judged(scenario_dir, 184.0, [BLOCKED])
    assert (result.verdict, result.exit_code) == ("PASS", 0)
    assert result.reason.startswith("restore verified in 3m 4s (RTO 15m)")


def test_too_slow_names_measured_and_target(scenario_dir: Path) -> None:
    result = judged(scenario_dir, 1000.0, [BLOCKED])
    assert (result.verdict, result.exit_code) == ("FAIL", 1)
    assert result.reason == "RTO missed: 16m 40s > 15m"


@pytest.mark.parametrize("verified_at", [184.0, 1000.0])
def test_a_leaky_lab_fails_for_its_leak_not_for_a_made_up_rto_miss(
    scenario_dir: Path, verified_at: float
) -> None:
    """A lab that is not isolated proves nothing, so the RTO is not met; the reason says why
    and never claims that 3m 4s exceeded 15m (seen in CI before this test)."""
    result = judged(scenario_dir, verified_at, [BLOCKED, HUNG])
    assert (result.verdict, result.exit_code) == ("FAIL", 1)
    assert result.reason == "the lab is not isolated: DNS example.org timeout"
    assert result.rto is not None
    assert result.rto.passed is False
    assert result.rto.detail == "the service was not verified"
