"""The notification config file: where to tell people, and with which credentials.

::

    email:                       # SMTP; one message per run
      when: failures             # failures (default: any drill not PASS) | always
      host: smtp.example.com
      port: 587
      security: starttls         # starttls (default) | tls | none
      username: drills
      password_env: SMTP_PASSWORD        # or password_file: /etc/restore-drill/smtp.pass
      from: restore-drill@example.com
      to: [ops@example.com]
    webhook:                     # a JSON POST per run
      when: always
      url_env: DRILL_WEBHOOK_URL         # or url: https://…  (a URL can itself be a secret)
      token_file: /etc/restore-drill/webhook.token   # or token_env; sent as a Bearer token
    prometheus:
      textfile: /var/lib/prometheus/node-exporter/restore_drill.prom

Secrets are read when the file is loaded (so a missing one is a config error before any
drill starts), kept out of ``repr`` and added to the redaction set of the run's log.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from harness.durations import DURATION_PATTERN, parse_duration
from harness.errors import Problem, ScenarioError
from harness.yamldoc import field_name, line_of, load_mapping

_env = {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}
_when = {"enum": ["failures", "always"]}
_address = {"type": "string", "pattern": "^[^@\\s]+@[^@\\s]+$"}
_timeout = {"type": ["string", "number"], "pattern": DURATION_PATTERN}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "restore-drill notification config",
    "type": "object",
    "additionalProperties": False,
    "minProperties": 1,
    "properties": {
        "email": {
            "type": "object",
            "additionalProperties": False,
            "required": ["host", "from", "to"],
            "properties": {
                "when": _when,
                "host": {"type": "string", "minLength": 1},
                "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                "security": {"enum": ["starttls", "tls", "none"]},
                "username": {"type": "string", "minLength": 1},
                "password_env": _env,
                "password_file": {"type": "string", "minLength": 1},
                "from": _address,
                "to": {"type": "array", "minItems": 1, "items": _address},
                "timeout": _timeout,
            },
        },
        "webhook": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "when": _when,
                "url": {"type": "string", "pattern": "^https?://"},
                "url_env": _env,
                "url_file": {"type": "string", "minLength": 1},
                "token_env": _env,
                "token_file": {"type": "string", "minLength": 1},
                "timeout": _timeout,
            },
        },
        "prometheus": {
            "type": "object",
            "additionalProperties": False,
            "required": ["textfile"],
            "properties": {"textfile": {"type": "string", "pattern": "\\.prom$"}},
        },
    },
}
_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


@dataclass(frozen=True)
class EmailConfig:
    host: str
    port: int
    security: str
    sender: str
    to: tuple[str, ...]
    when: str = "failures"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout_s: float = 30.0


@dataclass(frozen=True)
class WebhookConfig:
    url: str = field(repr=False)
    when: str = "always"
    token: str | None = field(default=None, repr=False)
    timeout_s: float = 10.0


@dataclass(frozen=True)
class NotifyConfig:
    """What the config file asks for; ``secrets`` are every credential it resolved."""

    source: Path
    email: EmailConfig | None = None
    webhook: WebhookConfig | None = None
    textfile: Path | None = None
    secrets: frozenset[str] = field(default=frozenset(), repr=False)


def load_config(path: Path) -> NotifyConfig:
    """Read and check ``path``; :class:`ScenarioError` lists every problem with its line."""
    name = str(path)
    node, data = load_mapping(path, "the notification config", _VALIDATOR)
    found: list[Problem] = []

    def secret(section: str, key: str, required: bool) -> str | None:
        conf = data[section]
        given = [k for k in (key, f"{key}_env", f"{key}_file") if k in conf]
        if len(given) > 1:
            found.append(Problem(name, line_of(node, [section, given[1]], True),
                                 field_name([section, given[1]]),
                                 f"give only one of {', '.join(given)}"))  # fmt: skip
            return None
        if not given:
            if required:
                found.append(
                    Problem(
                        name,
                        line_of(node, [section]),
                        section,
                        f"one of {key}, {key}_env, {key}_file is required",
                    )
                )
            return None
        where = [section, given[0]]
        value = _resolve(given[0], conf[given[0]], path.parent)
        if isinstance(value, Problem):
            found.append(Problem(name, line_of(node, where), field_name(where), value.message))
            return None
        return value

    email = webhook = None
    secrets: set[str] = set()
    if "email" in data:
        conf = data["email"]
        password = secret("email", "password", required=False)
        if password is not None and "username" not in conf:
            found.append(Problem(name, line_of(node, ["email"]), "email.username",
                                 "a password needs a username"))  # fmt: skip
        security = conf.get("security", "starttls")
        email = EmailConfig(
            host=conf["host"], port=conf.get("port", {"tls": 465}.get(security, 587)),
            security=security, sender=conf["from"], to=tuple(conf["to"]),
            when=conf.get("when", "failures"), username=conf.get("username"),
            password=password, timeout_s=parse_duration(conf.get("timeout", 30)),
        )  # fmt: skip
        secrets |= {password} if password else set()
    if "webhook" in data:
        conf = data["webhook"]
        url = secret("webhook", "url", required=True)
        token = secret("webhook", "token", required=False)
        if url is not None and not url.startswith(("http://", "https://")):
            found.append(Problem(name, line_of(node, ["webhook"]), "webhook.url",
                                 "the URL must start with http:// or https://"))  # fmt: skip
        webhook = WebhookConfig(url or "", conf.get("when", "always"), token,
                                parse_duration(conf.get("timeout", 10)))  # fmt: skip
        secrets |= {s for s in (token, url if "url" not in conf else None) if s}
    if found:
        raise ScenarioError(found)
    textfile = Path(data["prometheus"]["textfile"]) if "prometheus" in data else None
    return NotifyConfig(path, email, webhook, textfile, frozenset(secrets))


def _resolve(key: str, value: str, base: Path) -> str | Problem:
    """A credential from the environment (``*_env``), a file (``*_file``) or inline."""
    if key.endswith("_env"):
        got = os.environ.get(value)
        return got if got else Problem("", None, "", f"environment variable {value} is not set")
    if key.endswith("_file"):
        file = base / value
        try:
            content = file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            return Problem("", None, "", f"cannot read {file}: {exc}")
        return content or Problem("", None, "", f"{file} is empty")
    return value
