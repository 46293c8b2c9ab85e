"""Backing chains (an incremental qcow2 over a full backup): every layer found as QEMU finds
it, checked, hashed and proven unchanged; a broken chain fails verify naming the layer."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest

from harness.errors import PhaseFailed
from harness.qemu_img import MAX_CHAIN_DEPTH
from harness.scenario.loader import load_scenario
from harness.sources import Proof, open_source
from harness.sources.disk_image import DiskImageSource


def qcow2(path: Path, backing: str | None = None, *, unsafe: bool = False) -> Path:
    args = ["qemu-img", "create", "-q", "-f", "qcow2"]
    if backing is not None:
        args += ["-b", backing, "-F", "qcow2"] + (["-u"] if unsafe else [])
    subprocess.run([*args, str(path), "16M"], check=True, cwd=path.parent)
    return path


def source(folder: Path, backup: Path) -> DiskImageSource:
    (folder / "s.yaml").write_text(
        f"version: 1\nname: chain\nbackup: {{path: {backup}}}\ntargets: {{rto: 15m, rpo: 1d}}\n"
        "vm: {memory: 512MiB}\nlogin: {user: root, key_file: key}\n"
        "checks: [{name: c, service: nginx}]\n"
    )
    (folder / "key").touch()
    scenario = load_scenario(folder / "s.yaml")
    made = open_source(scenario.primary.backup, scenario.primary.vm)
    assert isinstance(made, DiskImageSource)
    return made


def test_an_incremental_is_verified_with_every_layer_resolved_as_qemu_does(
    tmp_path: Path,
) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "incr").mkdir()
    full = qcow2(tmp_path / "full" / "web.qcow2")
    # Relative names resolve from the folder of the image that names them, not from the cwd.
    mid = qcow2(tmp_path / "incr" / "mon.qcow2", "../full/web.qcow2")
    top = qcow2(tmp_path / "incr" / "tue.qcow2", "mon.qcow2")
    src = source(tmp_path, top)
    evidence, disk = src.verify()
    assert [layer.path for layer in disk.chain] == [mid, tmp_path / "incr" / "../full/web.qcow2"]
    assert [(c.order, c.format) for c in evidence.chain] == [(1, "qcow2"), (2, "qcow2")]
    assert Path(evidence.chain[1].path).resolve() == full
    assert "backing chain of 2 layer(s) checked" in evidence.image_check
    src.hash(evidence, threading.Event())
    assert all(len(layer.sha256) == 64 for layer in evidence.chain)
    src.confirm_unchanged(evidence, Proof())
    assert evidence.unchanged is True
    assert [layer.unchanged for layer in evidence.chain] == [True, True]


def test_a_layer_changed_during_the_drill_makes_the_backup_changed(tmp_path: Path) -> None:
    full = qcow2(tmp_path / "full.qcow2")
    src = source(tmp_path, qcow2(tmp_path / "incr.qcow2", "full.qcow2"))
    evidence, _ = src.verify()
    src.hash(evidence, threading.Event())
    os.chmod(full, 0o600)  # only the full backup below: ctime and mode change
    src.confirm_unchanged(evidence, Proof())
    assert evidence.chain[0].unchanged is False
    assert evidence.unchanged is False


@pytest.mark.parametrize("broken", ["missing", "loop", "protocol", "too deep"])
def test_a_broken_chain_fails_verify_naming_the_layer(tmp_path: Path, broken: str) -> None:
    if broken == "missing":
        top = qcow2(tmp_path / "incr.qcow2", "gone/full.qcow2", unsafe=True)
        expected = f"layer 1 of the backing chain of {top} (named by {top}): " \
                   f"{tmp_path}/gone/full.qcow2 does not exist"  # fmt: skip
    elif broken == "loop":
        qcow2(tmp_path / "b.qcow2", "a.qcow2", unsafe=True)
        top = qcow2(tmp_path / "a.qcow2", "b.qcow2", unsafe=True)
        expected = f"{tmp_path}/a.qcow2 loops back into the chain"
    elif broken == "protocol":
        top = qcow2(tmp_path / "incr.qcow2", "nbd://127.0.0.1:10809/x", unsafe=True)
        expected = "'nbd://127.0.0.1:10809/x' is not a file (a protocol)"
    else:
        name = "l0.qcow2"
        qcow2(tmp_path / name)
        for n in range(1, MAX_CHAIN_DEPTH + 2):
            qcow2(tmp_path / f"l{n}.qcow2", name, unsafe=True)
            name = f"l{n}.qcow2"
        top = tmp_path / name
        expected = f"is deeper than {MAX_CHAIN_DEPTH} layers"
    with pytest.raises(PhaseFailed) as caught:
        source(tmp_path, top).verify()
    assert caught.value.phase == "verify"
    assert expected in str(caught.value)


def test_a_forced_stop_cuts_the_re_hash_short_and_stat_proves_it(tmp_path: Path) -> None:
    """A second Ctrl-C during teardown: the backup's second full read stops at once, and the
    evidence says the proof is by stat (ctime included), not by a hash that never ended."""
    qcow2(tmp_path / "full.qcow2")
    src = source(tmp_path, qcow2(tmp_path / "incr.qcow2", "full.qcow2"))
    evidence, _ = src.verify()
    src.hash(evidence, threading.Event())
    forced = threading.Event()
    forced.set()
    src.confirm_unchanged(evidence, Proof(stop=forced))
    assert (evidence.unchanged, evidence.unchanged_by) == (True, "stat")
    assert evidence.details["unchanged proof"] == "by stat: the re-hash was cut short (forced stop)"
    assert evidence.sha256_after is None


def test_a_second_signal_forces() -> None:
    import signal

    from harness.errors import Aborted
    from harness.interrupts import Interrupts

    interrupts = Interrupts().install()
    try:
        with pytest.raises(Aborted), interrupts.armed():  # noqa: PT012 - the signal's moment
            os.kill(os.getpid(), signal.SIGTERM)
            threading.Event().wait(5)
        assert not interrupts.forced.is_set()  # the first signal aborts; teardown runs in full
        os.kill(os.getpid(), signal.SIGINT)  # during teardown: remembered, and forces
        assert interrupts.forced.is_set()
        assert interrupts.received == "SIGTERM"
    finally:
        interrupts.restore()
