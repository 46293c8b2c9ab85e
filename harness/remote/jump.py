"""How to reach a hypervisor host over SSH (plain data: no SSH library imported here)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Jump:
    """How to reach a hypervisor host: its name in the inventory and its SSH account. Plain
    strings, so a child process (the user's testinfra files) can be handed it."""

    name: str
    hostname: str
    port: int
    user: str
    key_file: str | None
    known_hosts: str

    def describe(self) -> str:
        return f"{self.user}@{self.hostname}" + (f":{self.port}" if self.port != 22 else "")
