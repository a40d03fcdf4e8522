"""Hostile input: hypothesis over the manifest loader, CloudFormation templates and the generic differ.

The loader (``load_tree``) must answer any tree with a clean list of
problems, never an exception: random YAML-ish text, and valid manifests
mutated (wrong types, unknown fields, deep nesting, aliases, huge numbers,
unicode, bad names, interpolation placeholders, ``ref:`` strings), and
placeholders of any shape in any string, within 2 s of CPU. ``parse_template``
must answer any template, YAML or JSON (real ones damaged, short-form tags,
aliases, deep nesting, odd scalars), with data or a one-line
``PermanentError``, within 2 s of CPU and 30 MiB. The differ
(``controller/diff.py``) must be total and consistent: ``diff(a, a)`` is
empty, an empty ``diff(a, b)`` means equal on ``a``'s keys, and each change's
path names where the values differ. The CLI's ``validate`` answers exit 1
and no traceback on generated trees.

Examples: 2,700 in total (derandomized, no deadline), printed per test.
Any exception fails; a crash reported but not fixed yet can be listed in
``KNOWN_CRASHES`` (counted apart) beside its ``xfail(strict=True)`` test.
The crashes found so far are fixed and kept as regression tests at the end.
"""

from __future__ import annotations

import io
import json
import math
import re
import shutil
import time
from collections import Counter
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import alarm, bounded
from controller.diff import Change, diff
from controller.errors import Problem
from controller.manifests.loader import LoadResult, load_tree
from controller.catalog import registry

FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


def fuzz(examples: int) -> settings:
    """The settings of every property here, with its share of the 2,700 examples."""
    return settings(FUZZ, max_examples=examples)


# --- known crashes: each listed one has its xfail(strict=True) test at the end of this file ---

KNOWN_CRASHES: list[tuple[str, type[BaseException], str]] = []  # every crash found so far is fixed


def known_crash(exc: BaseException) -> str | None:
    """The name of an already reported crash ``exc`` is, else None."""
    for name, kind, pattern in KNOWN_CRASHES:
        if type(exc) is kind and re.search(pattern, str(exc)):
            return name
    return None


# --- the tree ------------------------------------------------------------------------------------

ENVIRONMENT = """apiVersion: lensops.io/v1
kind: Environment
metadata:
  name: dev
spec:
  region: us-east-1
  account: "123456789012"
  tags: {app: econlens}
  vars: {limit: 5, team: platform}
  sync: {prune: true, selfHeal: true, interval: 5m}
  health: {alarms: [ref:MetricAlarm/api-5xx], bakeTime: 2m, rollback: auto}
  notifications: {topic: ref:Topic/alerts}
"""

MANIFESTS = [
    alarm("api-5xx", extra="alarmActions: [ref:Topic/alerts]\nalarmDescription: 'team {{ vars.team }} in {{ env.name }}'"),
    """apiVersion: lensops.io/v1
kind: Topic
metadata: {name: alerts, annotations: {lensops.io/prune: "false"}}
spec:
  attributes: {DisplayName: EconLens alerts}
  subscriptions: [{protocol: email, endpoint: ops@econlens.example}]
  tags: {team: platform}
""",
    """apiVersion: lensops.io/v1
kind: CompositeAlarm
metadata: {name: api-health, dependsOn: [MetricAlarm/api-5xx]}
spec:
  alarmRule: ALARM("api-5xx") OR ALARM(api-5xx)
  alarmActions: [ref:Topic/alerts.arn]
""",
    """apiVersion: lensops.io/v1
kind: Dashboard
metadata: {name: operations}
spec:
  body:
    widgets:
      - {type: text, x: 0, y: 0, width: 6, height: 3, properties: {markdown: "EconLens {{ env.region }}"}}
""",
    """apiVersion: lensops.io/v1
kind: Budget
metadata: {name: monthly}
spec:
  limit: {amount: 400, unit: USD}
  timeUnit: MONTHLY
  costFilters: {Service: [AWS Lambda]}
  notifications:
    - {notificationType: ACTUAL, threshold: 80, subscribers: [{subscriptionType: EMAIL, address: ops@econlens.example}]}
""",
    """apiVersion: lensops.io/v1
kind: IPSet
metadata: {name: blocked}
spec:
  addresses: ["203.0.113.0/24", "198.51.100.7/32"]
  tags: {team: security}
""",
    """apiVersion: lensops.io/v1
kind: WebACL
metadata: {name: edge}
spec:
  defaultAction: {allow: {}}
  rules:
    - name: block-listed
      priority: 0
      action: {block: {}}
      statement:
        ipSetReferenceStatement: {arn: "ref:IPSet/blocked"}
""",
    """apiVersion: lensops.io/v1
kind: LambdaAlias
metadata: {name: live}
spec:
  functionName: billing
  name: live
  functionVersion: "3"
  deployment: {type: canary, stepPercent: 10, interval: 1m, alarms: [ref:MetricAlarm/api-5xx]}
""",
]
DOCUMENTS = [yaml.safe_load(text) for text in [ENVIRONMENT, *MANIFESTS]]


