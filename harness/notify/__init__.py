"""Tell people how a run went: email (SMTP), a JSON webhook, Prometheus textfile metrics.

Each channel is tried on its own with bounded retries (tenacity); a channel that still
fails is reported back as a problem for the log and never changes a drill's verdict.
"""

from __future__ import annotations

import smtplib
from collections.abc import Callable, Sequence
from pathlib import Path

from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from harness.finished import Finished
from harness.notify import summary
from harness.notify.config import NotifyConfig, load_config
from harness.notify.metrics import write_textfile
from harness.notify.smtp import send_email
from harness.notify.webhook import post_json

ATTEMPTS = 3

_retrying = retry(
    retry=retry_if_exception_type((OSError, smtplib.SMTPException)),
    stop=stop_after_attempt(ATTEMPTS), wait=wait_exponential(multiplier=1, max=8), reraise=True,
)  # fmt: skip


class Notifier:
    """The channels of one config file."""

    def __init__(self, config: NotifyConfig) -> None:
        self.config = config

    @property
    def secrets(self) -> set[str]:
        return set(self.config.secrets)

    def send(self, finished: Sequence[Finished], reports: Path) -> list[str]:
        """Notify every configured channel; what went wrong (empty: all delivered)."""
        records = summary.drill_records(finished)
        bad = summary.failed(records)
        config, problems = self.config, []
        jobs: list[tuple[str, Callable[[], object]]] = []
        if config.email and (config.email.when == "always" or bad):
            email = config.email
            jobs.append((f"email to {', '.join(email.to)}", lambda: send_email(
                email, summary.subject(records), summary.text(records))))  # fmt: skip
        if config.webhook and (config.webhook.when == "always" or bad):
            hook = config.webhook
            jobs.append(("webhook", lambda: post_json(hook, summary.payload(records))))
        if config.textfile:
            textfile = config.textfile
            jobs.append((f"metrics {textfile}", lambda: write_textfile(reports, textfile)))
        for what, job in jobs:
            try:
                _retrying(job)()
            except (OSError, smtplib.SMTPException, ValueError) as exc:
                problems.append(f"{what} failed after {ATTEMPTS} attempts: {_describe(exc)}")
        return problems


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:300]


def load_notify(path: Path) -> Notifier:
    """Load and check the notification config (exit 2 on any problem, before any drill)."""
    return Notifier(load_config(path))
