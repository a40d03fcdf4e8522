"""``{{ env.* }}`` and ``{{ vars.* }}`` substitution in every string of a manifest."""

from __future__ import annotations

import re
from typing import Any

# Possessive, with the blanks stripped afterwards: `\s*` around a lazy group backtracked
# cubically on "{{" and thousands of blanks that never close.
_PLACEHOLDER = re.compile(r"\{\{([^{}]*+)\}\}")
_ENV_KEYS = ("name", "region", "account")


class UnknownVariable(ValueError):
    """A placeholder names a variable that does not exist; ``path`` is where."""

    def __init__(self, message: str, path: tuple[Any, ...]):
        self.path = path
        super().__init__(message)


def interpolate(value: Any, env: dict[str, str | None], variables: dict[str, Any], path: tuple[Any, ...] = ()) -> Any:
    """A copy of ``value`` with every placeholder substituted.

    A string that is exactly one placeholder takes the variable's own type
    (``threshold: "{{ vars.limit }}"`` stays a number). An env key whose value
    is None (the account before STS is asked) is left as written.
    """
    if isinstance(value, str):
        return _substitute(value, env, variables, path)
    if isinstance(value, dict):
        return {k: interpolate(v, env, variables, path + (k,)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, variables, path + (i,)) for i, v in enumerate(value)]
    return value


def _lookup(expr: str, env: dict[str, str | None], variables: dict[str, Any], path: tuple[Any, ...]) -> tuple[bool, Any]:
    scope, _, key = expr.partition(".")
    if scope == "env" and key in _ENV_KEYS:
        found = env.get(key)
        return (found is not None, found)
    if scope == "vars" and key in variables:
        return (True, variables[key])
    if scope == "vars":
        known = ", ".join(sorted(variables)) or "none defined"
        raise UnknownVariable(f"unknown variable {{{{ {expr} }}}} (vars: {known})", path)
    raise UnknownVariable(f"unknown variable {{{{ {expr} }}}} (use env.name, env.region, env.account or vars.<key>)", path)


def _substitute(text: str, env: dict[str, str | None], variables: dict[str, Any], path: tuple[Any, ...]) -> Any:
    if "{{" not in text:
        return text
    whole = _PLACEHOLDER.fullmatch(text)
    if whole:
        known, value = _lookup(whole.group(1).strip(), env, variables, path)
        return value if known else text

    def replace(match: re.Match[str]) -> str:
        known, value = _lookup(match.group(1).strip(), env, variables, path)
        if not known:
            return match.group(0)
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    return _PLACEHOLDER.sub(replace, text)