class Workspace:
    """One folder rewritten for each example: environments/dev/ and nothing else."""

    def __init__(self, root: Path):
        self.root = root

    def write(self, files: dict[str, str | bytes]) -> Path:
        shutil.rmtree(self.root, ignore_errors=True)
        for relative, body in files.items():
            path = self.root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass"))
        return self.root


def check_result(result: Any) -> None:
    """A LoadResult whose problems are well formed."""
    assert isinstance(result, LoadResult)
    for problem in result.all_problems:
        assert isinstance(problem, Problem)
        assert isinstance(problem.path, str) and problem.path
        assert isinstance(problem.line, int) and problem.line >= 0
        assert isinstance(problem.message, str) and problem.message
        str(problem)
    for name, env in result.environments.items():
        assert not result.problems.get(name)
        assert all(r.environment == name for r in env.resources)


def load_or_known(root: Path, stats: Counter[str]) -> LoadResult | None:
    """load_tree(root); a known crash is counted and gives None, any other exception fails the test."""
    try:
        result = load_tree(root, registry())
    except Exception as exc:  # the property under test
        name = known_crash(exc)
        if name is None:
            raise
        stats[f"known crash: {name}"] += 1
        return None
    check_result(result)
    stats["valid" if result.ok else "problems"] += 1
    return result


# --- strategies: hostile values and mutations --------------------------------------------------

NAMES = st.sampled_from(["", "A", "-x", "x-", "a_b", "a" * 64, "ünï", "a.b", "0", "a--b", "🙂", "x" * 1000, "api-5xx", "alerts"])
PLACEHOLDERS = st.sampled_from([
    "{{ vars.limit }}", "{{ vars.nope }}", "{{ env.name }}", "{{ env.account }}", "{{ env.secret }}", "{{", "}}",
    "{{ }}", "{{ vars. }}", "{{vars.team}}-{{env.region}}", "{{ {{ vars.limit }} }}", "{{ env.name.upper }}",
])
REFS = st.sampled_from([
    "ref:", "ref:Topic", "ref:Topic/", "ref:Topic/alerts", "ref:Topic/alerts.arn", "ref:Topic/missing", "ref:Nope/x",
    "ref:MetricAlarm/api-5xx.arn", "ref:Topic/ALERTS", "ref:Topic/alerts.", "ref:Topic/alerts..x", "ref:WebACL/edge",
    "ref:CompositeAlarm/api-health", "ref:Environment/dev",
])
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(),
    st.text(max_size=30),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30),
    NAMES,
    PLACEHOLDERS,
    REFS,
    st.sampled_from(["5m", "1h30m", "-1s", "99999999999999999999h", "off", "on", "yes", "no", "~", "null", "0x1F", "1e400", ".inf", "-.nan"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.text(max_size=8), NAMES), inner, max_size=4)),
    max_leaves=12,
)


