"""YAML files a person wrote, checked the way we check input: every problem located by file,
line and field. Parsing keeps PyYAML's node tree beside the data so a JSON Schema error about
``checks[2].timeout`` can name the line it is on. Used by scenario files and the
notification config.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from typing import Any

import jsonschema
import yaml

from harness.durations import DURATION_PATTERN
from harness.errors import Problem, ScenarioError


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps timestamps as strings (the schema validates them)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def parse_document(text: str, name: str) -> tuple[yaml.Node, Any]:
    """The YAML node tree (for line numbers) and its plain data; a bad document is a
    :class:`ScenarioError` with the line PyYAML names."""
    try:
        loader = _Loader(text)  # the reader rejects control characters already here
    except yaml.YAMLError as exc:
        raise ScenarioError([Problem(name, None, "", f"YAML: {exc}")]) from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise ScenarioError([Problem(name, 1, "", "the file is empty")])
        return node, loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise ScenarioError([Problem(name, line, "", f"YAML: {exc.problem or exc}")]) from None
    except yaml.YAMLError as exc:
        raise ScenarioError([Problem(name, None, "", f"YAML: {exc}")]) from None
    finally:
        loader.dispose()


def field_name(path: Sequence[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _node_at(node: yaml.Node, path: Sequence[Any], key_node: bool = False) -> yaml.Node:
    """The YAML node at ``path`` (or the deepest existing ancestor)."""
    for i, part in enumerate(path):
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == part:
                    node = k if key_node and i == len(path) - 1 else v
                    break
            else:
                return node
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return node
            node = node.value[part]
        else:
            return node
    return node


def line_of(node: yaml.Node, path: Sequence[Any], key_node: bool = False) -> int:
    return _node_at(node, path, key_node).start_mark.line + 1


def duplicate_keys(node: yaml.Node, name: str, path: tuple[Any, ...] = ()) -> list[Problem]:
    """Keys given twice in one mapping (YAML silently keeps the last)."""
    problems: list[Problem] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for k, v in node.value:
            if k.value in seen:
                where = field_name((*path, k.value))
                problems.append(Problem(name, k.start_mark.line + 1, where, "duplicate key"))
            seen.add(k.value)
            problems += duplicate_keys(v, name, (*path, k.value))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            problems += duplicate_keys(item, name, (*path, i))
    return problems


def schema_problem(
    err: jsonschema.ValidationError, node: yaml.Node, name: str, variant_keys: Sequence[str] = ()
) -> Problem:
    """A JSON Schema error as a :class:`Problem` at the line of the field it is about."""
    path = list(err.absolute_path)
    if err.validator in ("additionalProperties", "unevaluatedProperties"):
        unknown = _unexpected_keys(err)
        allowed = _allowed_keys(err, variant_keys)
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            hints.append(f"unknown key '{key}'{hint}")
        line = line_of(node, [*path, unknown[0]], key_node=True) if unknown else line_of(node, path)
        return Problem(name, line, field_name([*path, *unknown[:1]]), "; ".join(hints))
    if err.validator == "required":
        return Problem(name, line_of(node, path), field_name(path), err.message)
    message = err.message
    if err.validator == "pattern" and err.validator_value == DURATION_PATTERN:
        message = f"{err.instance!r} is not a duration (write e.g. 90s, 15m, 4h, 1h30m)"
    return Problem(name, line_of(node, path), field_name(path), message)


def _unexpected_keys(err: jsonschema.ValidationError) -> list[str]:
    instance = err.instance if isinstance(err.instance, dict) else {}
    quoted = re.findall(r"'([^']+)'", err.message.split("(")[-1])
    return [k for k in quoted if k in instance] or sorted(instance)[:1]


def _allowed_keys(err: jsonschema.ValidationError, extra: Sequence[str]) -> list[str]:
    schema = err.schema if isinstance(err.schema, dict) else {}
    keys = list(schema.get("properties", {}))
    if "allOf" in schema:  # a mapping made of variants: every variant's keys are candidates
        keys += extra
    return keys
