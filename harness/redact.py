"""Keep secrets out of evidence: every text written to a report passes through :func:`redact`."""

from __future__ import annotations

from collections.abc import Iterable

MASK = "********"


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret value replaced by a mask, longest first (no partial leaks)."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