def deep(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for level in range(depth):
        value = {"a": value} if level % 2 else [value]
    return value


def paths_of(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into nested dicts and lists, the root included."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths_of(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths_of(item, prefix + (index,))
    return found


def get_at(value: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        value = value[part]
    return value


@st.composite
def mutated(draw: Any, data: Any) -> Any:
    """``data`` with one to three mutations at random paths."""
    import copy

    data = copy.deepcopy(data)
    for _ in range(draw(st.integers(1, 3))):
        paths = paths_of(data)
        path = draw(st.sampled_from(paths))
        operation = draw(st.sampled_from(["replace", "replace", "unknown-field", "delete", "deep", "wrap-list", "wrap-dict"]))
        if not path:
            if operation == "replace":
                data = draw(VALUES)
            continue
        parent, last = get_at(data, path[:-1]), path[-1]
        if operation == "replace":
            parent[last] = draw(VALUES)
        elif operation == "unknown-field":
            target = parent[last] if isinstance(parent[last], dict) else parent
            if isinstance(target, dict):
                target[draw(st.sampled_from(["threshhold", "extra", "Spec", "apiversion", "metadata", "", "kind "]))] = draw(VALUES)
        elif operation == "delete":
            del parent[last]
        elif operation == "deep":
            parent[last] = deep(draw(st.integers(1, 80)), parent[last])
        elif operation == "wrap-list":
            parent[last] = [parent[last]]
        else:
            parent[last] = {"value": parent[last]}
    return data


def dump(documents: list[Any]) -> str:
    return yaml.safe_dump_all(documents, allow_unicode=True, sort_keys=False, width=1 << 20)


TEXT_SNIPPETS = st.sampled_from([
    "\n", ": ", "- ", "---\n", "...\n", "{", "}", "[", "]", ",", "&a ", "*a", "*b ", "<<: ", "!!int ", "!!str ", "!!binary ",
    "!!timestamp ", "!!python/object:os.system ", "!custom ", "? ", "|\n  ", ">\n  ", "\t", "  ", "#", "'", '"', "\\",
    "%YAML 1.1\n", "%TAG ! tag:x,2000:\n", "apiVersion: lensops.io/v1\n", "kind: MetricAlarm\n", "kind: Environment\n",
    "metadata:\n  name: x\n", "spec:\n", "threshold: 1e400\n", "name: ünï\n", "\x00", "\ufeff", "\u2028", "🙂", "{{ vars.x }}",
    "ref:Topic/alerts", "9" * 400, "1.5e-400", "0o777", "0b101", ".nan", "~", "null", "yes", "on", "2001-12-14t21:59:43.10-05:00",
])
BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(6)
)
SPECIALS = [
    BILLION_LAUGHS,
    "a: " + "[" * 70 + "]" * 70 + "\n",
    "a: " + "{b: " * 70 + "1" + "}" * 70 + "\n",
    "spec: &s {x: *s}\n",
    "a: *undefined\n",
    "a: 1\na: 2\n",
    "[1, 2]: x\n",
    "? [a, b]\n: c\n",
    "---\n" * 50,
    "a: !!binary aGVsbG8=\n",
    "a: !!set {x, y}\n",
    "a: !!omap [{x: 1}]\n",
    "a: !!python/name:os.system\n",
]


@st.composite
def yamlish(draw: Any) -> str | bytes:
    """Random text made of YAML's punctuation and pieces of manifests, or a hostile classic."""
    choice = draw(st.integers(0, 9))
    if choice == 0:
        return draw(st.sampled_from(SPECIALS))
    if choice == 1:
        return draw(st.binary(max_size=200))
    if choice == 2:
        return draw(st.text(max_size=200))
    pieces = draw(st.lists(st.one_of(TEXT_SNIPPETS, st.text(max_size=6)), max_size=40))
    return "".join(pieces)


# --- the loader --------------------------------------------------------------------------------


def test_loader_answers_random_yamlish_text_with_problems(tmp_path):
    stats: Counter[str] = Counter()
    space = Workspace(tmp_path / "tree")

    @fuzz(500)
    @given(text=yamlish(), where=st.sampled_from(["environments/dev/fuzz.yaml", "environments/dev/environment.yaml", "base/fuzz.yaml"]))
    def check(text: str | bytes, where: str) -> None:
        files: dict[str, str | bytes] = {"environments/dev/environment.yaml": ENVIRONMENT}
        files[where] = text
        load_or_known(space.write(files), stats)

    check()
    print(f"\nloader, random YAML-ish text: {sum(stats.values())} examples, {dict(stats)}")
    assert stats["problems"] > 0


def test_loader_answers_mutated_manifests_with_problems(tmp_path):
    stats: Counter[str] = Counter()
    space = Workspace(tmp_path / "tree")

    @fuzz(800)
    @given(data=st.data())
    def check(data: Any) -> None:
        index = data.draw(st.integers(0, len(DOCUMENTS) - 1))
        documents = list(DOCUMENTS)
        documents[index] = data.draw(mutated(DOCUMENTS[index]))
        try:
            text = dump(documents[1:])
            env_text = dump([documents[0]])
        except yaml.representer.RepresenterError:
            return
        if data.draw(st.booleans()):  # text-level damage too: an alias, a merge, a tag...
            at = data.draw(st.integers(0, len(text)))
            text = text[:at] + data.draw(TEXT_SNIPPETS) + text[at:]
        load_or_known(space.write({"environments/dev/environment.yaml": env_text, "environments/dev/manifests.yaml": text}), stats)

    check()
    print(f"\nloader, mutated manifests: {sum(stats.values())} examples, {dict(stats)}")
    assert stats["problems"] > 0


def test_the_valid_tree_loads(tmp_path):
    root = Workspace(tmp_path / "tree").write({"environments/dev/environment.yaml": ENVIRONMENT, "environments/dev/m.yaml": dump(DOCUMENTS[1:])})
    result = load_tree(root, registry())
    assert result.ok, result.all_problems
    assert len(result.environments["dev"].resources) == len(MANIFESTS)


def test_validate_command_on_generated_trees(tmp_path):
    """controller.cli.main(["validate", path]) on a handful of generated invalid trees: exit 1, a clean message."""
    from controller.cli import main

    space = Workspace(tmp_path / "tree")
    seen: list[int] = []

    @fuzz(25)
    @given(data=st.data())
    def check(data: Any) -> None:
        index = data.draw(st.integers(1, len(DOCUMENTS) - 1))
        documents = list(DOCUMENTS)
        documents[index] = data.draw(mutated(DOCUMENTS[index]))
        try:
            text = dump(documents[1:])
        except yaml.representer.RepresenterError:
            return
        root = space.write({"environments/dev/environment.yaml": ENVIRONMENT, "environments/dev/manifests.yaml": text})
        stats: Counter[str] = Counter()
        result = load_or_known(root, stats)
        if result is None or result.ok:
            return
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = main(["validate", str(root)])
        assert code == 1, out.getvalue() + err.getvalue()
        assert "Traceback" not in err.getvalue() and "internal error" not in err.getvalue(), err.getvalue()
        lines = [line for line in err.getvalue().splitlines() if line.strip()]
        assert lines and all(line.startswith("environments/dev/") for line in lines), lines  # paths relative to the tree's root
        seen.append(len(lines))

    check()
    print(f"\nlensops validate on {len(seen)} generated invalid trees: exit 1, {sum(seen)} problem lines, no traceback")
    assert len(seen) >= 5


# --- CloudFormation templates ---------------------------------------------------------------------


def _seed_templates() -> list[str]:
    """The project's real templates (the example tree's, the Stack tests'), to mutate."""
    import test_stack

    seeds = [path.read_text() for path in sorted((Path(__file__).parent.parent / "desired-state" / "templates").glob("*.yaml"))]
    return seeds + [test_stack.NETWORK_TEMPLATE, test_stack.NETWORK_TEMPLATE_REFORMATTED, test_stack.APP_TEMPLATE]


SEED_TEMPLATES = _seed_templates()
SHORT_TAGS = ["!Ref ", "!GetAtt ", "!Sub ", "!Join ", "!If ", "!Select ", "!Split ", "!FindInMap ", "!Base64 ", "!Condition ",
              "!Equals ", "!Not ", "!And ", "!Or ", "!GetAZs ", "!ImportValue ", "!Cidr ", "!Transform ", "!Unknown ", "! ", "!"]
TEMPLATE_SNIPPETS = st.sampled_from([
    *SHORT_TAGS, "!Ref x", "!GetAtt a.b.c", "!GetAtt [a, b]", "!Sub [x, {a: 1}]", "!Join ['', [a, !Ref b]]", "!If [c, !Ref a, b]",
    "&a ", "*a", "&b !Ref x ", "<<: ", "<<: *a", "[", "]", "{", "}", ",", "\n", ": ", "- ", "? ", "---\n", "...\n", "'", '"', "\\",
    "\t", "  ", "#", "|\n  ", ">-\n  ", "2010-09-09", "2001-12-14t21:59:43.10-05:00", "0x1F", "0o17", ".nan", "-.inf", "1e400",
    "9" * 400, "~", "null", "yes", "on", "!!binary aGk=", "!!set {a, b}", "!!omap [{a: 1}]", "!!int x", "!!python/object:os.system ",
    "!<tag:x,2000:y> ", "%TAG ! tag:x,2000:\n", "\ufeff", "\x00", "🙂", "Fn::Sub: ", "Ref: ", '{"Ref": "x"}', "[[[[[[", "]]]]]]",
])
TEMPLATE_SPECIALS = [
    "Resources:\n  a: &a [" + ", ".join(["!Ref x"] * 10) + "]\n" + "".join(f"  {chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(7)),
    "Resources: " + "!Sub [" * 200 + "]" * 200 + "\n",
    "Resources: " + "{a: !If [" * 40 + "1" + "]}" * 40 + "\n",
    '{"Resources": ' + "[" * 5000 + "]" * 5000 + "}",
    '{"Resources": ' + '{"a": ' * 70 + "1" + "}" * 70 + "}",
    "Resources: {a: &a !Ref x, b: [" + ", ".join(["*a"] * 50_000) + "]}\n",
    "Resources: {}\n---\nResources: {}\n",
    "Resources: !Ref\n",
    "!Ref Resources\n",
    "? !Ref x\n: y\n",
    "Resources: {<<: !Ref x}\n",
    "Resources: {<<: [!Ref x]}\n",
    "",
    "{}",
    "null",
    "[]",
]


def nesting(value: Any) -> int:
    """How many mappings and lists deep ``value`` goes, walked without recursion."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            pending.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


@st.composite
def templates(draw: Any) -> str:
    """A real template damaged as text, one re-written as YAML or JSON after mutating its data, random
    text of YAML's and CloudFormation's punctuation, or a hostile classic."""
    choice = draw(st.integers(0, 9))
    if choice == 0:
        return draw(st.sampled_from(TEMPLATE_SPECIALS))
    if choice == 1:
        return "".join(draw(st.lists(st.one_of(TEMPLATE_SNIPPETS, st.text(max_size=6)), max_size=40)))
    seed = draw(st.sampled_from(SEED_TEMPLATES))
    if choice <= 4:
        from reconcilers.cloudformation import parse_template

        data = draw(mutated(parse_template(seed)))
        try:  # deep data as JSON: PyYAML's dumper recurses a few frames a level, and "deep" mutations stack
            return json.dumps(data, allow_nan=True) if choice == 2 or nesting(data) > 100 else dump([data])
        except (yaml.representer.RepresenterError, ValueError):
            return seed
    for _ in range(draw(st.integers(1, 5))):
        at = draw(st.integers(0, len(seed)))
        seed = seed[:at] + draw(TEMPLATE_SNIPPETS) + seed[at:]
    return seed


def test_templates_parse_or_are_refused_in_one_line_within_bounds():
    """parse_template on any text: a dict that JSON can carry, or a PermanentError of one line, within
    2 s of CPU and 30 MiB; never another exception."""
    from controller.errors import PermanentError
    from reconcilers.cloudformation import parse_template

    stats: Counter[str] = Counter()
    worst = [0.0, 0.0]

    @fuzz(400)
    @given(body=templates())
    def check(body: str) -> None:
        outcome, seconds, peak = bounded(lambda: parse_template(body))
        if isinstance(outcome, PermanentError):
            assert str(outcome) and "\n" not in str(outcome), repr(str(outcome))
            stats["refused"] += 1
        else:
            assert isinstance(outcome, dict), repr(outcome)  # nor any other exception
            json.dumps(outcome)  # the plan digests and stores it
            stats["parsed"] += 1
        worst[:] = max(worst[0], seconds), max(worst[1], peak)
        assert seconds < 2.0 and peak < 30, (seconds, peak, body[:200])

    check()
    print(f"\nparse_template: {sum(stats.values())} examples, {dict(stats)}, worst {worst[0]:.2f} s, {worst[1]:.1f} MiB (traced)")
    assert stats["refused"] > 0 and stats["parsed"] > 0


# --- placeholders --------------------------------------------------------------------------------

PLACEHOLDER_PIECES = st.sampled_from([
    "{{", "}}", "{", "}", "{{{{", "}}}}", " ", "\t", "   ", "vars", "env", ".", "name", "region", "account", "team", "limit", "big",
    "nope", "vars.", "env.", "x", "{{ vars.big }}", "{{vars.team}}", "{{ env.name }}", "{{ env.account }}", "{{ env.region}}",
    "{{ vars.limit }}", "{{ {{ vars.limit }} }}", "{{ vars.nope }}", "{{ env.secret }}", "{{}}", "{{ . }}", "ref:Topic/alerts",
])
PLACEHOLDER_TEXT = st.one_of(
    st.lists(PLACEHOLDER_PIECES, max_size=30).map("".join),
    st.builds(lambda piece, n: piece * n, st.sampled_from(["{{ vars.big }}", "{{env.name}}", "{{ vars.big }} ", "{{ vars.limit }}"]), st.integers(1, 100)),
)
BIG = "b" * 2000


def test_placeholders_in_any_text_load_or_are_problems_within_bounds(tmp_path):
    """Random text with `{{`, `}}`, blanks, nested braces and variable names in a manifest's strings
    (a value, a key, a list of them) and in the Environment's own spec: load_tree answers with problems
    or a tree, within 2 s of CPU."""
    stats: Counter[str] = Counter()
    space = Workspace(tmp_path / "tree")

    @fuzz(150)
    @given(text=PLACEHOLDER_TEXT, copies=st.integers(1, 300), where=st.sampled_from(["value", "list", "key", "environment"]))
    def check(text: str, copies: int, where: str) -> None:
        env = {"apiVersion": "lensops.io/v1", "kind": "Environment", "metadata": {"name": "dev"},
               "spec": {"region": "us-east-1", "account": "123456789012", "vars": {"limit": 5, "team": "platform", "big": BIG}}}
        topic = {"apiVersion": "lensops.io/v1", "kind": "Topic", "metadata": {"name": "alerts"}, "spec": {"attributes": {"DisplayName": "x"}}}
        if where == "value":
            topic["spec"]["attributes"]["DisplayName"] = text
        elif where == "list":
            topic["spec"]["subscriptions"] = [{"protocol": "email", "endpoint": text}] * copies
        elif where == "key":
            topic["spec"]["attributes"] = {text: "x"}
        else:
            env["spec"]["tags"] = {"team": text}
        started = time.thread_time()
        result = load_or_known(space.write({"environments/dev/environment.yaml": dump([env]), "environments/dev/topic.yaml": dump([topic])}), stats)
        assert time.thread_time() - started < 2.0
        if result is not None and any("characters" in p.message for p in result.all_problems):
            stats["capped"] += 1

    check()
    print(f"\nloader, placeholders: {stats['valid'] + stats['problems']} examples, {dict(stats)}")
    assert stats["problems"] > 0 and stats["valid"] > 0 and stats["capped"] > 0


# --- the differ --------------------------------------------------------------------------------

KEYS = st.text(alphabet="abcxyz-_0123456789", min_size=1, max_size=3)
LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=4),
)
TREES = st.recursive(LEAVES, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=3)), max_leaves=10)
DICTS = st.dictionaries(KEYS, TREES, max_size=5)


def same(a: Any, b: Any) -> bool:
    """The differ's notion of equality, written independently: numbers by value (bools apart),
    maps key by key with an absent key as None, lists element by element."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return all(same(a.get(k), b.get(k)) for k in set(a) | set(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


_MISSING = object()


def lookup(value: Any, path: list[str]) -> Any:
    for part in path:
        if not isinstance(value, dict):
            return _MISSING
        value = value.get(part)
    return value


def check_paths(desired: dict[str, Any], live: dict[str, Any], changes: list[Change], ignore: set[str]) -> None:
    paths = [c.path for c in changes]
    assert len(paths) == len(set(paths)), paths
    for change in changes:
        parts = change.path.split(".")
        assert all(parts), change.path
        assert parts[0] in desired, change.path
        assert not any(".".join(parts[: i + 1]) in ignore for i in range(len(parts))), change.path
        assert lookup(desired, parts) is change.new or lookup(desired, parts) == change.new, change
        assert lookup(live, parts) is change.old or lookup(live, parts) == change.old, change
        assert not same(change.new, change.old), change
        # below the top level, a change's parents are maps on both sides (else the parent itself differs)
        for i in range(1, len(parts)):
            assert isinstance(lookup(desired, parts[:i]), dict) and isinstance(lookup(live, parts[:i]), dict), change


@fuzz(250)
@given(a=DICTS)
def test_diff_of_a_state_with_itself_is_empty(a):
    import copy

    assert diff(a, a) == []
    assert diff(a, copy.deepcopy(a)) == []


def without(value: dict[str, Any], ignore: set[str]) -> dict[str, Any]:
    """A copy of ``value`` without the ignored paths (dotted, through maps)."""
    import copy

    value = copy.deepcopy(value)
    for path in ignore:
        *parents, last = path.split(".")
        target: Any = value
        for part in parents:
            target = target.get(part) if isinstance(target, dict) else None
        if isinstance(target, dict):
            target.pop(last, None)
    return value


IGNORED = st.sets(st.one_of(KEYS, st.builds(lambda a, b: f"{a}.{b}", KEYS, KEYS)), max_size=3)


@fuzz(400)
@given(a=DICTS, b=DICTS, ignore=IGNORED, mix=st.booleans())
def test_diff_is_empty_only_for_equal_states_and_paths_are_well_formed(a, b, ignore, mix):
    if mix:  # share part of the state, so that small differences are common
        b = {**a, **{k: v for k, v in b.items() if len(k) == 1}}
    changes = diff(a, b, ignore)
    check_paths(a, b, changes, ignore)
    a_seen, b_seen = without(a, ignore), without(b, ignore)
    equal = all(same(a_seen[k], b_seen.get(k)) for k in a_seen)
    assert (changes == []) == equal, (changes, a_seen, b_seen)


@fuzz(25)
@given(a=DICTS)
def test_diff_with_numbers_written_differently_is_empty(a):
    """1 and 1.0 are the same number: a state and its copy with whole floats as ints do not differ."""

    def as_int(value: Any) -> Any:
        if isinstance(value, float) and not isinstance(value, bool) and value.is_integer() and math.isfinite(value):
            return int(value)
        if isinstance(value, dict):
            return {k: as_int(v) for k, v in value.items()}
        if isinstance(value, list):
            return [as_int(v) for v in value]
        return value

    assert diff(a, as_int(a)) == []


# --- crashes found by fuzzing, fixed: each stays as a regression test --------------------------------------------


MINIMAL_ENVIRONMENT = "apiVersion: lensops.io/v1\nkind: Environment\nmetadata: {name: dev}\nspec:\n  region: us-east-1\n"


def _environment_with(tmp_path: Path, extra: str, manifests: str = "") -> Path:
    """A tree whose environment.yaml is the minimal one plus ``extra`` under spec."""
    files = {"environments/dev/environment.yaml": MINIMAL_ENVIRONMENT + f"  {extra}\n"}
    if manifests:
        files["environments/dev/manifests.yaml"] = manifests
    return Workspace(tmp_path / "tree").write(files)


def test_an_infinite_duration_is_a_problem(tmp_path):
    result = load_tree(_environment_with(tmp_path, "health: {bakeTime: .inf}"), registry())
    assert "bakeTime" in str(result.all_problems)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("spec: " + "[" * 5000 + "]" * 5000 + "\n", 1, "nesting deeper than 64 levels"),
        ("spec: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n", 1, "nesting deeper than 64 levels"),
        ("".join(" " * i + "- \n" for i in range(1000)), 65, "nesting deeper than 64 levels"),
        ("[" * 500_000, 1, "nesting deeper than 64 levels"),
        (BILLION_LAUGHS + "z: [*g, *g]\n", 5, "expands to more than 100000 nodes"),
        ("a: &a [" + ", ".join(["x"] * 1000) + "]\n" + "".join(f"b{i}: *a\n" for i in range(100)), 100, "expands to more than 100000 nodes"),
        ("a: &a [*a]\n", 1, "unknown alias *a"),
    ],
    ids=["flow-lists", "flow-maps", "block-lists", "half-a-mebibyte-of-brackets", "laughs", "wide-alias", "self-alias"],
)
def test_hostile_yaml_is_refused_quickly_in_one_pass(text, line, message):
    from controller.manifests.yamlsafe import YamlProblem, load_documents

    # Quickly: well within a second of this thread's CPU time (a refusal takes 0.03 s here, 0.35 s
    # with two busy loops on the 2 cores), where a reader that expanded what it refuses would take
    # minutes. The wall clock is the machine's load, not the reader's work.
    started = time.thread_time()
    with pytest.raises(YamlProblem) as caught:
        load_documents(text)
    assert time.thread_time() - started < 2.0
    assert (caught.value.line, message in str(caught.value)) == (line, True), (caught.value.line, str(caught.value))


# YAML reads NEL and the Unicode line and paragraph separators as line breaks, so a plain
# scalar holding one does not come back as it was dumped, with PyYAML as with us. A lone
# surrogate ("\ud800", dumped as an escape) is no text: libyaml refuses it where PyYAML's
# Python reader lets it through, and no manifest can send one to AWS.
_TEXT = st.characters(exclude_categories=["Cs"], exclude_characters="\x85\u2028\u2029")
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(_TEXT, max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(_TEXT, max_size=6), inner, max_size=4),
    max_leaves=20,
)


