"""A borg archive, from a local repository or ``ssh://`` / ``user@host:path``: the restore
point is the archive's start time."""

from __future__ import annotations

import json

from harness.errors import PhaseFailed
from harness.sources.files import FileLevelSource, Inspected, newest, parse_time, password_env


class BorgSource(FileLevelSource):
    def environment(self) -> dict[str, str]:
        return {
            # A repository seen for the first time from a fresh BORG_BASE_DIR would prompt.
            "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
            "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes",
            **super().environment(), **password_env(self.spec, "BORG_PASSPHRASE"),
        }  # fmt: skip

    def inspect(self) -> Inspected:
        assert self.spec.repository is not None  # noqa: S101 - the loader requires it
        out = self.run_tool(["borg", "--bypass-lock", "list", "--json", self.spec.repository])
        try:
            archives = json.loads(out).get("archives", [])
        except ValueError as exc:
            raise PhaseFailed("verify", f"borg list: unreadable answer ({exc})") from exc
        if self.spec.archive:
            chosen = next((a for a in archives if a["name"] == self.spec.archive), None)
        else:
            chosen = newest(archives, "start")
        if chosen is None:
            raise PhaseFailed("verify", f"borg: no archive {self.spec.archive or '(any)'} in "
                                        f"the repository ({len(archives)} archive(s))")  # fmt: skip
        self.archive = chosen["name"]
        return Inspected(
            f"borg archive {chosen['name']}", parse_time(chosen["start"]), "borg archive time",
            {"tool": "borg", "archive": chosen["name"], "archive id": chosen.get("id", ""),
             "archives in repository": str(len(archives))},
        )  # fmt: skip

    def sample_files(self, limit: int) -> list[str]:
        assert self.spec.repository is not None  # noqa: S101 - the loader requires it
        found = []
        out = self.run_tool(["borg", "--bypass-lock", "list", "--json-lines",
                             f"{self.spec.repository}::{self.archive}"])  # fmt: skip
        for line in out.splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if item.get("type") == "-" and int(item.get("size", 0)) <= self.sample_max_bytes:
                found.append(str(item["path"]).lstrip("/"))
                if len(found) >= limit:
                    break
        return found

    def file_content(self, path: str) -> bytes:
        assert self.spec.repository is not None  # noqa: S101 - the loader requires it
        return self.tool_bytes(["borg", "--bypass-lock", "extract", "--stdout",
                                f"{self.spec.repository}::{self.archive}", path])  # fmt: skip

    def stream_command(self) -> list[str]:
        assert self.spec.repository is not None  # noqa: S101 - the loader requires it
        return ["borg", "--bypass-lock", "export-tar", f"{self.spec.repository}::{self.archive}",
                "-"]  # fmt: skip
