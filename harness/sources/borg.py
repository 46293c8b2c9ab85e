"""A borg archive, from a local repository or ``ssh://`` / ``user@host:path``: the restore
point is the archive's start time. Without ``archive``, the newest archive that borg's own
selectors admit (``host``, ``glob_archives``/``prefix``)."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterator
from typing import Any

from harness.errors import PhaseFailed
from harness.sources.files import (
    FileLevelSource,
    Inspected,
    json_lines,
    parse_time,
    password_env,
    pick_latest,
)


class BorgSource(FileLevelSource):
    #: Log segments: appended once, never rewritten (compaction writes new ones).
    written_once = ("data/",)
    written_once_are = "append-only segment file(s)"

    def environment(self) -> dict[str, str]:
        return {
            # A repository seen for the first time from a fresh BORG_BASE_DIR would prompt.
            "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
            "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes",
            **super().environment(), **password_env(self.spec, "BORG_PASSPHRASE"),
        }  # fmt: skip

    def selected(self, archive: dict[str, Any]) -> bool:
        """borg's own semantics: the host, and the name matching ``--glob-archives``."""
        spec = self.spec
        return ((spec.host is None or archive.get("hostname") == spec.host)
                and (spec.glob_archives is None
                     or fnmatch.fnmatchcase(str(archive["name"]), spec.glob_archives)))  # fmt: skip

    pin = ("archive", "start", "name")

    def points(self) -> list[dict[str, Any]]:
        return self._archives()

    def _archives(self) -> list[dict[str, Any]]:
        assert self.spec.repository is not None  # noqa: S101 - the loader requires it
        out = self.run_tool(["borg", "--bypass-lock", "list", "--json", "--format",
                             "{hostname}", self.spec.repository])  # fmt: skip
        try:
            return list(json.loads(out).get("archives", []))
        except ValueError as exc:
            raise PhaseFailed("verify", f"borg list: unreadable answer ({exc})") from exc

    def inspect(self) -> Inspected:
        archives = self._archives()
        warnings: tuple[str, ...] = ()
        if self.spec.archive:
            found = next((a for a in archives if a["name"] == self.spec.archive), None)
            if found is None:
                raise PhaseFailed("verify", f"borg: no archive {self.spec.archive} in the "
                                            f"repository ({len(archives)} archive(s))")  # fmt: skip
            chosen = found
        else:
            chosen, warnings = pick_latest(archives, "start", "hostname", self.spec,
                                           self.selected, "archive")  # fmt: skip
        self.archive = chosen["name"]
        host = str(chosen.get("hostname", "?"))
        return Inspected(
            f"borg archive {chosen['name']} on {host}", parse_time(chosen["start"]),
            "borg archive time",
            {"tool": "borg", "archive": chosen["name"], "archive id": chosen.get("id", ""),
             "hostname": host,
             "selector": self.spec.selector or ("the archive named" if self.spec.archive
                                                else "none: the newest archive of any host"),
             "archives in repository": str(len(archives))},
            warnings=warnings,
        )  # fmt: skip

    def sample_files(self, limit: int) -> list[str]:
        assert self.spec.repository is not None  # noqa: S101 - the loader requires it
        found = []
        under = [self.spec.subpath.lstrip("/")] if self.spec.subpath else []
        out = self.run_tool(["borg", "--bypass-lock", "list", "--json-lines",
                             f"{self.spec.repository}::{self.archive}", *under])  # fmt: skip
        for item in _items(out):
            if item.get("type") == "-" and int(item.get("size", 0)) <= self.sample_max_bytes:
                found.append(str(item["path"]).lstrip("/"))
                if len(found) >= limit:
                    break
        return found

    def system_names(self, paths: tuple[str, ...]) -> set[str]:
        """``borg list`` of each path: the path and everything under it."""
        assert self.spec.repository is not None  # noqa: S101 - the loader requires it
        out = self.run_tool(["borg", "--bypass-lock", "list", "--json-lines",
                             f"{self.spec.repository}::{self.archive}",
                             *(self.rooted(p) for p in paths)])  # fmt: skip
        return {self.unrooted(str(item["path"])) for item in _items(out)}

    def system_file(self, path: str) -> bytes:
        return self.file_content(self.rooted(path))

    def file_content(self, path: str) -> bytes:
        assert self.spec.repository is not None  # noqa: S101 - the loader requires it
        return self.tool_bytes(["borg", "--bypass-lock", "extract", "--stdout",
                                f"{self.spec.repository}::{self.archive}", path])  # fmt: skip

    def integrity_argv(self, location: str) -> list[str]:
        verify = self.spec.integrity is not None and self.spec.integrity.verify_data
        return ["borg", "--bypass-lock", "check", "-v", *(["--verify-data"] if verify else []),
                "--", location]  # fmt: skip

    def integrity_summary(self, output: str) -> str:
        said = [line.strip() for line in output.splitlines()
                if ("check" in line and ("problems" in line or "errors" in line))
                or line.startswith("Finished cryptographic")]  # fmt: skip
        return "; ".join(said) or super().integrity_summary(output)

    def stream_command(self) -> list[str]:
        assert self.spec.repository is not None  # noqa: S101 - the loader requires it
        # borg stores paths without their leading "/": a subpath selects that folder.
        sub = [self.spec.subpath.lstrip("/")] if self.spec.subpath else []
        return ["borg", "--bypass-lock", "export-tar", f"{self.spec.repository}::{self.archive}",
                "-", *sub]  # fmt: skip


def _items(out: str) -> Iterator[dict[str, Any]]:
    """The items of ``borg list --json-lines``."""
    return (item for item in json_lines(out) if "path" in item)
