"""Email over SMTP (the standard library's smtplib): one message per run."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage

from harness.notify.config import EmailConfig


def send_email(config: EmailConfig, subject: str, body: str) -> None:
    """Send one message; raises ``OSError``/``smtplib.SMTPException`` (the caller retries)."""
    message = EmailMessage()
    message["Subject"], message["From"], message["To"] = (
        subject,
        config.sender,
        ", ".join(config.to),
    )
    message.set_content(body)
    context = ssl.create_default_context()
    if config.security == "tls":
        server: smtplib.SMTP = smtplib.SMTP_SSL(
            config.host, config.port, timeout=config.timeout_s, context=context
        )
    else:
        server = smtplib.SMTP(config.host, config.port, timeout=config.timeout_s)
    with server:
        if config.security == "starttls":
            server.starttls(context=context)
        if config.username and config.password:
            server.login(config.username, config.password)
        server.send_message(message)
