"""Tamper evidence: build a real reports folder, break it in every way, verify names it."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from harness.evidence import ledger
from harness.evidence.verify import verify_reports
from harness.evidence.writer import write_evidence
from harness.signing import generate, load_private, load_public
from tests.unit.test_evidence import result


def make_reports(folder: Path, runs: int = 3, key: Path | None = None) -> list[Path]:
    signing_key = load_private(key) if key else None
    made = []
    for i in range(runs):
        run = replace(result("PASS" if i % 2 == 0 else "FAIL"),
                      started_at=f"2026-11-{10 + i:02d}T02:00:00+00:00")  # fmt: skip
        made.append(write_evidence(run, "s: 1\n", b"log\n", folder, [], signing_key))
    return made


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "signing.key"
    generate(path)
    return path


@pytest.fixture
def signed(tmp_path: Path, key: Path) -> tuple[Path, list[Path]]:
    reports = tmp_path / "reports"
    return reports, make_reports(reports, key=key)


def problems(reports: Path, key: Path | None = None) -> list[str]:
    pinned = [load_public(Path(f"{key}.pub").read_bytes(), "test")] if key else None
    return verify_reports(reports, pinned).problems


def test_untouched_reports_verify(signed: tuple[Path, list[Path]], key: Path) -> None:
    reports, _ = signed
    found = verify_reports(reports, [load_public(Path(f"{key}.pub").read_bytes(), "t")])
    assert found.ok, found.problems
    assert found.runs == 3
    assert found.files == 15
    assert found.signatures == 4  # three manifests and the ledger head


def test_a_flipped_byte_is_named(signed: tuple[Path, list[Path]]) -> None:
    reports, runs = signed
    html = runs[1] / "report.html"
    data = bytearray(html.read_bytes())
    data[100] ^= 0x01
    html.write_bytes(bytes(data))
    assert problems(reports) == [f"{runs[1].name}/report.html: content changed (sha256 "
                                 f"{__import__('hashlib').sha256(data).hexdigest()})"]  # fmt: skip


def test_a_deleted_run_is_named(signed: tuple[Path, list[Path]]) -> None:
    reports, runs = signed
    subprocess.run(["rm", "-r", str(runs[0])], check=True)
    assert problems(reports) == [
        f"{runs[0].name}: recorded in the ledger but the folder is missing (deleted)"
    ]


def test_reordered_ledger_is_named(signed: tuple[Path, list[Path]]) -> None:
    reports, _ = signed
    path = reports / "ledger.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[1] + lines[0] + lines[2])
    found = problems(reports)
    assert any("ledger line 1" in p and "edited, removed or reordered" in p for p in found)
    assert any("ledger line 2" in p and "sequence number 1, expected 2" in p for p in found)


def test_edited_ledger_entry_is_named(signed: tuple[Path, list[Path]]) -> None:
    reports, runs = signed
    path = reports / "ledger.jsonl"
    text = path.read_text().splitlines()
    text[1] = text[1].replace('"verdict":"FAIL"', '"verdict":"PASS"')
    path.write_text("\n".join(text) + "\n")
    found = problems(reports)
    assert any("ledger line 3" in p and "does not follow line 2" in p for p in found)
    assert any(f"(run {runs[1].name}): verdict 'PASS' differs from the report's 'FAIL'" in p
               for p in found)  # fmt: skip


def test_truncated_ledger_tail_is_caught_by_the_signed_head(
    signed: tuple[Path, list[Path]],
) -> None:
    reports, runs = signed
    path = reports / "ledger.jsonl"
    path.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[:2]))
    subprocess.run(["rm", "-r", str(runs[2])], check=True)
    [found] = problems(reports)
    assert found.startswith("ledger.sig: the signed head does not match")


def test_bad_manifest_signature_is_named(signed: tuple[Path, list[Path]]) -> None:
    reports, runs = signed
    sig = runs[0] / "manifest.sha256.sig"
    doc = json.loads(sig.read_text())
    doc["signature"] = doc["signature"][:-4] + (
        "AAA=" if doc["signature"][-4:] != "AAA=" else "BBB="
    )
    sig.write_text(json.dumps(doc))
    assert problems(reports) == [f"{runs[0].name}/manifest.sha256.sig: bad signature"]


def test_other_key_is_refused_when_a_key_is_pinned(
    signed: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    reports, _ = signed
    other = tmp_path / "other.key"
    generate(other)
    found = problems(reports, other)
    assert len(found) == 4
    assert all("signed by an unknown key" in p for p in found)


def test_added_files_and_folders_are_named(signed: tuple[Path, list[Path]]) -> None:
    reports, runs = signed
    (runs[0] / "extra.txt").write_text("later")
    (reports / "2026-11-30T020000Z_forged").mkdir()
    found = problems(reports)
    assert f"{runs[0].name}/extra.txt: not in the manifest (added afterwards)" in found
    assert "2026-11-30T020000Z_forged: run folder not recorded in the ledger" in found


def test_unsigned_reports_verify_but_pinned_key_requires_signatures(
    tmp_path: Path, key: Path
) -> None:
    reports = tmp_path / "plain"
    make_reports(reports)
    assert problems(reports) == []
    found = problems(reports, key)
    assert "ledger.sig: missing: the ledger head is not signed" in found
    assert sum("manifest is not signed" in p for p in found) == 3


def test_verify_cli_exit_codes(signed: tuple[Path, list[Path]], key: Path) -> None:
    reports, runs = signed
    cmd = [sys.executable, "-m", "harness", "verify", str(reports), "--public-key", f"{key}.pub"]
    ok = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stdout
    assert "OK: 3 run(s), 15 file(s), 4 signature(s) checked" in ok.stdout
    (runs[2] / "console.log").write_text("edited")
    bad = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert bad.returncode == 1
    assert f"FAIL {runs[2].name}/console.log: content changed" in bad.stdout


def _append_many(args: tuple[str, int]) -> None:
    reports, worker = args
    for i in range(25):
        ledger.append(Path(reports), {
            "kind": "run", "run_id": f"w{worker}-{i}", "time": "2026-11-23T00:00:00+00:00",
            "scenario": "s", "verdict": "PASS", "manifest_sha256": "0" * 64,
            "rto_target_s": 1.0, "rto_measured_s": 1.0, "rto_passed": True,
            "rpo_target_s": 1.0, "rpo_age_s": 1.0, "rpo_passed": True,
        })  # fmt: skip


def test_concurrent_appends_keep_the_chain(tmp_path: Path) -> None:
    with multiprocessing.get_context("fork").Pool(4) as pool:
        pool.map(_append_many, [(str(tmp_path), w) for w in range(4)])
    lines = ledger.read_lines(tmp_path)
    assert len(lines) == 100
    prev = ledger.GENESIS
    for seq, line in enumerate(lines, start=1):
        entry = ledger.parse(line)
        assert (entry["seq"], entry["prev"]) == (seq, prev)
        prev = ledger.line_hash(line)
