"""``restore-drill``: thin click commands over the library; the only place that prints and
turns errors into exit codes (see README, "Exit codes")."""

from __future__ import annotations

import glob
import json
import os
import posixpath
import re
import secrets
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from harness import __version__
from harness.durations import format_duration, format_size, parse_duration
from harness.errors import ConfigError, DrillError, ExitCode, Problem, ScenarioError
from harness.output.events import Event, Sink

if TYPE_CHECKING:  # loading scenarios (jsonschema, jinja2, PyYAML) waits for a command that does
    from harness.scenario.model import Scenario

DEFAULT_URI = "qemu:///system"


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
    """Load every scenario and check its key; report all problems of all files at once.
    Many files are loaded on every CPU (forked workers), in their order."""
    from harness.remote.ssh import check_key  # paramiko import only when needed
    from harness.scenario.loader import parse_vars

    variables = parse_vars(var)
    files = _scenario_files(paths)
    if len(files) >= PARALLEL_LOAD_FROM and (os.cpu_count() or 1) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        fork = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(os.cpu_count(), mp_context=fork) as pool:
            loaded = list(pool.map(_load_one, files, [variables] * len(files), chunksize=16))
    else:
        loaded = [_load_one(file, variables) for file in files]
    scenarios, problems = [], []
    checked: set[Path] = set()  # a key many scenarios share is read once
    for file, got in zip(files, loaded, strict=True):
        if isinstance(got, list):
            problems += got
            continue
        try:
            for key in {m.login.key_file for m in got.machines} - checked:
                check_key(key)
                checked.add(key)
        except ConfigError as exc:
            raise ConfigError(f"{file}: login.key_file: {exc}") from None
        scenarios.append(got)
    if problems:
        raise ScenarioError(problems)
    return scenarios


#: from this many scenario files on, they are loaded in parallel (a fork costs ~10 ms)
PARALLEL_LOAD_FROM = 64


def _load_one(file: Path, variables: dict[str, str]) -> Scenario | list[Problem]:
    """One scenario, or its problems (plain data: it may come back from a worker)."""
    from harness.scenario.loader import load_scenario

    try:
        return load_scenario(file, variables)
    except ScenarioError as exc:
        return list(exc.problems)


class _Duration(click.ParamType):  # type: ignore[type-arg]
    """``90s``, ``15m``, ``400d`` on the command line, as in scenario files."""

    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float):
            return value
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


DURATION = _Duration()

var_option = click.option(
    "--var", "var", multiple=True, metavar="KEY=VALUE",
    help="Template variable for the scenario (repeatable).",
)  # fmt: skip
reports_option = click.option(
    "--reports", type=click.Path(path_type=Path, file_okay=False),
    default=lambda: os.environ.get("RESTORE_DRILL_REPORTS", "reports"), show_default="reports",
    help="Folder for evidence (one dated sub-folder per run) [env RESTORE_DRILL_REPORTS].",
)  # fmt: skip
reports_argument = click.argument(
    "reports", type=click.Path(path_type=Path, file_okay=False), default="reports"
)
signing_key_option = click.option(
    "--signing-key", type=click.Path(path_type=Path, dir_okay=False),
    default=lambda: os.environ.get("RESTORE_DRILL_SIGNING_KEY"),
    help="Ed25519 key signing each manifest and the ledger head [env RESTORE_DRILL_SIGNING_KEY].",
)  # fmt: skip
uri_option = click.option(
    "--connect", "uri", default=lambda: os.environ.get("LIBVIRT_DEFAULT_URI", DEFAULT_URI),
    show_default=DEFAULT_URI, help="libvirt connection URI.",
)  # fmt: skip

