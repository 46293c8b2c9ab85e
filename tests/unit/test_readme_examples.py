"""Every scenario example in the README holds to the schema and the loader's own rules: a
documented option that the code rejects fails here.
Fragments (a ``backup:`` section alone) are checked inside a minimal scenario."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import jinja2
import jsonschema
import pytest
import yaml

from harness.hosts.inventory import load_inventory
from harness.kinds import REGISTRY
from harness.notify.config import load_config
from harness.scenario.schema import CHECK_COMMON, CHECK_KINDS, SCHEMA, check_kinds

ROOT = Path(__file__).resolve().parents[2]
BLOCKS = re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
MINIMAL = {"version": 1, "name": "readme", "targets": {"rto": "15m", "rpo": "1d"},
           "login": {"user": "root", "key_file": "key"}}  # fmt: skip


def rendered(text: str) -> Any:
    """The block as the loader's template step would give it (placeholders filled)."""
    env = jinja2.Environment(autoescape=False)  # noqa: S701 - YAML, not HTML
    env.globals.update(env=lambda name, default="": default or f"/{name.lower()}",
                       secret=lambda name, file=None: f"secret-{name}",
                       values=lambda name: defaultdict(lambda: 42))  # fmt: skip
    return yaml.safe_load(env.from_string(text).render())


def problems(scenario: dict[str, Any]) -> list[str]:
    found = [f"{list(e.absolute_path)}: {e.message}"
             for e in jsonschema.Draft202012Validator(SCHEMA).iter_errors(scenario)]  # fmt: skip
    for check in scenario.get("checks", []):
        kinds = check_kinds(check)
        if len(kinds) != 1:
            found.append(f"check {check.get('name')}: kinds {kinds}")
            continue
        found += [f"check {check['name']}: {k} is no option of {kinds[0]}" for k in check
                  if k not in CHECK_KINDS[kinds[0]] and k not in CHECK_COMMON]  # fmt: skip
    for machine in [scenario, *scenario.get("machines", [])]:
        backup = machine.get("backup")
        if backup is None:
            continue
        kind = REGISTRY[backup.get("kind", "disk-image")]
        found += [f"backup.{k} unused by its kind" for k in backup
                  if k not in kind.keys | {"kind", "restore_point", "verify_after"}]  # fmt: skip
        found += [f"backup needs {k}" for k in kind.required if k not in backup]
    return found


def test_the_readme_has_examples_to_check() -> None:
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_each_readme_scenario_example_is_valid(block: str, tmp_path: Path) -> None:
    data = rendered(block)
    assert isinstance(data, dict)
    if set(data) == {"hosts"}:  # a host inventory ("Many hosts"), checked by its own loader
        (tmp_path / "hosts.yaml").write_text(block)
        assert load_inventory(tmp_path / "hosts.yaml").hosts
        return
    scenario = {**MINIMAL, **data}
    if "machines" not in data:
        backup = scenario.setdefault("backup", {"path": "backup.qcow2"})
        if REGISTRY[backup.get("kind", "disk-image")].restored:
            scenario.setdefault("vm", {}).setdefault("image", "base.qcow2")
    assert problems(scenario) == []


def test_every_credential_source_the_readme_names_is_accepted(tmp_path: Path) -> None:
    """README: credentials from ``*_env`` or ``*_file``, including ``url_file``."""
    (tmp_path / "url").write_text("https://hooks.example/drill\n")
    (tmp_path / "token").write_text("t0ken\n")
    config = tmp_path / "notify.yaml"
    config.write_text("webhook: {url_file: url, token_file: token}\n")
    loaded = load_config(config)
    assert loaded.webhook is not None
    assert loaded.webhook.url == "https://hooks.example/drill"
    assert "https://hooks.example/drill" in loaded.secrets  # a URL from a file is a secret


def test_the_benchmark_table_is_the_one_its_results_make() -> None:
    """The README's results table is what benchmarks/table.py makes of the committed
    results: a figure edited by hand, or a benchmark re-run without regenerating, fails."""
    proc = subprocess.run([sys.executable, "benchmarks/table.py", "--check"], cwd=ROOT,
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
