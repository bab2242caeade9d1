"""compose.yaml read as `docker compose config` reads it: YAML merge keys, then variable interpolation.

Interpolation follows the Compose specification (compose-spec, "Interpolation"): `$$` is a literal `$`;
`$VAR` and `${VAR}`; `${VAR:-default}` (unset or empty) and `${VAR-default}` (unset); `${VAR:?message}`
(unset or empty: error) and `${VAR?message}` (unset: error); `${VAR:+replacement}` and `${VAR+replacement}`.
Defaults and messages may themselves hold variables. Values are interpolated, keys are not.
Docker is not reachable on the machines that run the tests, so this stands in for the compose binary.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPOSITORY_ROOT / "compose.yaml"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class MissingVariable(ValueError):
    """A `${VAR:?message}` or `${VAR?message}` whose variable is missing: compose stops with the message."""


def interpolate(text: str, environment: dict[str, str]) -> str:
    output, position = [], 0
    while position < len(text):
        character = text[position]
        if character != "$":
            output.append(character)
            position += 1
            continue
        following = text[position + 1:position + 2]
        if following == "$":
            output.append("$")
            position += 2
        elif following == "{":
            end = _closing_brace(text, position + 2)
            output.append(_substitute(text[position + 2:end], environment))
            position = end + 1
        elif match := _NAME.match(text, position + 1):
            output.append(environment.get(match.group(), ""))
            position = match.end()
        else:
            raise ValueError(f"invalid interpolation format in {text!r} at {position}")
    return "".join(output)


def _closing_brace(text: str, start: int) -> int:
    depth = 1
    for index in range(start, len(text)):
        if text[index] == "{" and text[index - 1] == "$":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return index
    raise ValueError(f"unclosed ${{ in {text!r}")


def _substitute(expression: str, environment: dict[str, str]) -> str:
    match = _NAME.match(expression)
    if match is None:
        raise ValueError(f"invalid interpolation ${{{expression}}}")
    name, rest = match.group(), expression[match.end():]
    value = environment.get(name)
    if not rest:
        return value or ""
    for operator in (":-", ":?", ":+", "-", "?", "+"):
        if rest.startswith(operator):
            argument = rest[len(operator):]
            break
    else:
        raise ValueError(f"invalid interpolation ${{{expression}}}")
    missing = value is None or (operator.startswith(":") and value == "")
    if operator.endswith("-"):
        return interpolate(argument, environment) if missing else value
    if operator.endswith("?"):
        if missing:
            raise MissingVariable(f"required variable {name} is missing a value: {interpolate(argument, environment)}")
        return value
    return "" if missing else interpolate(argument, environment)


def _interpolate_tree(node, environment: dict[str, str]):
    if isinstance(node, str):
        return interpolate(node, environment)
    if isinstance(node, dict):
        return {key: _interpolate_tree(value, environment) for key, value in node.items()}
    if isinstance(node, list):
        return [_interpolate_tree(value, environment) for value in node]
    return node


def load_compose(environment: dict[str, str], path: Path = COMPOSE_FILE) -> dict:
    """The configuration compose would run with `environment` (its .env and shell variables)."""
    raw = yaml.safe_load(path.read_text())
    return _interpolate_tree({key: value for key, value in raw.items() if not key.startswith("x-")}, environment)


def environment_list(service: dict) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {key: "" if value is None else str(value) for key, value in environment.items()}


def command_argv(command) -> list[str]:
    """A service's `command`: a list is the argv; a string is split as compose splits it (shell words)."""
    return list(command) if isinstance(command, list) else shlex.split(command)


def healthcheck_argv(test) -> list[str]:
    """A healthcheck `test` as the argv Docker runs: CMD runs it as is, CMD-SHELL through /bin/sh -c."""
    if isinstance(test, str):
        return ["/bin/sh", "-c", test]
    kind, *rest = test
    if kind == "CMD":
        return rest
    if kind == "CMD-SHELL":
        return ["/bin/sh", "-c", rest[0]]
    raise ValueError(f"healthcheck test {test!r} cannot be run")
