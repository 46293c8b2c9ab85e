"""How the egress probe classifies what the guest saw (the VM tests run it for real)."""

from __future__ import annotations

import pytest

from harness.checks.isolation import _attempt


@pytest.mark.parametrize(
    ("label", "rc", "message", "outcome"),
    [
        ("192.0.2.1:443", 1, "bash: connect: Network is unreachable", "blocked"),
        ("192.0.2.1:443", 1, "bash: connect: Connection refused", "blocked"),
        ("192.0.2.1:443", 0, "", "connected"),
        ("192.0.2.1:443", 124, "", "timeout"),
        ("192.0.2.1:443", 127, "sh: 1: bash: not found", "unproven"),
        ("192.0.2.1:443", 126, "bash: Permission denied", "unproven"),
        ("DNS example.org", 2, "", "blocked"),
        ("DNS example.org", 0, "", "resolved"),
        ("DNS example.org", 124, "", "timeout"),
        ("DNS example.org", 127, "getent: not found", "unproven"),
    ],
)
def test_classification(label: str, rc: int, message: str, outcome: str) -> None:
    attempt = _attempt(label, rc, "0.1", message)
    assert attempt.outcome == outcome
    assert attempt.isolated is (outcome == "blocked")
