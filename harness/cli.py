"""``restore-drill``: thin click commands over the library; the only place that prints and
turns errors into exit codes (see README, "Exit codes")."""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from harness import __version__
from harness.durations import format_duration
from harness.errors import ConfigError, DrillError, ExitCode, ScenarioError
from harness.redact import redact
from harness.scenario.loader import load_scenario, parse_vars
from harness.scenario.model import Scenario
from harness.scenario.schema import SCHEMA

DEFAULT_URI = "qemu:///system"


def _log(prefix: str, secrets: Iterable[str] = ()) -> Callable[[str], None]:
    secrets = tuple(secrets)

    def emit(message: str) -> None:
        stamp = datetime.now(UTC).strftime("%H:%M:%S")
        click.echo(redact(f"{stamp} {prefix}{message}", secrets), err=True)

    return emit


def _scenario_files(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
        else:
            files.append(path)
    if not files:
        raise ConfigError("no scenario files given (or the folder holds no .yaml files)")
    return files


def _load_all(paths: Iterable[Path], var: tuple[str, ...]) -> list[Scenario]:
    """Load every scenario and check its key; report all problems of all files at once."""
    from harness.remote.ssh import check_key  # paramiko import only when needed

    variables = parse_vars(var)
    scenarios, problems = [], []
    for file in _scenario_files(paths):
        try:
            scenario = load_scenario(file, variables)
            check_key(scenario.login.key_file)
            scenarios.append(scenario)
        except ScenarioError as exc:
            problems += exc.problems
        except ConfigError as exc:
            raise ConfigError(f"{file}: login.key_file: {exc}") from None
    if problems:
        raise ScenarioError(problems)
    return scenarios


var_option = click.option(
    "--var", "var", multiple=True, metavar="KEY=VALUE",
    help="Template variable for the scenario (repeatable).",
)  # fmt: skip
uri_option = click.option(
    "--connect", "uri", default=lambda: os.environ.get("LIBVIRT_DEFAULT_URI", DEFAULT_URI),
    show_default=DEFAULT_URI, help="libvirt connection URI.",
)  # fmt: skip


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="restore-drill")
def cli() -> None:
    """Boot backups in an isolated lab, prove the service works, judge RTO and RPO, and
    write dated evidence. Exit codes: 0 verified, 1 drill failed, 2 bad input,
    3 infrastructure error, 130 interrupted."""


@cli.command()
@click.argument("scenarios", nargs=-1, required=True, type=click.Path(path_type=Path))
@var_option
def validate(scenarios: tuple[Path, ...], var: tuple[str, ...]) -> None:
    """Check scenario files without running anything (exit 2 on any problem)."""
    for scenario in _load_all(scenarios, var):
        targets = scenario.targets
        click.echo(
            f"{scenario.source}: ok: {scenario.name}, {len(scenario.checks)} checks, "
            f"RTO {format_duration(targets.rto_s)}, RPO {format_duration(targets.rpo_s)}"
        )


@cli.command()
def schema() -> None:
    """Print the scenario file's JSON Schema (for editors)."""
    click.echo(json.dumps(SCHEMA, indent=2))


@cli.command()
@click.argument("scenarios", nargs=-1, required=True, type=click.Path(path_type=Path))
@var_option
@uri_option
@click.option(
    "--reports", type=click.Path(path_type=Path, file_okay=False),
    default=lambda: os.environ.get("RESTORE_DRILL_REPORTS", "reports"), show_default="reports",
    help="Folder for evidence (one dated sub-folder per run).",
)  # fmt: skip
@click.option("--keep", is_flag=True, help="Leave the lab up after the drill to look around.")
@click.option(
    "--signing-key", type=click.Path(path_type=Path, dir_okay=False),
    default=lambda: os.environ.get("RESTORE_DRILL_SIGNING_KEY"),
    help="Ed25519 key signing each manifest and the ledger head [env RESTORE_DRILL_SIGNING_KEY].",
)  # fmt: skip
@click.option(
    "--accelerator", type=click.Choice(["auto", "kvm", "tcg"]), default=None,
    help="Override the scenario's accelerator.",
)  # fmt: skip
def run(
    scenarios: tuple[Path, ...], var: tuple[str, ...], uri: str, reports: Path, keep: bool,
    signing_key: Path | None, accelerator: str | None,
) -> None:  # fmt: skip
    """Run drills; write evidence for each, passed or not."""
    from harness.drill import DrillOptions, run_drill
    from harness.evidence.index import build_index
    from harness.evidence.signing import load_private
    from harness.evidence.writer import write_evidence
    from harness.interrupts import Interrupts

    loaded = _load_all(scenarios, var)
    key = load_private(signing_key) if signing_key else None
    options = DrillOptions(uri=uri, keep=keep, accelerator=accelerator)
    worst = ExitCode.PASSED
    interrupts = Interrupts().install()
    try:
        for scenario in loaded:
            log = _log(f"[{scenario.name}] ", scenario.secrets)
            log(f"drill started ({scenario.source})")
            outcome = run_drill(scenario, options, log, interrupts)
            result = outcome.result
            folder = write_evidence(
                result, scenario.rendered, outcome.console_log, reports, scenario.secrets, key
            )
            build_index(reports)
            log(f"{result.verdict}: {result.reason}")
            log(f"evidence: {folder / 'report.html'}")
            if outcome.kept_hint:
                log(outcome.kept_hint)
            worst = max(worst, result.exit_code, key=_severity)
            if result.verdict == "ABORTED":
                break
    finally:
        interrupts.restore()
    sys.exit(worst)