hosts_option = click.option(
    "--hosts", "hosts_file", type=click.Path(path_type=Path, dir_okay=False),
    default=lambda: os.environ.get("RESTORE_DRILL_HOSTS"),
    help="Host inventory: spread drills over these libvirt hosts [env RESTORE_DRILL_HOSTS].",
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
@click.argument("backup")
@click.option("--key", "key_file", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="The drill's SSH key (created if missing; default "
              "~/.config/restore-drill/drill_ed25519).")  # fmt: skip
@click.option("--name", default=None, help="Scenario name (default: from the backup).")
@click.option("--kind", type=click.Choice(["disk-image", "tar", "file", "restic", "borg",
                                           "pgbackrest"]),
              default="disk-image", show_default=True,
              help="For restic, borg and pgbackrest, BACKUP is the repository.")  # fmt: skip
@click.option("--stanza", default=None,
              help="pgbackrest: the stanza (default: the repository's only one).")
@click.option("--base-image", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="File-level kinds: the VM image the files are restored into.")
@click.option("--target", default=None,
              help="File-level kinds: where the files land in the restored VM (default: "
              "--subpath, else /: where they were on the server).")
@click.option("--subpath", default=None,
              help="tar/restic/borg: restore only this folder of the backup (e.g. /var/www/html).")
@click.option("--host", default=None,
              help="restic/borg: the server whose newest snapshot is drilled (shared repository).")
@click.option("--password-file", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="restic/borg: the repository's password, in a file.")
@click.option("--accelerator", type=click.Choice(["auto", "kvm", "tcg"]), default="auto",
              show_default=True, help="For the inspection's own small VM (libguestfs).")
def init(
    backup: str, key_file: Path | None, name: str | None, kind: str, base_image: Path | None,
    target: str | None, subpath: str | None, host: str | None, password_file: Path | None,
    accelerator: str, stanza: str | None,
) -> None:  # fmt: skip
    """Inspect BACKUP (read-only) and print a first scenario that runs as it is.

    restore-drill init /backups/web.qcow2 > web.yaml && restore-drill run web.yaml

    restore-drill init --kind restic /srv/restic-repo --password-file pw --base-image base.qcow2

    restore-drill init --kind pgbackrest /srv/pgbackrest --base-image db-base.qcow2
    """
    from harness.guest.init import (
        disk_image_draft,
        ensure_key,
        file_level_draft,
        inspect_backup,
        pgbackrest_draft,
        scenario_text,
    )
    from harness.lab import accel
    from harness.lab.lifecycle import state_root

    if kind != "disk-image" and base_image is None:
        raise ConfigError(f"--kind {kind}: the files are restored into a VM: give its image "
                          "with --base-image")  # fmt: skip
    if stanza is not None and kind != "pgbackrest":
        raise ConfigError(f"--stanza: a {kind} backup has no stanza (pgbackrest only)")
    for option, value in (("--target", target), ("--subpath", subpath)):
        if value is not None and not value.startswith("/"):
            raise ConfigError(f"{option} {value}: must be an absolute path")
    def tcg() -> bool:  # asked once the input is sound: a machine's first answer probes KVM
        return accel.choose(accelerator, state_root())[0] != "kvm"

    stem = Path(backup.rstrip("/")).stem
    if kind == "disk-image":
        inspection = inspect_backup(Path(backup), tcg)
        stem = name or inspection.system.get("hostname") or stem
        draft = disk_image_draft(Path(backup), inspection, "")
    elif kind == "pgbackrest":
        assert base_image is not None  # noqa: S101 - checked above
        draft = pgbackrest_draft(backup, stanza, base_image, tcg, "")
    else:
        assert base_image is not None  # noqa: S101 - checked above
        draft = file_level_draft(kind, backup, password_file, target, base_image, tcg, "",
                                 host, subpath and posixpath.normpath(subpath))  # fmt: skip
        for warning in draft.warnings:
            click.echo(f"restore-drill init: warning: {warning}", err=True)
    draft.name = re.sub(r"[^a-z0-9-]+", "-", (name or stem).lower()).strip("-")[:40] or "drill"
    key_file = key_file or Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config"),
                                "restore-drill", "drill_ed25519")  # fmt: skip
    if ensure_key(key_file):
        click.echo(f"init: created the drill key {key_file} (keep it readable by root only)",
                   err=True)  # fmt: skip
    click.echo(scenario_text(draft, key_file), nl=False)
    found = ", ".join(k.unit for k in draft.known) or "no service restore-drill knows"
    click.echo(f"init: {backup}: {draft.found}; checks for {found}", err=True)


