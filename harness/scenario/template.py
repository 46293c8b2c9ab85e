"""Render a scenario file with a sandboxed Jinja2 environment.

Undefined variables are errors. Variables come from ``--var key=value`` only; the
environment is reachable through two explicit functions, never implicitly:

* ``env("NAME")`` / ``env("NAME", "default")``: an environment variable;
* ``secret("NAME")``: an environment variable whose value is redacted from every report and
  log (or ``secret("NAME", file="/run/secrets/x")`` to read it from a file).

Values recorded at backup time are read by one more: ``values("counts.json")`` is the JSON
or YAML file (relative to the scenario) as a read-only mapping, so a pre-backup hook can
write ``{"orders": 2500}`` and a check say ``stdout_matches: "^{{ values('counts.json')
.orders }}$"``.
"""

from __future__ import annotations

import os
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml
from jinja2.sandbox import ImmutableSandboxedEnvironment

from harness.errors import Problem

RESERVED = frozenset({"env", "secret", "scenario_dir", "values"})
VALUES_MAX_BYTES = 1024 * 1024


class _MissingEnv(Exception):
    """An input the template asks for that is not there: the message says which."""


@dataclass(frozen=True)
class Rendered:
    """Rendered text and the secret values that must never reach evidence."""

    text: str
    secrets: frozenset[str]


#: one sandbox for every scenario (made once: a few milliseconds each); each render gets its
#: own context (variables, and env/secret/values bound to that file)
_ENVIRONMENT = ImmutableSandboxedEnvironment(
    undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True
)
_TEMPLATED = re.compile(r"\{[{%#]")


def render(source: str, file: Path, variables: Mapping[str, str]) -> Rendered | Problem:
    """Render ``source`` (the text of ``file``); a problem is returned, never raised."""
    secrets: set[str] = set()

    def env(name: str, default: str | None = None) -> str:
        value = os.environ.get(name, default)
        if value is None:
            raise _MissingEnv(f"environment variable {name} is not set (env({name!r}))")
        return value

    def secret(name: str, file: str | None = None) -> str:
        if file is not None:
            try:
                value = Path(file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise _MissingEnv(f"secret file {file} cannot be read: {exc.strerror}") from None
        else:
            value = env(name)
        if value:
            secrets.add(value)
        return value

    def values(name: str) -> Any:
        path = file.parent / name
        try:
            if path.stat().st_size > VALUES_MAX_BYTES:
                raise _MissingEnv(f"values({name!r}): {path} is larger than 1 MiB")
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise _MissingEnv(f"values({name!r}): {path}: {exc.strerror}") from None
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            where = getattr(exc, "problem_mark", None)
            at = f" line {where.line + 1}" if where is not None else ""
            raise _MissingEnv(f"values({name!r}): {path}{at} is not JSON or YAML") from None
        if not isinstance(data, dict):
            raise _MissingEnv(f"values({name!r}): {path} must hold a mapping (key: value)")
        return data

    if not _TEMPLATED.search(source):  # plain YAML: nothing to render
        return Rendered(source, frozenset())
    context = {
        **variables,
        "env": env,
        "secret": secret,
        "values": values,
        "scenario_dir": str(file.parent.resolve()),
    }
    try:
        template = _ENVIRONMENT.from_string(source)
        text = template.render(context)
    except jinja2.TemplateSyntaxError as exc:
        return Problem(str(file), exc.lineno, "template", f"template syntax: {exc.message}")
    except jinja2.UndefinedError as exc:
        return Problem(str(file), _template_line(exc), "template", f"undefined: {exc.message}")
    except jinja2.exceptions.SecurityError as exc:
        return Problem(str(file), _template_line(exc), "template", f"not allowed: {exc}")
    except _MissingEnv as exc:
        return Problem(str(file), _template_line(exc), "template", str(exc))
    except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
        return Problem(str(file), _template_line(exc), "template", f"template error: {exc}")
    return Rendered(text, frozenset(secrets))


def _template_line(exc: BaseException) -> int | None:
    """Jinja2 rewrites tracebacks so template frames carry the template's own line."""
    line = None
    tb: types.TracebackType | None = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
