"""The drill's proof of the data: each machine's manifests read and their signatures checked
before anything boots (a swapped manifest fails at verify), then, after the restore and its
steps, each folder listed and hashed in the guest in one command and compared."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import paramiko

from harness.data import tree
from harness.data.compare import compare, summary
from harness.data.manifest import Entry, Manifest, ManifestError, parse
from harness.durations import format_size
from harness.errors import PhaseFailed
from harness.evidence.model import CheckResult, DataProof
from harness.remote.commands import run_capture
from harness.scenario.model import ExpectSpec
from harness.signing import load_public

MAX_MANIFEST_BYTES = 4 * 1024**3


@dataclass(frozen=True)
class Expected:
    """A manifest read and checked: what one folder of a machine must hold."""

    spec: ExpectSpec
    manifest: Manifest
    signature: str  # what the signature proves, in words

    @property
    def root(self) -> str:
        return self.spec.root or self.manifest.header.root


def read_manifests(specs: tuple[ExpectSpec, ...]) -> list[Expected]:
    """Each manifest parsed, and signed by the scenario's key where it names one; a manifest
    that cannot be trusted fails the verify phase, naming it and why."""
    out = []
    for spec in specs:
        name = str(spec.manifest)
        try:
            if spec.manifest.stat().st_size > MAX_MANIFEST_BYTES:
                raise PhaseFailed("verify", f"manifest {name} is larger than "
                                            f"{format_size(MAX_MANIFEST_BYTES)}")  # fmt: skip
            manifest = parse(spec.manifest.read_bytes())
            trusted = (load_public(spec.public_key.read_bytes(), str(spec.public_key))
                       if spec.public_key else None)  # fmt: skip
        except OSError as exc:
            raise PhaseFailed("verify", f"manifest {name}: {exc.filename}: "
                                        f"{exc.strerror}") from None  # fmt: skip
        except ManifestError as exc:
            raise PhaseFailed("verify", f"manifest {name}: {exc}") from None
        problem = manifest.check_signature(trusted)
        if problem:
            raise PhaseFailed("verify", f"manifest {name}: {problem}")
        if trusted is not None:
            said = f"signed by {manifest.signer}, the scenario's public key: verified"
        elif manifest.signer:
            said = (f"signed by {manifest.signer}; not verified: the scenario names no "
                    "public_key")  # fmt: skip
        else:
            said = "not signed"
        out.append(Expected(spec, manifest, said))
    return out


def prove(
    client: paramiko.SSHClient, expected: Expected, machine: str, several: bool, as_root: bool,
    phase: str, cancelled: Callable[[], None],
) -> tuple[DataProof, CheckResult]:  # fmt: skip
    """List and hash ``expected.root`` in the guest and compare it with the manifest (the
    check is named with its machine when the lab has ``several``)."""
    started = time.monotonic()
    manifest, spec = expected.manifest, expected.spec
    header = manifest.header
    proof = DataProof(
        machine=machine, source="manifest", root=expected.root,
        expected_from=str(spec.manifest), strict=spec.strict,
        manifest_sha256=manifest.sha256, manifest_created=header.created,
        manifest_host=header.host, signature=expected.signature, signer=manifest.signer,
    )  # fmt: skip
    found = _listing(client, phase, tree.command(expected.root, header.one_file_system, as_root),
                     expected.root, spec.timeout_s, cancelled, b"", header.excludes)
    compare(proof, manifest.entries, found or {}, spec.ignore)
    if found is None:
        proof.note = (f"{expected.root} does not exist in the guest: all "
                      f"{proof.files_expected} files missing")  # fmt: skip
    proof.duration_s = round(time.monotonic() - started, 2)
    name = f"data: {expected.root} matches {spec.manifest.name}"
    expectation = (f"{proof.files_expected} files, {format_size(proof.bytes_expected)}, as "
                   f"recorded{' on ' + header.host if header.host else ''}"
                   f"{' at ' + header.created if header.created else ''}; "
                   f"{', '.join(proof.compared)} compared"
                   + ("; no other file" if spec.strict else ""))  # fmt: skip
    return proof, _check(proof, name + (f" on {machine}" if several else ""), expectation,
                         summary(proof))


def prove_stream(
    client: paramiko.SSHClient, entries: list[Entry], target: str, machine: str, several: bool,
    as_root: bool, phase: str, cancelled: Callable[[], None], timeout_s: float,
    coarse: tuple[bytes, ...] = (),
) -> tuple[DataProof, CheckResult]:  # fmt: skip
    """Hash in the guest the files the restore stream held (as hashed on the host while it
    passed) and compare: every file the backup gave is in the guest, byte for byte (under a
    ``coarse`` folder, a FAT file system: content and size only)."""
    started = time.monotonic()
    proof = DataProof(machine=machine, source="restore stream", root=target,
                      expected_from="the backup's restore stream, hashed on this host as it "
                                    "passed")  # fmt: skip
    names = b"".join(b"./" + e.path + b"\0" for e in entries)
    found = _listing(client, phase, tree.files_command(target, as_root), target, timeout_s,
                     cancelled, names)
    if found is None:
        raise PhaseFailed(phase, f"{target}: {tree.FAILURES[tree.NO_FOLDER]}")
    compare(proof, entries, found, coarse=coarse)
    proof.duration_s = round(time.monotonic() - started, 2)
    fat = (f" (under {', '.join('/' + c.decode(errors='replace').rstrip('/') for c in coarse)}"
           ", a FAT file system: content and size)" if coarse else "")  # fmt: skip
    expectation = (f"the {proof.files_expected} files ({format_size(proof.bytes_expected)}) "
                   f"of the restore stream, hashed as it passed; "
                   f"{', '.join(proof.compared)} compared{fat}")
    observed = (f"{proof.files_expected} files, {format_size(proof.bytes_expected)} restored, "
                "all identical to the backup" if proof.passed and proof.files_expected
                else summary(proof))  # fmt: skip
    return proof, _check(proof, _stream_check_name(target, machine, several), expectation,
                         observed)


def stream_not_proven(target: str, machine: str, several: bool, problem: str) -> CheckResult:
    """The restore proof's check when the stream could not be read as tar: skipped (it proves
    nothing), never passed."""
    return CheckResult(_stream_check_name(target, machine, several), "data",
                       "the restore stream's files", f"not proven: {problem}", False, 0.0,
                       skipped=True)  # fmt: skip


def _stream_check_name(target: str, machine: str, several: bool) -> str:
    return (f"data: every file restored into {target} is the backup's"
            + (f" on {machine}" if several else ""))  # fmt: skip


def _listing(
    client: paramiko.SSHClient, phase: str, command: str, root: str, timeout_s: float,
    cancelled: Callable[[], None], stdin: bytes, excludes: tuple[str, ...] = (),
) -> dict[bytes, tree.Found] | None:  # fmt: skip
    """What :mod:`harness.data.tree`'s ``command`` lists in the guest; None when ``root`` does
    not exist there. A guest that cannot list fails ``phase``, saying why."""
    status, out, err = run_capture(client, phase, command, timeout_s, cancelled, stdin)
    if status == tree.NO_FOLDER:
        return None
    if status in tree.FAILURES:
        raise PhaseFailed(phase, f"{root}: {tree.FAILURES[status]}")
    if status != 0 and not out:
        raise PhaseFailed(phase, f"listing {root} in the guest exited {status}: "
                                 f"{err.strip()[-300:] or 'no output'}")  # fmt: skip
    try:
        return tree.parse(out, excludes)
    except ValueError as exc:
        raise PhaseFailed(phase, f"the guest's listing of {root} is unreadable: "
                                 f"{exc}") from None  # fmt: skip


def _check(proof: DataProof, name: str, expectation: str, observed: str) -> CheckResult:
    """The check a data proof adds to the drill's list (its verdict counts like any)."""
    return CheckResult(name, "data", expectation, observed, proof.passed, proof.duration_s)