@cli.command()
def schema() -> None:
    """Print the scenario file's JSON Schema (for editors)."""
    from harness.scenario.schema import SCHEMA

    click.echo(json.dumps(SCHEMA, indent=2))


@cli.command()
@click.argument("scenarios", nargs=-1, required=True, type=click.Path(path_type=Path))
@var_option
@uri_option
@reports_option
@click.option("--keep", is_flag=True, help="Leave the lab up after the drill to look around.")
@signing_key_option
@click.option(
    "--accelerator", type=click.Choice(["auto", "kvm", "tcg"]), default=None,
    help="Override the scenario's accelerator.",
)  # fmt: skip
@click.option("--parallel", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Drill up to N scenarios at once (each in its own process), as host memory "
                   "allows.")  # fmt: skip
@click.option("--sample", type=click.IntRange(1), default=None, metavar="N",
              help="Drill only N scenarios picked at random from those given.")  # fmt: skip
@click.option("--seed", type=int, default=None,
              help="Seed for --sample (logged, to repeat a pick).")  # fmt: skip
@click.option("--wait-lock", type=DURATION, default="0s", show_default=True,
              help="How long to wait for a scenario another run is drilling; then skip it "
                   "(exit 75).")  # fmt: skip
@click.option("--wait-backup", type=DURATION, default="0s", show_default=True,
              help="How long to wait for a backup that holds a scenario's restic or borg "
                   "repository locked; then skip the scenario (exit 75).")  # fmt: skip
@click.option("--libvirt-timeout", type=DURATION, default="60s", show_default=True,
              help="A libvirt call unanswered this long means libvirtd is hung: the drill "
                   "ends as an infrastructure error.")  # fmt: skip
@click.option("--stop-grace", type=DURATION, default=f"{60}s", show_default=True,
              help="After Ctrl-C/SIGTERM, how long parallel drills get to clean up and write "
                   "their reports before they are killed (a second signal: 5s).")  # fmt: skip
@click.option("--log-format", type=click.Choice(["auto", "live", "text", "json"]), default="auto",
              show_default=True,
              help="auto: live display on a terminal, text lines otherwise.")  # fmt: skip
