"""A generic JSON webhook: one POST per run (urllib; no HTTP library needed for one POST)."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from harness.notify.config import WebhookConfig


class WebhookRefused(OSError):
    """The endpoint answered, but not with 2xx."""


def post_json(config: WebhookConfig, body: dict[str, Any]) -> int:
    """POST ``body``; the HTTP status. Raises ``OSError`` (``URLError`` is one) on failure."""
    headers = {"Content-Type": "application/json", "User-Agent": "restore-drill"}
    if config.token:
        headers["Authorization"] = f"Bearer {config.token}"
    request = urllib.request.Request(  # noqa: S310 - the schema allows http(s) URLs only
        config.url, data=json.dumps(body).encode(), headers=headers, method="POST"
    )
    # B310: the config's schema and loader accept only http:// and https:// URLs
    with urllib.request.urlopen(request, timeout=config.timeout_s) as response:  # nosec B310  # noqa: S310
        status: int = response.status
    if not 200 <= status < 300:
        raise WebhookRefused(f"HTTP {status}")
    return status
