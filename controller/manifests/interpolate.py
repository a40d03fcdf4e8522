"""``{{ env.* }}`` and ``{{ vars.* }}`` substitution in every string of a manifest.

What placeholders add is capped as they are substituted, before the text or
structure they would make exists: a short manifest that names a large
variable thousands of times must not take the daemon's memory (one process
serves every environment). The caps, per environment (an ``Expansion``):

- one string: its placeholders add at most ``MAX_STRING_GROWTH`` characters
  (64 KiB: far above any name, ARN, description or policy fragment);
- all of an environment's manifests: placeholders add at most
  ``MAX_EXPANSION`` characters. 16 MiB is sixteen manifest files of the
  largest size read, and hundreds of times what names, regions, account ids
  and descriptions add to a large tree (5,000 resources with ten 50-character
  placeholders each add 2.5 MB); it bounds what one environment's expansion
  holds in memory to about as much (a refusal at the budget peaks near 24 MiB,
  reading the tree included);
- list and map values (an Environment's ``vars`` take scalars only today:
  this guards ``interpolate`` itself) add at most ``MAX_NODES`` nodes, the
  cap of one YAML document, to an environment's manifests.

A variable is counted whole each time it is used, whether it is copied into a
string or given by reference (a string, list or map that later stages copy).
"""

from __future__ import annotations

import re
from typing import Any

from controller.manifests.yamlsafe import MAX_NODES

# Possessive, with the blanks stripped afterwards: `\s*` around a lazy group backtracked
# cubically on "{{" and thousands of blanks that never close.
_PLACEHOLDER = re.compile(r"\{\{([^{}]*+)\}\}")
_ENV_KEYS = ("name", "region", "account")

MAX_STRING_GROWTH = 65_536
"""Characters the placeholders of one string may add."""
MAX_EXPANSION = 16 * 1024 * 1024
"""Characters the placeholders of one environment's manifests may add, all together."""


class PlaceholderProblem(ValueError):
    """A placeholder that cannot be substituted; ``path`` is where (a manifest's field)."""

    def __init__(self, message: str, path: tuple[Any, ...]):
        self.path = path
        super().__init__(message)


class UnknownVariable(PlaceholderProblem):
    """A placeholder names a variable that does not exist."""


class ExpansionTooLarge(PlaceholderProblem):
    """A placeholder would take a string or the environment past a cap.

    ``repeated``: the environment's budget was already spent by an earlier one
    (reported once, by the first).
    """

    def __init__(self, message: str, path: tuple[Any, ...], repeated: bool = False):
        self.repeated = repeated
        super().__init__(message, path)


class Expansion:
    """What the placeholders of one environment have added so far, against the caps.

    One per environment: the sizes of its variables are measured once, by name.
    """

    def __init__(self) -> None:
        self.chars = 0
        self.nodes = 0
        self.spent: str | None = None
        """Why the budget is spent, once it is: every later placeholder is refused."""
        self._sizes: dict[str, tuple[int, int]] = {}

    def size(self, expr: str, value: Any) -> tuple[int, int]:
        """Characters (about its JSON length) and nodes of a variable's value, measured once."""
        if isinstance(value, str):
            return len(value), 1
        if not isinstance(value, (dict, list)):
            return len(str(value)), 1
        known = self._sizes.get(expr)
        if known is None:
            known = self._sizes[expr] = _measure(value)
        return known

    def charge(self, expr: str, value: Any, path: tuple[Any, ...], growth: int | None = None) -> int:
        """Count one use of ``{{ expr }}`` (worth ``value``) or raise ``ExpansionTooLarge``.

        ``growth``: what the placeholders before it added to the string it is in; None when it
        is the whole string (its value is given as it is). Returns the string's growth with it.
        """
        where = _field(path)
        if self.spent is not None:
            raise ExpansionTooLarge(f"{where}: {self.spent}", path, repeated=True)
        chars, nodes = self.size(expr, value)
        if growth is not None or isinstance(value, str):
            if chars > MAX_STRING_GROWTH:
                raise ExpansionTooLarge(f"{where}: placeholder {_shown(expr)} expands to more than {MAX_STRING_GROWTH} characters", path)
            if (growth or 0) + chars > MAX_STRING_GROWTH:
                raise ExpansionTooLarge(f"{where}: placeholders add more than {MAX_STRING_GROWTH} characters to this string (at {_shown(expr)})", path)
        self.chars += chars
        self.nodes += nodes - 1
        if self.chars > MAX_EXPANSION:
            self.spent = f"placeholders add more than {MAX_EXPANSION} characters to this environment's manifests"
        elif self.nodes > MAX_NODES:
            self.spent = f"list and map variables add more than {MAX_NODES} nodes to this environment's manifests"
        if self.spent is not None:
            raise ExpansionTooLarge(f"{where}: placeholder {_shown(expr)}: {self.spent}", path)
        return (growth or 0) + chars