@click.option(
    "--notify", "notify_file", type=click.Path(path_type=Path, dir_okay=False),
    default=lambda: os.environ.get("RESTORE_DRILL_NOTIFY"),
    help="Notification config (email, webhook, Prometheus textfile) [env RESTORE_DRILL_NOTIFY].",
)  # fmt: skip
@hosts_option
@click.option("--on", "on_host", default=None, hidden=True)  # the host a parent run placed it on
def run(
    scenarios: tuple[Path, ...], var: tuple[str, ...], uri: str, reports: Path, keep: bool,
    signing_key: Path | None, accelerator: str | None, parallel: int, sample: int | None,
    seed: int | None, wait_lock: float, wait_backup: float, libvirt_timeout: float,
    stop_grace: float, log_format: str, notify_file: Path | None, hosts_file: Path | None,
    on_host: str | None,
) -> None:  # fmt: skip
    """Run drills; write evidence for each, passed or not.

    Exit code: the worst of all drills (0 all verified, 1 a drill failed, 2 bad input,
    3 infrastructure error, 75 a scenario was skipped because another run held it, a
    backup was running on its repository or no host of --hosts could run it, 130
    interrupted)."""
    from harness.hosts.inventory import load_inventory

    source = click.get_current_context().get_parameter_source("uri")
    if hosts_file and not on_host and source == click.core.ParameterSource.COMMANDLINE:
        raise ConfigError("give --connect or --hosts, not both: the inventory names each "
                          "host's libvirt URI")  # fmt: skip
    inventory = load_inventory(hosts_file) if hosts_file else None  # bad input: before all else
    loaded = _load_all(scenarios, var)

    from harness import batch
    from harness.drill import DrillOptions
    from harness.interrupts import Interrupts
    from harness.notify import load_notify
    from harness.signing import load_private

    notifier = load_notify(notify_file) if notify_file else None
    key = load_private(signing_key) if signing_key else None
    seed = seed if seed is not None else secrets.randbelow(1 << 31)
    chosen = batch.sample(loaded, sample, seed)
    secret_values = {s for scenario in loaded for s in scenario.secrets}
    if notifier:
        secret_values |= notifier.secrets
    interrupts = Interrupts()
    with _sink(log_format, secret_values) as sink:
        if len(chosen) < len(loaded):
            names = ", ".join(s.name for s in chosen)
            sink(Event("batch", "", f"sampled {len(chosen)} of {len(loaded)} scenarios "
                                    f"(--seed {seed}): {names}"))  # fmt: skip
        interrupts.install()
        host = inventory.named(on_host) if inventory and on_host else None
        options = DrillOptions(host.uri if host else uri, keep, accelerator, libvirt_timeout,
                               host)  # fmt: skip
        plan = batch.Plan(reports, options, key, wait_lock, wait_backup)
        admission = (batch.host_admission(inventory, libvirt_timeout, sink)
                     if inventory and not host else None)  # fmt: skip
        try:
            if parallel > 1 and len(chosen) > 1:
                argv = batch.child_command({
                    "--var": var, "--connect": uri, "--reports": reports, "--keep": keep,
                    "--signing-key": signing_key, "--accelerator": accelerator,
                    "--wait-lock": f"{wait_lock}s", "--wait-backup": f"{wait_backup}s",
                    "--libvirt-timeout": f"{libvirt_timeout}s", "--hosts": hosts_file,
                })  # fmt: skip
                finished = batch.run_in_children(chosen, argv, parallel, sink, interrupts,
                                                 plan, stop_grace, admission)  # fmt: skip
            else:
                finished = batch.run_in_process(chosen, plan, sink, interrupts, admission)
        finally:
            interrupts.restore()
        batch.write_summary(finished, sink)
        if notifier:
            for problem in notifier.send(finished, reports):
                sink(Event("batch", "", f"notify: {problem}"))
    sys.exit(ExitCode.ABORTED if interrupts.received else batch.exit_code(finished))


@cli.command("find-clean")
@click.argument("scenario", type=click.Path(path_type=Path))
@click.argument("images", nargs=-1, type=click.Path(path_type=Path))
@var_option
@reports_option
@signing_key_option
@click.option("--log-format", type=click.Choice(["auto", "live", "text", "json"]), default="auto",
              show_default=True)  # fmt: skip