def _severity(code: int) -> int:
    return [ExitCode.PASSED, ExitCode.FAILED, ExitCode.CONFIG, ExitCode.INFRA,
            ExitCode.ABORTED].index(code)  # fmt: skip


@cli.command()
@uri_option
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
def cleanup(uri: str, dry_run: bool) -> None:
    """Remove kept labs and labs left behind by a killed drill (running drills are spared)."""
    from harness.lab.hypervisor import Hypervisor
    from harness.lab.lifecycle import list_labs, reap

    with Hypervisor(uri) as hv:
        if dry_run:
            live = {r.lab_id for r in list_labs() if r.owner_alive() and not r.kept}
            for obj in hv.lab_objects():
                if obj.lab_id not in live:
                    click.echo(f"would remove {obj.kind} {obj.name}")
            return
        removed = reap(hv, include_kept=True)
    for item in removed:
        click.echo(f"removed {item}")
    click.echo(f"{len(removed)} object(s) removed" if removed else "nothing to clean up")


@cli.command()
@click.argument("reports", type=click.Path(path_type=Path, file_okay=False), default="reports")
@click.option(
    "--public-key", "public_keys", multiple=True, type=click.Path(path_type=Path, dir_okay=False),
    help="Trust only this public key (repeatable); then every run must be signed.",
)  # fmt: skip
def verify(reports: Path, public_keys: tuple[Path, ...]) -> None:
    """Check every manifest, file hash, the ledger chain and the signatures.

    Exit 0 only when all holds; otherwise every problem is listed and the exit code is 1."""
    from harness.evidence.signing import load_public
    from harness.evidence.verify import verify_reports

    if not reports.is_dir():
        raise ConfigError(f"{reports}: no such reports folder")
    pinned = [load_public(p.read_bytes(), str(p)) for p in public_keys] or None
    found = verify_reports(reports, pinned)
    for problem in found.problems:
        click.echo(f"FAIL {problem}")
    summary = f"{found.runs} run(s), {found.files} file(s), {found.signatures} signature(s) checked"
    if found.ok:
        click.echo(f"OK: {summary}; the ledger chain is intact")
        if not pinned and found.signatures:
            click.echo("note: signatures were checked against the keys stored in the reports "
                       "folder; pass --public-key for independent assurance")  # fmt: skip
        return
    click.echo(f"verification FAILED: {len(found.problems)} problem(s); {summary}")
    sys.exit(ExitCode.FAILED)


@cli.command()
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
def keygen(path: Path) -> None:
    """Create an Ed25519 signing key (0600) and PATH.pub."""
    from harness.evidence.signing import generate

    click.echo(f"signing key {path} ({generate(path)}); public key {path}.pub")


@cli.group()
def report() -> None:
    """Rebuild the history page, or print a report to PDF."""


@report.command("index")
@click.argument("reports", type=click.Path(path_type=Path, file_okay=False), default="reports")
@click.option("--gap-days", type=float, default=30, show_default=True,
              help="Flag scenarios whose last verified restore is older than this.")  # fmt: skip
def report_index(reports: Path, gap_days: float) -> None:
    """Rebuild REPORTS/index.html from the ledger."""
    from harness.evidence.index import build_index

    click.echo(str(build_index(reports, gap_days)))


@report.command("pdf")
@click.argument("run", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Output file (default: beside the run folder, RUN.pdf).")  # fmt: skip
def report_pdf(run: Path, out: Path | None) -> None:
    """Print a run's report.html to PDF (headless Chromium)."""
    from harness.evidence.pdf import print_pdf

    click.echo(str(print_pdf(run, out)))


@cli.command()
def labs() -> None:
    """List labs: running drills, kept labs and orphans."""
    from harness.lab.lifecycle import list_labs

    records = list_labs()
    if not records:
        click.echo("no labs")
    for r in records:
        state = "kept" if r.kept else ("running" if r.owner_alive() else "orphaned")
        created = datetime.fromtimestamp(r.created, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        where = f" {r.login}" if r.login else ""
        click.echo(f"{r.lab_id}  {state:9} {r.scenario}  since {created}{where}")


def main(argv: list[str] | None = None) -> Any:
    """Entry point: click's own usage errors exit 2; ours exit with their code."""
    try:
        return cli.main(args=argv, prog_name="restore-drill", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("restore-drill: interrupted", err=True)
        sys.exit(ExitCode.ABORTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(ExitCode.CONFIG)
    except ScenarioError as exc:
        for problem in exc.problems:
            click.echo(f"error: {problem}", err=True)
        click.echo(f"restore-drill: {len(exc.problems)} problem(s); nothing was run", err=True)
        sys.exit(exc.exit_code)
    except DrillError as exc:
        click.echo(f"restore-drill: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except Exception:  # a bug of ours: say so plainly, keep the details for the bug report
        click.echo("restore-drill: internal error (a bug; please report it):", err=True)
        if os.environ.get("RESTORE_DRILL_DEBUG"):
            traceback.print_exc()
        else:
            click.echo(f"  {traceback.format_exc().strip().splitlines()[-1]}", err=True)
            click.echo("  set RESTORE_DRILL_DEBUG=1 for the full traceback", err=True)
        sys.exit(ExitCode.INFRA)