def _field(path: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in path) or "spec"


def _shown(expr: str) -> str:
    return f"{{{{ {expr} }}}}"


def _measure(value: Any) -> tuple[int, int]:
    """Characters (scalars' text, keys, two per node for punctuation) and nodes (keys included, as
    the YAML reader counts them) of plain data, walked without recursion."""
    chars = nodes = 0
    pending = [value]
    while pending:
        item = pending.pop()
        nodes += 1
        chars += 2
        if isinstance(item, dict):
            nodes += len(item)
            chars += sum(len(str(key)) + 2 for key in item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        else:
            chars += len(item) if isinstance(item, str) else len(str(item))
    return chars, nodes


def interpolate(
    value: Any,
    env: dict[str, str | None],
    variables: dict[str, Any],
    path: tuple[Any, ...] = (),
    expansion: Expansion | None = None,
) -> Any:
    """A copy of ``value`` with every placeholder substituted.

    A string that is exactly one placeholder takes the variable's own type
    (``threshold: "{{ vars.limit }}"`` stays a number). An env key whose value
    is None (the account before STS is asked) is left as written. What the
    placeholders add counts against ``expansion`` (one per environment; a
    fresh one when not given).
    """
    return _interpolate(value, env, variables, path, expansion if expansion is not None else Expansion())


def _interpolate(value: Any, env: dict[str, str | None], variables: dict[str, Any], path: tuple[Any, ...], expansion: Expansion) -> Any:
    if isinstance(value, str):
        return _substitute(value, env, variables, path, expansion)
    if isinstance(value, dict):
        return {k: _interpolate(v, env, variables, path + (k,), expansion) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env, variables, path + (i,), expansion) for i, v in enumerate(value)]
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
        raise UnknownVariable(f"unknown variable {_shown(expr)} (vars: {known})", path)
    raise UnknownVariable(f"unknown variable {_shown(expr)} (use env.name, env.region, env.account or vars.<key>)", path)


def _substitute(text: str, env: dict[str, str | None], variables: dict[str, Any], path: tuple[Any, ...], expansion: Expansion) -> Any:
    if "{{" not in text:
        return text
    whole = _PLACEHOLDER.fullmatch(text)
    if whole:
        expr = whole.group(1).strip()
        known, value = _lookup(expr, env, variables, path)
        if not known:
            return text
        expansion.charge(expr, value, path)
        return value

    growth = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal growth
        expr = match.group(1).strip()
        known, value = _lookup(expr, env, variables, path)
        if not known:
            return match.group(0)
        # Charged before it is made: a list or map is measured once, rendered only within the caps.
        growth = expansion.charge(expr, value, path, growth)
        if isinstance(value, bool):
            return "true" if value else "false"
        rendered = str(value)
        if len(rendered) > MAX_STRING_GROWTH:  # a list or map whose text came out longer than measured (escapes)
            raise ExpansionTooLarge(f"{_field(path)}: placeholder {_shown(expr)} expands to more than {MAX_STRING_GROWTH} characters", path)
        return rendered

    return _PLACEHOLDER.sub(replace, text)
