"""Property: whatever the file holds, loading gives a scenario or a clean ScenarioError."""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.errors import ScenarioError
from harness.scenario.loader import load_scenario
from tests.conftest import VALID

# YAML-ish values: scalars, lists and mappings nested a little.
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def load(folder: Path, text: str) -> None:
    path = folder / "p.yaml"
    path.write_text(text)
    problems = []
    try:
        load_scenario(path)
    except ScenarioError as exc:
        problems = exc.problems
        assert problems
    assert all(p.file == str(path) and p.message for p in problems)


@SETTINGS
@given(text=st.text(max_size=400))
def test_any_text_loads_or_fails_cleanly(scenario_dir: Path, text: str) -> None:
    load(scenario_dir, text)


@SETTINGS
@given(
    key=st.sampled_from(["name", "backup", "targets", "vm", "login", "checks", "testinfra"]),
    value=values,
)
def test_any_value_in_any_section_loads_or_fails_cleanly(
    scenario_dir: Path, key: str, value: object
) -> None:
    data = yaml.safe_load(VALID)
    data[key] = value
    load(scenario_dir, yaml.safe_dump(data))


@SETTINGS
@given(data=st.data())
def test_mutated_checks_load_or_fail_cleanly(scenario_dir: Path, data: st.DataObject) -> None:
    doc = yaml.safe_load(VALID)
    check = doc["checks"][1]
    check[data.draw(st.sampled_from(["http", "port", "status", "contains", "timeout", "user"]))] = (
        data.draw(values)
    )
    load(scenario_dir, yaml.safe_dump(doc))