@fuzz(150)
@given(documents=st.lists(JSONISH, min_size=1, max_size=3))
def test_yaml_reads_as_pyyaml_safe_load_reads(documents):
    """The one-pass reader gives PyYAML's own data for any dumped documents (string keys, no dates)."""
    from controller.manifests.yamlsafe import load_documents

    text = dump(documents)
    assert [d.data for d in load_documents(text)] == list(yaml.safe_load_all(text)) == documents


def test_a_merge_key_on_a_scalar_is_a_problem(tmp_path):
    result = load_tree(_environment_with(tmp_path, "tags: {<<: 5}"), registry())
    assert "merg" in str(result.all_problems)


@pytest.mark.parametrize("value", ["!!int abc", "!!float x", "!!bool maybe", "!!int ''"])
def test_a_bad_explicit_tag_is_a_problem(tmp_path, value):
    result = load_tree(_environment_with(tmp_path, f"tags: {{a: {value}}}"), registry())
    assert result.all_problems


@pytest.mark.parametrize(("a", "b"), [(2**53, 2**53 + 1), (10**400, 10**400)], ids=["above-2**53", "beyond-float-range"])
def test_diff_compares_big_integers_exactly(a, b):
    assert diff({"n": a}, {"n": b}) == ([] if a == b else [Change("n", b, a)])


