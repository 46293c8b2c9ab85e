"""YAML files a person wrote, checked the way we check input: every problem located by file,
line and field. Parsing keeps PyYAML's node tree beside the data so a JSON Schema error about
``checks[2].timeout`` can name the line it is on. Used by scenario files, the notification
config and the host inventory.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from harness.durations import DURATION_PATTERN, SIZE_PATTERN
from harness.errors import ConfigError, Problem, ScenarioError

#: Values a document may hold once aliases are expanded (a real scenario has a few hundred).
MAX_NODES = 10_000


# libyaml's parser when PyYAML has it (a tenth of the pure-Python parser's time: 500
# scenarios are validated in well under 2 s), PyYAML's own otherwise; the same nodes, marks
# and errors either way.
_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[misc]
    """A safe loader that keeps timestamps as strings (the schema validates them)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def parse_document(text: str, name: str) -> tuple[yaml.Node, Any]:
    """The YAML node tree (for line numbers) and its plain data; a bad document is a
    :class:`ScenarioError` with the line PyYAML names."""
    try:
        yaml.reader.Reader(text)  # rejects control characters (libyaml lets some through)
        loader = _Loader(text)
    except yaml.YAMLError as exc:
        raise ScenarioError([Problem(name, None, "", f"YAML: {exc}")]) from None
    try:
        node = loader.get_single_node()
        if node is None:
            raise ScenarioError([Problem(name, 1, "", "the file is empty")])
        if _expanded_size(node, {}) > MAX_NODES:
            raise ScenarioError([Problem(
                name, None, "", f"more than {MAX_NODES} values once aliases (*name) are "
                "expanded: a document this large is refused (YAML 'billion laughs')",
            )])  # fmt: skip
        return node, loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise ScenarioError([Problem(name, line, "", f"YAML: {exc.problem or exc}")]) from None
    except yaml.YAMLError as exc:
        raise ScenarioError([Problem(name, None, "", f"YAML: {exc}")]) from None
    finally:
        loader.dispose()


