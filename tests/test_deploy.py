"""The deployment files agree with the code: image, ECS task, IAM policy, dashboard and alerts.

Every metric that the Grafana dashboard and the Prometheus rules query is
one that ``controller.metrics`` exports; the ECS task sets only settings that
``controller.settings`` knows; the Dockerfile runs ``lensops`` as a non-root
user with a health check; the IAM policy in ``deploy/iam`` is what
``lensops iam-policy`` prints for ``desired-state/`` today.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.session
import pytest
import yaml
from botocore.validate import ParamValidator
from prometheus_client import generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from controller import daemon, metrics
from controller.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
TASK_DEFINITION = ROOT / "deploy" / "ecs" / "task-definition.json"
SERVICE = ROOT / "deploy" / "ecs" / "service.json"
TASK_POLICY = ROOT / "deploy" / "iam" / "task-role-policy.json"
DASHBOARD = ROOT / "deploy" / "grafana" / "lensops-dashboard.json"
RULES = ROOT / "deploy" / "prometheus" / "lensops-rules.yaml"
OPERATIONS = ROOT / "docs" / "operations.md"

# Metrics that Prometheus itself makes, allowed beside lensops's own.
PROMETHEUS_METRICS = {"up"}
# prometheus-client's ProcessCollector, registered on lensops's own registry (Linux: it reads /proc).
PROCESS_FAMILIES = {
    "process_virtual_memory_bytes", "process_resident_memory_bytes", "process_start_time_seconds",
    "process_cpu_seconds", "process_open_fds", "process_max_fds",
}
PROMQL_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "atmodifier", "inf", "nan"}
LABEL_SET_VALUE = "__test_deploy__"


# --- helpers ---------------------------------------------------------------


def exported_metric_names() -> set[str]:
    """Sample names ``/metrics`` exposes: every metric of the registry with one label set touched.

    Counters expose ``<name>_total`` (and ``_created``), histograms
    ``_bucket``/``_sum``/``_count``; reading them back from the text format is
    what Prometheus will see. The touched label sets are removed afterwards.
    """
    wrappers = [value for value in vars(metrics).values() if isinstance(value, MetricWrapperBase)]
    touched = []
    try:
        for wrapper in wrappers:
            labelnames = wrapper._labelnames  # prometheus_client keeps them private
            if labelnames:
                wrapper.labels(*[LABEL_SET_VALUE] * len(labelnames))
                touched.append((wrapper, len(labelnames)))
        text = generate_latest(metrics.REGISTRY).decode()
    finally:
        for wrapper, count in touched:
            try:
                wrapper.remove(*[LABEL_SET_VALUE] * count)
            except KeyError:
                pass
    names = {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}
    families = {family.name for family in metrics.REGISTRY.collect()}
    own = {w._name for w in wrappers}  # _name: private too
    assert families - own == PROCESS_FAMILIES, "every registered metric is a module-level object of controller.metrics, or the process collector's"
    return names


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords, labels and durations left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers, Grafana's ${vars}
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery durations
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)  # label lists
    text = re.sub(r"\$\w+", " ", text)  # Grafana variables outside braces
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in PROMQL_KEYWORDS:
            continue
        names.add(name)
    return names


def walk_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from walk_panels(panel.get("panels", []))


def dashboard_expressions() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text())
    exprs = [(panel["title"], target["expr"]) for panel in walk_panels(board["panels"]) for target in panel.get("targets", []) if target.get("expr")]
    for variable in board["templating"]["list"]:
        query = variable.get("query")
        if variable["type"] == "query":
            exprs.append((f"variable {variable['name']}", query["query"] if isinstance(query, dict) else query))
    return exprs


def label_values_metrics(expr: str) -> set[str]:
    """``label_values(metric, label)`` is Grafana's, not PromQL: the metric is its first argument."""
    return {m.group(1) for m in re.finditer(r"label_values\(\s*([a-zA-Z_:][\w:]*)", expr)}


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, rest = line.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    return instructions[starts[-1] :]


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors of a Markdown page."""
    found = set()
    for line in markdown.splitlines():
        match = re.match(r"#{1,6}\s+(.*)", line)
        if match:
            title = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower())
            found.add(title.replace(" ", "-"))
    return found


def container() -> dict[str, Any]:
    task = json.loads(TASK_DEFINITION.read_text())
    (lensops,) = [c for c in task["containerDefinitions"] if c["name"] == "lensops"]
    return lensops


# --- (a) metric names ----------------------------------------------------------


def test_promql_name_extraction_sees_metrics_and_skips_the_rest() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, environment) (rate(lensops_x_bucket{environment=~"$environment"}[$__rate_interval])))'
        ' / on (environment) group_left(revision) up{job="a"} and time() - lensops_y offset 5m'
    )
    assert promql_metric_names(expr) == {"lensops_x_bucket", "up", "lensops_y"}


def test_the_metric_catalogue_is_the_contracts() -> None:
    names = exported_metric_names()
    for expected in (
        "lensops_reconcile_total",
        "lensops_reconcile_duration_seconds_bucket",
        "lensops_reconcile_duration_seconds_count",
        "lensops_resources",
        "lensops_revision_info",
        "lensops_last_sync_timestamp_seconds",
        "lensops_aws_api_calls_total",
        "lensops_git_fetch_total",
        "lensops_runbook_runs_total",
        "lensops_leader",
        # Beside the contract's list: the version, and the process collector's series.
        "lensops_build_info",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_start_time_seconds",
    ):
        assert expected in names
    assert LABEL_SET_VALUE not in generate_latest(metrics.REGISTRY).decode(), "the touched label sets are removed again"


def test_every_dashboard_metric_exists() -> None:
    exported = exported_metric_names()
    exprs = dashboard_expressions()
    assert len(exprs) >= 15
    used: set[str] = set()
    for title, expr in exprs:
        names = label_values_metrics(expr) if expr.lstrip().startswith("label_values(") else promql_metric_names(expr)
        assert names, f"dashboard {title!r}: no metric found in {expr}"
        unknown = names - exported - PROMETHEUS_METRICS
        assert not unknown, f"dashboard panel {title!r} queries unknown metrics {sorted(unknown)}: {expr}"
        used |= names
    # Every metric family of the contract is on the dashboard.
    families = {family.name for family in metrics.REGISTRY.collect()}
    suffixes = ("", "_total", "_bucket", "_sum", "_count")
    shown = {family for family in families if any(family + suffix in used for suffix in suffixes)}
    assert shown == families, f"not on the dashboard: {sorted(families - shown)}"


def test_every_rule_metric_exists() -> None:
    exported = exported_metric_names()
    for rule in rules():
        names = promql_metric_names(rule["expr"])
        assert names, rule["alert"]
        unknown = names - exported - PROMETHEUS_METRICS
        assert not unknown, f"alert {rule['alert']} queries unknown metrics {sorted(unknown)}: {rule['expr']}"


INPUT = "${DS_PROMETHEUS}"
SCOPE = ('job=~"$job"', 'instance=~"$instance"')


def selectors(expr: str) -> list[str]:
    """Each metric selector of a PromQL expression, with its label matchers (``name{...}`` or a bare name)."""
    names = promql_metric_names(expr)
    return [m.group(0) for m in re.finditer(r"\b([a-zA-Z_:][\w:]*)(\{[^}]*\})?", expr) if m.group(1) in names]


def test_dashboard_import_asks_for_the_data_source() -> None:
    """Grafana's import asks for each ``__inputs`` entry: every data source reference is that input."""
    board = json.loads(DASHBOARD.read_text())
    assert board["schemaVersion"] == 39
    (source,) = board["__inputs"]
    assert (source["name"], source["type"], source["pluginId"]) == ("DS_PROMETHEUS", "datasource", "prometheus")
    assert {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"} in board["__requires"]
    variables = board["templating"]["list"]
    assert all(v["type"] != "datasource" for v in variables), "the input chooses the data source, not a variable"
    for variable in variables:
        assert variable["datasource"] == {"type": "prometheus", "uid": INPUT}, variable["name"]
    ids = [panel["id"] for panel in walk_panels(board["panels"])]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for panel in walk_panels(board["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": INPUT}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == {"type": "prometheus", "uid": INPUT}, panel["title"]
    everything = json.dumps(board)
    assert "${datasource}" not in everything and everything.count("${DS_") == everything.count(INPUT)


def test_dashboard_is_scoped_by_job_and_instance() -> None:
    """Several Prometheus jobs or replicas on one data source: the job and replica variables narrow every query."""
    board = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert list(variables) == ["job", "instance", "environment"], "each variable's query uses the ones before it"
    assert variables["job"]["query"]["query"] == "label_values(lensops_build_info, job)"
    assert variables["instance"]["query"]["query"] == 'label_values(lensops_build_info{job=~"$job"}, instance)'
    assert variables["instance"]["includeAll"] and variables["instance"]["allValue"] == ".*"
    assert variables["environment"]["query"]["query"] == 'label_values(lensops_revision_info{job=~"$job", instance=~"$instance"}, environment)'
    for panel in walk_panels(board["panels"]):
        for target in panel.get("targets", []):
            found = selectors(target["expr"])
            assert found, (panel["title"], target["expr"])
            for selector in found:
                assert all(matcher in selector for matcher in SCOPE), f"panel {panel['title']!r}: {selector} is not scoped by $job and $instance"


def test_selectors_of_an_expression() -> None:
    expr = 'sum by (le) (rate(lensops_x_bucket{job=~"$job", a="b"}[5m])) / on (x) up and time() - lensops_y offset 5m'
    assert selectors(expr) == ['lensops_x_bucket{job=~"$job", a="b"}', "up", "lensops_y"]


# --- (b) the rules file ---------------------------------------------------------

EXPECTED_ALERTS = {
    "LensopsSyncFailing",
    "LensopsRevisionInvalid",
    "LensopsDriftDetected",
    "LensopsRollback",
    "LensopsNoSyncTooLong",
    "LensopsRunbookFailed",
    "LensopsAWSThrottling",
    "LensopsGitFetchFailing",
    "LensopsDown",
}


def test_rules_have_the_prometheus_rule_group_structure() -> None:
    document = yaml.safe_load(RULES.read_text())
    assert set(document) == {"groups"}
    for group in document["groups"]:
        assert isinstance(group["name"], str) and group["name"]
        assert set(group) <= {"name", "interval", "limit", "rules"}
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}, rule
            assert isinstance(rule["alert"], str) and isinstance(rule["expr"], str)
            if "for" in rule:
                assert re.fullmatch(r"(\d+[smhdwy])+", rule["for"]), rule["for"]
            assert rule["labels"]["severity"] in ("critical", "warning", "info")
            assert set(rule["annotations"]) >= {"summary", "description", "runbook_url"}
            assert all(isinstance(v, str) for v in {**rule["labels"], **rule["annotations"]}.values())
    assert {rule["alert"] for rule in rules()} == EXPECTED_ALERTS


def test_runbook_urls_point_at_sections_of_the_operations_guide() -> None:
    sections = anchors(OPERATIONS.read_text())
    for rule in rules():
        url = rule["annotations"]["runbook_url"]
        page, _, anchor = url.partition("#")
        assert page.endswith("docs/operations.md"), url
        assert anchor == rule["alert"].lower(), url
        assert anchor in sections, f"docs/operations.md has no section #{anchor}"


def _minutes(duration: str) -> int:
    units = {"s": 1 / 60, "m": 1, "h": 60, "d": 1440}
    return round(sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([smhd])", duration)))


WORDS = {"five": 5, "ten": 10, "fifteen": 15, "twenty-five": 25, "thirty": 30}


def test_alert_texts_name_the_time_the_rule_takes() -> None:
    """An alert with a window and a ``for`` fires after about both: its text says that total, and names no
    duration the rule does not have (a 15m window with ``for: 15m`` is "30 minutes", never "15 minutes" alone)."""
    for rule in rules():
        windows = [_minutes(w) for w in re.findall(r"\[(\w+)\]", rule["expr"])]
        window = max(windows, default=0)
        wait = _minutes(rule.get("for", "0m"))
        allowed = {window, wait, window + wait} - {0}
        text = " ".join(rule["annotations"][key] for key in ("summary", "description"))
        named = {int(n) if n.isdigit() else WORDS[n] for n in re.findall(r"\b(\d+|[a-z-]+)\s+minutes?\b", text) if n.isdigit() or n in WORDS}
        assert named <= allowed, f"{rule['alert']}: names {sorted(named)} minutes; the rule has a {window}m window and for: {wait}m"
        if window and wait:
            assert window + wait in named, f"{rule['alert']}: fires after about {window + wait} minutes ({window}m window + for {wait}m); its text must say so"


PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool (Prometheus's; Debian: package prometheus) is not on PATH")
def test_rules_pass_their_promtool_unit_tests() -> None:
    """deploy/prometheus/lensops-rules.test.yaml: each alert fires when it should, series that start absent included."""
    assert PROMTOOL is not None
    checked = subprocess.run([PROMTOOL, "check", "rules", RULES.name], cwd=RULES.parent, capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run([PROMTOOL, "test", "rules", "lensops-rules.test.yaml"], cwd=RULES.parent, capture_output=True, text=True, timeout=120)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_rule_tests_cover_counters_that_start_absent() -> None:
    """The single-event alerts must fire for a counter first scraped above 0 (refused before the first scrape)."""
    document = yaml.safe_load((RULES.parent / "lensops-rules.test.yaml").read_text())
    absent_first = {
        series["series"].split("{")[0]
        for test in document["tests"]
        for series in test["input_series"]
        if series["values"].startswith("_") and not series["values"].strip("_ ").startswith("0")
    }
    assert {"lensops_reconcile_total", "lensops_runbook_runs_total", "lensops_drift_detected_total", "lensops_rollbacks_total"} <= absent_first
    for rule in rules():
        if rule["alert"] in ("LensopsRevisionInvalid", "LensopsRunbookFailed", "LensopsDriftDetected", "LensopsRollback"):
            assert "process_start_time_seconds" in rule["expr"], rule["alert"]


def test_lensops_down_selects_the_scrape_job_of_the_guide() -> None:
    (down,) = [rule for rule in rules() if rule["alert"] == "LensopsDown"]
    assert 'up{job="lensops"} == 0' in down["expr"]
    assert "job_name: lensops" in OPERATIONS.read_text()


# --- (c) the ECS task -------------------------------------------------------------


def known_variable(name: str) -> bool:
    return name.startswith("AWS_") or (name.startswith("LENSOPS_") and name[len("LENSOPS_") :].lower() in Settings.model_fields)


def test_task_definition_sets_only_known_settings() -> None:
    lensops = container()
    names = [entry["name"] for entry in lensops["environment"]] + [entry["name"] for entry in lensops.get("secrets", [])]
    assert len(names) == len(set(names)), "no variable set twice"
    unknown = [name for name in names if not known_variable(name)]
    assert not unknown, f"not settings of controller/settings.py: {unknown}"
    # Every setting of CONTRACT.md section 4 is spelled out.
    for field in ("repo_url", "branch", "path", "poll_interval", "resync_interval", "state_url", "http_addr", "webhook_secret", "log_format", "concurrency"):
        assert f"LENSOPS_{field.upper()}" in names


def test_task_definition_settings_load() -> None:
    lensops = container()
    environ = {entry["name"]: entry["value"] for entry in lensops["environment"]}
    environ |= {entry["name"]: "from-secrets-manager" for entry in lensops["secrets"]}
    settings = load_settings(environ=environ)
    assert settings.state_url.startswith("sqlite:////var/lib/lensops/")
    assert settings.http_host_port[1] == lensops["portMappings"][0]["containerPort"]
    mounted = {mount["containerPath"] for mount in lensops["mountPoints"]}
    assert "/var/lib/lensops" in mounted, "the SQLite state lives on a volume that outlives the task"


def test_task_definition_secrets_and_health() -> None:
    task = json.loads(TASK_DEFINITION.read_text())
    lensops = container()
    assert "LENSOPS_WEBHOOK_SECRET" not in {entry["name"] for entry in lensops["environment"]}, "a secret is never a plain variable"
    (secret,) = [entry for entry in lensops["secrets"] if entry["name"] == "LENSOPS_WEBHOOK_SECRET"]
    assert secret["valueFrom"].startswith("arn:aws:secretsmanager:")
    assert task["requiresCompatibilities"] == ["FARGATE"] and task["networkMode"] == "awsvpc"
    assert (task["cpu"], task["memory"]) == ("512", "1024")
    assert task["taskRoleArn"].startswith("arn:aws:iam::") and task["executionRoleArn"].startswith("arn:aws:iam::")
    assert lensops["logConfiguration"]["logDriver"] == "awslogs"
    assert "/healthz" in " ".join(lensops["healthCheck"]["command"])
    assert lensops["stopTimeout"] >= daemon.SHUTDOWN_SECONDS + 1, "ECS waits longer than the daemon's own shutdown limit"


def test_ecs_files_are_valid_api_requests() -> None:
    """What ``aws ecs register-task-definition`` / ``create-service --cli-input-json`` accept."""
    ecs = botocore.session.get_session().get_service_model("ecs")
    for operation, path in (("RegisterTaskDefinition", TASK_DEFINITION), ("CreateService", SERVICE)):
        report = ParamValidator().validate(json.loads(path.read_text()), ecs.operation_model(operation).input_shape)
        assert not report.has_errors(), report.generate_report()


def test_service_runs_one_replica_and_never_two_at_once() -> None:
    service = json.loads(SERVICE.read_text())
    assert service["desiredCount"] == 1
    deployment = service["deploymentConfiguration"]
    assert deployment["maximumPercent"] == 100, "a deployment stops the old task before starting the new one (SQLite: one writer)"


# --- (d) the Dockerfile -------------------------------------------------------------


def test_dockerfile_runs_lensops_as_non_root_with_a_health_check() -> None:
    instructions = dockerfile_instructions()
    froms = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert len(froms) >= 2, "multi-stage"
    args = dict(rest.split("=", 1) for keyword, rest in instructions if keyword == "ARG" and "=" in rest)
    assert all(args.get(f.split()[0].strip("${}"), f.split()[0]).startswith("python:3.11-slim") for f in froms)
    stage = final_stage(instructions)
    users = [rest for keyword, rest in stage if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the final stage runs as a non-root user"
    healthchecks = [rest for keyword, rest in stage if keyword == "HEALTHCHECK"]
    assert len(healthchecks) == 1 and "/healthz" in healthchecks[0] and "CMD" in healthchecks[0]
    entrypoint = [rest for keyword, rest in stage if keyword == "ENTRYPOINT"]
    assert entrypoint and json.loads(entrypoint[-1])[0] == "lensops", "exec-form ENTRYPOINT running lensops"
    cmd = [rest for keyword, rest in stage if keyword == "CMD"]
    assert cmd and json.loads(cmd[-1]) == ["run"]
    assert ("EXPOSE", "8080") in stage


def test_dockerfile_pins_its_base_image_and_pulls_no_frontend() -> None:
    """The base image by digest (every build the same bytes); no ``# syntax=`` line, which makes
    BuildKit pull a Dockerfile frontend image from Docker Hub at build time."""
    text = DOCKERFILE.read_text()
    assert not re.search(r"^#\s*syntax\s*=", text, re.M | re.I)
    args = dict(rest.split("=", 1) for keyword, rest in dockerfile_instructions() if keyword == "ARG" and "=" in rest)
    for image in (rest.split()[0] for keyword, rest in dockerfile_instructions() if keyword == "FROM"):
        reference = args.get(image.strip("${}"), image)
        assert re.fullmatch(r"python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}", reference), reference


def test_docker_run_examples_use_an_init_process() -> None:
    """lensops is PID 1 and starts git and ssh: ``--init`` reaps them (ECS: initProcessEnabled)."""
    pages = [DOCKERFILE, ROOT / "README.md", OPERATIONS, ROOT / "deploy" / "ecs" / "README.md"]
    runs = [line for page in pages for line in page.read_text().splitlines() if re.search(r"\bdocker run\b", line)]
    assert runs, "an example of docker run"
    assert all("--init" in line for line in runs), runs
    assert container()["linuxParameters"]["initProcessEnabled"] is True


def test_dockerfile_settings_are_known_and_match_the_task() -> None:
    stage = final_stage(dockerfile_instructions())
    env: dict[str, str] = {}
    for keyword, rest in stage:
        if keyword == "ENV":
            env |= dict(item.split("=", 1) for item in shlex.split(rest))
    lensops_vars = {k: v for k, v in env.items() if k.startswith("LENSOPS_")}
    assert lensops_vars.keys() >= {"LENSOPS_STATE_URL", "LENSOPS_CACHE_DIR", "LENSOPS_HTTP_ADDR"}
    assert all(known_variable(name) for name in lensops_vars)
    task_env = {entry["name"]: entry["value"] for entry in container()["environment"]}
    for name, value in lensops_vars.items():
        assert task_env.get(name, value) == value, f"{name} differs between the Dockerfile and the task definition"


def test_dockerfile_builder_copies_every_package() -> None:
    """A new top-level package in pyproject.toml must be copied into the builder too."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {pattern.rstrip("*") for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = {part.strip("./") for keyword, rest in dockerfile_instructions() if keyword == "COPY" and "--from" not in rest for part in rest.split()[:-1]}
    assert packages <= copied, f"not copied into the builder: {sorted(packages - copied)}"
    assert project["project"]["readme"] in copied
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert not packages & set(ignored) and "README.md" not in ignored


# --- (e) the IAM policy ---------------------------------------------------------------


def test_task_role_policy_is_what_iam_policy_prints(lensops: Any) -> None:
    result = lensops("iam-policy", "--repo", str(ROOT / "desired-state"))
    assert result.code == 0, result.err
    printed = json.loads(result.out)
    stored = json.loads(TASK_POLICY.read_text())
    assert stored == printed, "deploy/iam/task-role-policy.json is stale: regenerate it (deploy/iam/README.md)"
    assert stored["Statement"][0]["Action"], "the policy grants the reconcilers' actions"


@pytest.mark.parametrize("path", [TASK_DEFINITION, SERVICE, TASK_POLICY, DASHBOARD])
def test_json_files_are_formatted(path: Path) -> None:
    """Two-space JSON with a final newline, as ``json.dumps(..., indent=2)`` writes it: diffs stay readable."""
    text = path.read_text()
    assert text == json.dumps(json.loads(text), indent=2) + "\n"
