"""The files in contrib/ stay true to the CLI: every restore-drill command line in them
parses, and the example notification config loads."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from harness.cli import cli
from harness.notify import load_notify

CONTRIB = Path(__file__).resolve().parents[2] / "contrib"


def command_lines() -> list[str]:
    found = []
    for file in sorted(CONTRIB.rglob("*")):
        if file.is_file():
            text = file.read_text().replace("\\\n", " ")
            found += [
                m.group(1) for m in re.finditer(r"bin/restore-drill (.*?)(?:>>|$)", text, re.M)
            ]
    return found


def test_contrib_has_a_timer_a_service_and_a_cron_example() -> None:
    lines = command_lines()
    assert len(lines) >= 3
    assert any(line.startswith("prune ") for line in lines)


@pytest.mark.parametrize("line", command_lines())
def test_every_command_line_parses(line: str) -> None:
    args = shlex.split(line)
    name = args[0]
    command = cli.commands[name]
    command.make_context(name, args[1:])  # raises on an unknown option or a bad value


def test_example_notify_config_loads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    token = tmp_path / "webhook.token"
    token.write_text("t0ken\n")
    text = (CONTRIB / "notify.example.yaml").read_text()
    example = tmp_path / "notify.yaml"
    example.write_text(text.replace("/etc/restore-drill/webhook.token", str(token)))
    monkeypatch.setenv("RESTORE_DRILL_SMTP_PASSWORD", "pw")
    monkeypatch.setenv("RESTORE_DRILL_WEBHOOK_URL", "https://hooks.example.com/x")
    notifier = load_notify(example)
    assert notifier.secrets == {"pw", "t0ken", "https://hooks.example.com/x"}
    assert notifier.config.email is not None
    assert notifier.config.email.port == 587


def test_the_cron_example_prunes_a_signed_ledger_with_the_runs_key() -> None:
    """A signed ledger can only be pruned with its key: cron's prune gets the key the same
    way as its run, from the crontab's environment (one line to uncomment)."""
    text = (CONTRIB / "cron" / "restore-drill").read_text()
    assert "# RESTORE_DRILL_SIGNING_KEY=" in text
    for name in ("run", "prune"):
        option = next(p for p in cli.commands[name].params if p.name == "signing_key")
        assert "[env RESTORE_DRILL_SIGNING_KEY]" in (option.help or "")  # type: ignore[attr-defined]
    assert "--sample" not in " ".join(command_lines())  # alerts on the time since verified