def find_clean(scenario: Path, images: tuple[Path, ...], var: tuple[str, ...], reports: Path,
               signing_key: Path | None, log_format: str) -> None:  # fmt: skip
    """The newest restore point that scans clean: restic snapshots or borg archives newest
    first (as the scenario's selector takes them), or IMAGES (disk image files, newest
    first), each scanned with the scenario's scan: settings and nothing restored or booted;
    a report for each point scanned.

    Exit code: 0 a clean point was found; 1 every point is infected, or the walk stopped at
    a point that failed its verification; 2 bad input; 3 a point could not be scanned; 130
    interrupted."""
    [loaded] = _load_all([scenario], var)
    from harness import batch, findclean
    from harness.drill import DrillOptions
    from harness.interrupts import Interrupts
    from harness.signing import load_private

    key = load_private(signing_key) if signing_key else None
    points = findclean.restore_points(loaded, list(images))
    interrupts = Interrupts()
    with _sink(log_format, set(loaded.secrets)) as sink:
        interrupts.install()
        try:
            plan = batch.Plan(reports, DrillOptions(), key)
            found = findclean.walk(points, plan, sink, interrupts)
        finally:
            interrupts.restore()
    for point, done in found.points:
        click.echo(f"{point}: {done.verdict}: {done.reason}"
                   + (f" ({done.report})" if done.report else ""))  # fmt: skip
    if found.clean is not None:
        click.echo(f"newest clean restore point: {found.clean}")
        sys.exit(ExitCode.PASSED)
    if interrupts.received:
        sys.exit(ExitCode.ABORTED)
    if not points:
        click.echo("no restore point to scan: none matches the scenario's selector")
        sys.exit(ExitCode.FAILED)
    last = found.points[-1] if found.points else None
    if last is None or findclean.INFECTED in last[1].reason:
        click.echo(f"no clean restore point: {len(found.points)} of {len(points)} scanned, "
                   "each infected")  # fmt: skip
        sys.exit(ExitCode.FAILED)
    click.echo(f"stopped at {last[0]}: it could not be scanned ({last[1].verdict}); an older "
               "clean point would not be the newest clean one")  # fmt: skip
    sys.exit(last[1].exit_code or ExitCode.INFRA)


@contextmanager
def _sink(log_format: str, secret_values: set[str]) -> Iterator[Sink]:
    """Where the run's events go: the live display on a terminal, else lines on stderr."""
    from harness.output.lines import LineSink

    if log_format == "auto":
        log_format = "live" if sys.stderr.isatty() and os.environ.get("TERM") != "dumb" else "text"
    if log_format == "live":
        from harness.output.live import LiveSink

        with LiveSink(secrets=secret_values) as live:
            yield live
        return
    yield LineSink(sys.stderr, json=log_format == "json", secrets=secret_values)


@cli.command()
@uri_option
@hosts_option
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
def cleanup(uri: str, hosts_file: Path | None, dry_run: bool) -> None:
    """Remove kept labs and labs left behind by a killed drill (running drills are spared),
    on this machine or on every host of the inventory. Exit 3 if a host did not answer."""
    from harness.hosts.inventory import load_inventory, local_host
    from harness.lab.host import lab_host
    from harness.lab.hypervisor import Hypervisor
    from harness.lab.lifecycle import list_labs, reap, state_root

    hosts = load_inventory(hosts_file).hosts if hosts_file else (local_host(uri, 1),)
    removed: list[str] = []
    unreached = []
    for spec in hosts:
        where = f" on {spec.name}" if hosts_file else ""
        try:
            with Hypervisor(spec.uri) as hv:
                if dry_run:
                    live = {r.lab_id for r in list_labs() if r.owner_alive() and not r.kept}
                    for obj in hv.lab_objects():
                        if obj.lab_id not in live:
                            click.echo(f"would remove {obj.kind} {obj.name}{where}")
                    continue
                host = lab_host(hv, spec if hosts_file else None, state_root() / "labs")
                removed += [f"{item}{where}" for item in reap(hv, include_kept=True, host=host)]
        except DrillError as exc:
            if not hosts_file:
                raise
            unreached.append(spec.name)
            click.echo(f"host {spec.name} ({spec.uri}) did not answer: {exc}; what a drill "
                       "left there stays until it answers", err=True)  # fmt: skip
    for item in removed:
        click.echo(f"removed {item}")
    if not dry_run:
        click.echo(f"{len(removed)} object(s) removed" if removed else "nothing to clean up")
    if unreached:
        sys.exit(ExitCode.INFRA)


@cli.command()
@reports_argument
@click.option(
    "--public-key", "public_keys", multiple=True, type=click.Path(path_type=Path, dir_okay=False),
    help="Trust only this public key (repeatable); then every run must be signed.",
)  # fmt: skip
def verify(reports: Path, public_keys: tuple[Path, ...]) -> None:
    """Check every manifest, file hash, the ledger chain and the signatures.

    Exit 0 only when all holds; otherwise every problem is listed and the exit code is 1."""
    from harness.evidence.verify import verify_reports
    from harness.signing import load_public

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
    from harness.signing import generate

    click.echo(f"signing key {path} ({generate(path)}); public key {path}.pub")