def load_mapping(path: Path, what: str, validator: jsonschema.protocols.Validator,
                 shape: str = "a YAML mapping") -> tuple[yaml.Node, dict[str, Any]]:  # fmt: skip
    """A config file (``what``, e.g. "the host inventory") read, parsed and checked against
    its schema: its node tree and data, or a :class:`ScenarioError` with every problem
    located (a file that cannot be read: :class:`ConfigError`)."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read {what}: {exc}") from None
    node, data = parse_document(text, name)
    problems = duplicate_keys(node, name)
    if not isinstance(data, dict):
        raise ScenarioError([*problems, Problem(name, 1, "", f"{what} is {shape}")])
    problems += [p for e in validator.iter_errors(data) if (p := schema_problem(e, node, name))]
    if problems:
        raise ScenarioError(problems)
    return node, data


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """How many nodes the document has with every alias expanded, counted in time linear in
    the nodes written (an alias is the same node object: its size is counted once and
    reused); an alias cycle counts as too many."""
    known = sizes.get(id(node))
    if known is not None:
        return known
    sizes[id(node)] = MAX_NODES + 1  # while counting: a cycle back here is too many
    total = 1
    if isinstance(node, yaml.SequenceNode):
        total += sum(_expanded_size(n, sizes) for n in node.value)
    elif isinstance(node, yaml.MappingNode):
        total += sum(_expanded_size(k, sizes) + _expanded_size(v, sizes) for k, v in node.value)
    sizes[id(node)] = total = min(total, MAX_NODES + 1)
    return total


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


NOT_TEXT = "a key is text (an empty '?' or a list or mapping as a key is not)"


def duplicate_keys(node: yaml.Node, name: str, path: tuple[Any, ...] = ()) -> list[Problem]:
    """Keys given twice in one mapping (YAML silently keeps the last), and keys that are not
    text (``? [a]``, a lone ``?``): no field of a scenario can be one."""
    problems: list[Problem] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for k, v in node.value:
            if not isinstance(k, yaml.ScalarNode) or k.tag != "tag:yaml.org,2002:str":
                problems.append(Problem(name, k.start_mark.line + 1, field_name(path),
                                        NOT_TEXT))  # fmt: skip
                continue
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
) -> Problem | None:
    """A JSON Schema error as a :class:`Problem` at the line of the field it is about; None
    for an error that only repeats another (see below).

    Messages say what the field must be and never echo its value: a field's value may be a
    secret (``password: {{ secret("PW") }}``), and the file, line and field locate it."""
    path = list(err.absolute_path)
    if err.validator == "anyOf" and err.context and all(
            e.validator == "required" for e in err.context):  # fmt: skip
        keys = " or ".join(re.findall(r"'[^']+'", e.message)[0] for e in err.context)
        return Problem(name, line_of(node, path), field_name(path), f"needs {keys} (or both)")
    if err.validator in ("anyOf", "oneOf") and err.context:
        # one mapping or a list of them: the branch of the value's own type says what is wrong
        own = [e for e in err.context
               if not (e.validator == "type" and list(e.absolute_path) == path)]  # fmt: skip
        if own:
            return schema_problem(own[0], node, name, variant_keys)
    if err.validator in ("additionalProperties", "unevaluatedProperties"):
        allowed = _allowed_keys(err, variant_keys)
        # A key of a variant (a check's http, status…) whose own value is wrong counts as
        # "unevaluated" too; that error is reported on its own, so it is no unknown key.
        unknown = [k for k in _unexpected_keys(err) if k not in allowed]
        if not unknown:
            return None
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            hints.append(f"unknown key '{key}'{hint}")
        line = line_of(node, [*path, unknown[0]], key_node=True) if unknown else line_of(node, path)
        return Problem(name, line, field_name([*path, *unknown[:1]]), "; ".join(hints))
    if err.validator == "required":
        return Problem(name, line_of(node, path), field_name(path), err.message)
    return Problem(name, line_of(node, path), field_name(path), _message(err))


_JSON_TYPES = {"string": "a string", "integer": "a whole number", "number": "a number",
               "boolean": "true or false", "object": "a mapping (key: value)",
               "array": "a list", "null": "empty"}  # fmt: skip
_PATTERNS = {
    DURATION_PATTERN: "not a duration: write e.g. 90s, 15m, 4h, 1h30m",
    SIZE_PATTERN: "not a size: write e.g. 1GiB or 512MiB",
    "^/": "must be an absolute path (starting with /)",
    "^/[^\\0]*$": "must be an absolute path (starting with /)",
    "^[0-9a-f]{64}$": "must be a SHA-256: 64 lower-case hexadecimal digits",
    "^[A-Z_][A-Z0-9_]*$": "must be an environment variable name: A-Z, 0-9 and _",
    "^[a-z0-9][a-z0-9-]{0,39}$": "must be a name of lower-case letters, digits and '-' "
    "(at most 40, not starting with '-')",
}


def _message(err: jsonschema.ValidationError) -> str:
    """What the field must be, in words; never its value, nor a raw regular expression."""
    rule, schema = err.validator, err.schema if isinstance(err.schema, dict) else {}
    value: Any = err.validator_value
    hint = f" ({schema['description']})" if "description" in schema else ""
    if rule == "type":
        wanted = [value] if isinstance(value, str) else \
            list(value)  # fmt: skip
        quote = ("; put it in quotes (YAML reads 12345678 as a number)"
                 if wanted == ["string"] and isinstance(err.instance, int | float)
                 and not isinstance(err.instance, bool) else "")  # fmt: skip
        return "must be " + " or ".join(_JSON_TYPES.get(t, t) for t in wanted) + \
            f", not {_json_type(err.instance)}{quote}"  # fmt: skip
    if rule == "pattern" and "propertyNames" in err.schema_path:  # a key: no secret
        return f"key {err.instance!r} " + _PATTERNS.get(value, "is not allowed")
    if rule == "pattern":
        return _PATTERNS.get(value, "is not in the expected form" + hint)
    if rule == "enum":
        return "must be one of " + ", ".join(repr(v) for v in value)
    if rule in ("minimum", "exclusiveMinimum"):
        return f"must be at least {value}"
    if rule in ("maximum", "exclusiveMaximum"):
        return f"must be at most {value}"
    if rule == "minLength":
        return "must not be empty"
    if rule == "maxLength":
        return f"is longer than {value} characters"
    if rule in ("minItems", "maxItems"):
        return f"must have {'at least' if rule == 'minItems' else 'at most'} " \
            f"{value} item(s)"  # fmt: skip
    if rule == "const":
        return f"must be {value!r}"
    if rule == "propertyNames":
        return "has a key that is not allowed here" + hint
    return f"is not valid here ({rule})"


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    for kind, python in (("a string", str), ("a number", int | float), ("a list", list),
                         ("a mapping", dict)):  # fmt: skip
        if isinstance(value, python):
            return kind
    return "empty" if value is None else type(value).__name__


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