@pytest.mark.parametrize("where", ["environment", "manifest"])
def test_a_kind_that_is_not_a_string_is_a_problem(tmp_path, where):
    if where == "environment":
        root = Workspace(tmp_path / "tree").write({"environments/dev/environment.yaml": MINIMAL_ENVIRONMENT.replace("kind: Environment", "kind: [Environment]")})
    else:
        root = _environment_with(tmp_path, "tags: {}", alarm("api-5xx").replace("kind: MetricAlarm", "kind: {MetricAlarm: 1}"))
    result = load_tree(root, registry())
    assert any("kind" in p.message for p in result.all_problems)


def test_a_huge_sync_interval_does_not_stop_the_daemon(aws, client, tmp_path):
    from daemon_helpers import DaemonProcess

    root = Workspace(tmp_path / "tree").write({
        "environments/dev/environment.yaml": MINIMAL_ENVIRONMENT + "  sync: {interval: 99999999999999999999h}\n",
        "environments/dev/alarms.yaml": alarm("dev-5xx"),
        "environments/prod/environment.yaml": MINIMAL_ENVIRONMENT.replace("name: dev", "name: prod"),
        "environments/prod/alarms.yaml": alarm("prod-5xx"),
    })
    daemon = DaemonProcess(tmp_path, {"LENSOPS_REPO_URL": str(root), "LENSOPS_POLL_INTERVAL": "1s"})
    try:
        daemon.wait_until(lambda: client("cloudwatch").describe_alarms(AlarmNames=["prod-5xx"])["MetricAlarms"], timeout=8)
        assert daemon.get("/readyz")[0] == 200
    finally:
        daemon.stop()