@cli.command()
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--exclude", multiple=True, metavar="PATTERN",
              help="Leave out paths matching PATTERN (the relative path or the last name; "
                   "a folder takes everything under it). Repeatable.")
@click.option("--one-file-system", is_flag=True, help="Stay on FOLDER's file system.")
@click.option("--as", "recorded_as", default=None, metavar="PATH",
              help="Record the folder as PATH: where it lives on the server when FOLDER is "
                   "a snapshot's mount point (default: FOLDER's absolute path).")
@click.option("--sign", "signing_key", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="Sign the manifest with this Ed25519 key (restore-drill "
                                 "keygen); a drill checks it with expect.public_key.")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write to this file (atomically: never left half-written) instead of "
                   "standard output.")
@click.option("--threads", type=click.IntRange(1, 64), default=None,
              help="Hashing threads (default: the CPUs, up to 8).")
def manifest(
    folder: Path, exclude: tuple[str, ...], one_file_system: bool, recorded_as: str | None,
    signing_key: Path | None, output: Path | None, threads: int | None,
) -> None:  # fmt: skip
    """Record every regular file under FOLDER (SHA-256, size, mode, owner, mtime), at backup
    time, for a drill's expect.manifest; sha256sum -c reads it as it is."""
    from harness.data.manifest import Header, write
    from harness.data.scan import ScanError, scan
    from harness.signing import fingerprint, load_private

    key = load_private(signing_key) if signing_key else None
    root = recorded_as or str(folder.resolve())
    if not root.startswith("/"):
        raise ConfigError(f"--as {root}: give an absolute path")
    if output is not None and output.resolve().parent.is_relative_to(folder.resolve()):
        # the manifest itself (and its partial file) cannot be in the manifest
        mine = output.resolve().relative_to(folder.resolve())
        exclude = (*exclude, glob.escape(str(mine)),
                   glob.escape(str(mine.with_name(f".{mine.name}.partial"))))  # fmt: skip
    header = Header(root, datetime.now(UTC).replace(microsecond=0).isoformat(),
                    os.uname().nodename, exclude, one_file_system)  # fmt: skip
    progress = _progress() if sys.stderr.isatty() else None
    entries = scan(str(folder), exclude, one_file_system, threads or 0, progress)
    try:
        if output is None:
            files, total, _ = write(sys.stdout.buffer, header, entries, key)
            sys.stdout.buffer.flush()
        else:
            partial = output.with_name(f".{output.name}.partial")
            with partial.open("wb") as fh:
                files, total, _ = write(fh, header, entries, key)
                fh.flush()
                os.fsync(fh.fileno())
            partial.replace(output)
    except ScanError as exc:
        raise ConfigError(f"{exc}; no manifest was written" if output else str(exc)) from None
    finally:
        if output is not None:
            output.with_name(f".{output.name}.partial").unlink(missing_ok=True)
    if progress is not None:
        click.echo("", err=True)
    signed = f", signed by {fingerprint(key.public_key())}" if key else ""
    click.echo(f"manifest: {files} files, {format_size(total)} under {root}{signed}", err=True)


def _progress() -> Callable[[int, int], None]:
    """A progress line on the terminal, at most twice a second."""
    state = {"at": 0.0}

    def show(files: int, hashed: int) -> None:
        now = time.monotonic()
        if now - state["at"] >= 0.5:
            state["at"] = now
            click.echo(f"\r{files} files, {hashed / 2**20:.0f} MiB hashed", err=True, nl=False)

    return show


@cli.group()
def report() -> None:
    """Rebuild the history page, or print a report to PDF."""


