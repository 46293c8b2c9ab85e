"""An SSH host key as the evidence records it (a guest's, or a hypervisor host's)."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class HostKey:
    """A guest's SSH host key as recorded in the evidence."""

    type: str
    base64: str

    @property
    def fingerprint(self) -> str:
        """OpenSSH's ``SHA256:...`` form, comparable with ``ssh-keygen -lf``."""
        raw = hashlib.sha256(base64.b64decode(self.base64)).digest()
        return "SHA256:" + base64.b64encode(raw).decode().rstrip("=")