@report.command("index")
@reports_argument
@click.option("--gap-days", type=float, default=30, show_default=True,
              help="Flag scenarios whose last verified restore is older than this.")  # fmt: skip
def report_index(reports: Path, gap_days: float) -> None:
    """Rebuild REPORTS/index.html from the ledger."""
    from harness.evidence.index import build_index

    if not reports.is_dir():
        raise ConfigError(f"{reports}: no such reports folder")

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
        host = f" on {r.host}" if r.host else ""
        click.echo(f"{r.lab_id}  {state:9} {r.scenario}{host}  since {created}{where}")


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("lab", required=False)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--vm", "machine", default=None, help="Which VM of a lab of several (its name).")
@reports_option
def ssh(lab: str | None, command: tuple[str, ...], machine: str | None, reports: Path) -> None:
    """Open a shell (or run COMMAND) in a kept lab's VM over OpenSSH.

    LAB is a run (its report folder's name, in --reports), a lab id (or its start) or a
    scenario name; it may be left out when one lab is kept. The guest's host key recorded
    at the drill's first login is pinned."""
    from harness.lab import netns
    from harness.lab.lifecycle import list_labs

    if lab and (reports / lab / "report.json").is_file():  # a run: the lab it kept
        try:
            lab = str(json.loads((reports / lab / "report.json").read_text())["lab"]["lab_id"])
        except (OSError, ValueError, KeyError, TypeError):
            raise ConfigError(f"{reports / lab}: this run recorded no lab") from None
    kept = [r for r in list_labs() if r.kept and r.ssh]
    if lab:
        kept = [r for r in kept if r.lab_id.startswith(lab) or r.scenario == lab]
    if len(kept) != 1:
        names = ", ".join(f"{r.lab_id} ({r.scenario})" for r in kept) or "none"
        what = f"matching {lab!r}" if lab else "kept"
        raise ConfigError(f"need exactly one lab {what}; found: {names} "
                          "(see `restore-drill labs`; run with --keep to keep one)")  # fmt: skip
    [record] = kept
    args = record.machines.get(machine) if machine else record.ssh
    if not args:
        raise ConfigError(f"lab {record.lab_id} has no VM {machine!r}; it has: "
                          f"{', '.join(record.machines) or 'one'}")  # fmt: skip
    sys.stdout.flush()
    # A replicated lab's machines are reachable only from inside its namespace.
    inside = ["ip", "netns", "exec", netns.name_of(record.lab_id)] if record.netns else []
    try:
        os.execvp((inside or ["ssh"])[0], [*inside, "ssh", *args, *command])  # noqa: S606
    except OSError as exc:
        raise ConfigError(f"cannot run ssh ({exc.strerror}): install openssh-client") from None


@cli.command()
@reports_argument
@click.option("--older-than", type=DURATION, required=True, metavar="DURATION",
              help="Prune runs that started longer ago than this, e.g. 400d.")  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Only list what would be pruned.")
@signing_key_option
def prune(reports: Path, older_than: float, dry_run: bool, signing_key: Path | None) -> None:
    """Remove old run folders; the ledger records them as pruned and stays verifiable.

    Each scenario's latest run and latest verified run are always kept."""
    from harness.evidence.retention import prune as prune_runs
    from harness.signing import load_private

    if not reports.is_dir():
        raise ConfigError(f"{reports}: no such reports folder")
    key = load_private(signing_key) if signing_key else None
    pruned = prune_runs(reports, older_than, datetime.now(UTC), dry_run, key)
    verb = "would prune" if dry_run else "pruned"
    for run in pruned:
        click.echo(f"{verb} {run.run_id}")
    click.echo(f"{len(pruned)} run(s) {verb}" if pruned else "nothing to prune")


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
    except Exception:  # a bug of ours: say so plainly, with the traceback (cron mails it)
        click.echo("restore-drill: internal error (a bug; please report it):", err=True)
        traceback.print_exc()
        sys.exit(ExitCode.INFRA)
