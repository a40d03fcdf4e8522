"""deploy/github-actions/lensops-pr.yaml: validate and plan on pull requests, one plan comment.

The structure is checked from the YAML; the plan step's shell is run with a
stand-in ``lensops`` to show that exit code 2 (changes pending) passes and 1
fails; when Node.js is installed, the comment script is run on a real
``lensops plan --output json`` document with a stand-in GitHub client.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import alarm

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / "deploy" / "github-actions" / "lensops-pr.yaml"


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    return yaml.safe_load(WORKFLOW.read_text())


def _steps(workflow: dict[str, Any], job: str) -> list[dict[str, Any]]:
    return workflow["jobs"][job]["steps"]


def _step(workflow: dict[str, Any], job: str, text: str) -> dict[str, Any]:
    """The one step of ``job`` whose ``run`` or ``uses`` holds ``text``."""
    found = [s for s in _steps(workflow, job) if text in s.get("run", "") or text in s.get("uses", "")]
    assert len(found) == 1, f"job {job}: expected one step with {text!r}, found {len(found)}"
    return found[0]


def test_runs_on_pull_requests_that_touch_the_desired_state(workflow: dict[str, Any]) -> None:
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    paths = on["pull_request"]["paths"]
    assert f"{workflow['env']['DESIRED_STATE']}/**" in paths
    assert list(on) == ["pull_request"]


def test_validates_then_plans_each_environment(workflow: dict[str, Any]) -> None:
    for job in ("validate", "plan"):
        assert _step(workflow, job, "actions/checkout@")
        python = _step(workflow, job, "actions/setup-python@")
        assert python["with"]["python-version"] == "${{ env.PYTHON_VERSION }}"
        assert "pip install" in _step(workflow, job, "pip install")["run"]
    assert workflow["env"]["PYTHON_VERSION"] == "3.11"
    assert "lensops" in workflow["env"]["LENSOPS_PIP_SPEC"]
    validate = [s for s in _steps(workflow, "validate") if s.get("run", "").strip() == 'lensops validate "$DESIRED_STATE"']
    assert len(validate) == 1, "a step that fails the job when the desired state is invalid"
    plan_job = workflow["jobs"]["plan"]
    assert plan_job["needs"] == "validate"
    assert plan_job["strategy"]["matrix"]["environment"] == "${{ fromJSON(needs.validate.outputs.environments) }}"
    assert plan_job["strategy"]["fail-fast"] is False
    plan = _step(workflow, "plan", "lensops plan")
    assert "--output json" in plan["run"] and '--env "$ENVIRONMENT"' in plan["run"]
    assert plan["env"]["ENVIRONMENT"] == "${{ matrix.environment }}"


def test_aws_credentials_come_from_oidc_with_a_role_secret(workflow: dict[str, Any]) -> None:
    plan_job = workflow["jobs"]["plan"]
    assert plan_job["permissions"]["id-token"] == "write"
    creds = _step(workflow, "plan", "aws-actions/configure-aws-credentials@")
    assert "secrets." in creds["with"]["role-to-assume"]
    assert not {"aws-access-key-id", "aws-secret-access-key"} & set(creds["with"])
    names = [s.get("uses", "") + s.get("run", "") for s in _steps(workflow, "plan")]
    assert names.index(creds["uses"]) < next(i for i, n in enumerate(names) if "lensops plan" in n)


def test_least_privilege_tokens(workflow: dict[str, Any]) -> None:
    assert workflow["permissions"] == {"contents": "read"}
    assert workflow["jobs"]["comment"]["permissions"] == {"pull-requests": "write"}
    assert "id-token" not in workflow["jobs"]["comment"]["permissions"]


def test_one_comment_posted_or_updated_with_github_script(workflow: dict[str, Any]) -> None:
    comment = workflow["jobs"]["comment"]
    assert set(comment["needs"]) == {"validate", "plan"}
    assert comment["if"].startswith("always()")
    script = _step(workflow, "comment", "actions/github-script@")["with"]["script"]
    for needed in ("<!-- lensops-plan -->", "updateComment", "createComment", "listComments", "summary", "resources"):
        assert needed in script
    assert "${{" not in script, "no expressions inside the script: pass values through env"


def _run_plan_step(workflow: dict[str, Any], tmp_path: Path, exit_code: int) -> tuple[int, dict[str, str], Path]:
    """Run the plan step's shell as GitHub does, with a ``lensops`` that exits ``exit_code``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "lensops"
    fake.write_text(f'#!/bin/sh\necho \'{{"environments": []}}\'\necho "stderr line" >&2\nexit {exit_code}\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    script = tmp_path / "step.sh"
    script.write_text(_step(workflow, "plan", "lensops plan")["run"])
    output = tmp_path / "github_output"
    output.touch()
    temp = tmp_path / "runner_temp"
    temp.mkdir()
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "RUNNER_TEMP": str(temp),
        "GITHUB_OUTPUT": str(output),
        "DESIRED_STATE": "desired-state",
        "ENVIRONMENT": "dev",
    }
    done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], env=env, capture_output=True, text=True, timeout=30)
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines() if "=" in line)
    return done.returncode, outputs, temp / "plan-dev"


@pytest.mark.parametrize(("exit_code", "step_passes"), [(0, True), (2, True), (1, False)])
def test_exit_code_2_means_changes_pending_not_failure(workflow: dict[str, Any], tmp_path: Path, exit_code: int, step_passes: bool) -> None:
    code, outputs, out = _run_plan_step(workflow, tmp_path, exit_code)
    assert (code == 0) is step_passes
    assert outputs["exit-code"] == str(exit_code)
    assert (out / "exit-code").read_text().strip() == str(exit_code)
    assert json.loads((out / "plan.json").read_text()) == {"environments": []}
    upload = _step(workflow, "plan", "actions/upload-artifact@")
    assert upload["if"].startswith("always()"), "the plan is kept for the comment even when it failed"


_HARNESS = """
const fs = require('fs');
const [scriptPath, existingPath] = process.argv.slice(2);
const script = fs.readFileSync(scriptPath, 'utf8');
const existing = JSON.parse(fs.readFileSync(existingPath, 'utf8'));
const calls = [];
const github = {
  paginate: async (fn, args) => { calls.push(['list', args]); return existing; },
  rest: { issues: {
    listComments: 'listComments',
    updateComment: async (args) => { calls.push(['update', args]); },
    createComment: async (args) => { calls.push(['create', args]); },
  } },
};
const context = {
  payload: { pull_request: { number: 7, head: { sha: '0123456789abcdef0123' } } },
  repo: { owner: 'acme', repo: 'estate' }, serverUrl: 'https://github.com', runId: 42,
};
const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
new AsyncFunction('require', 'github', 'context', 'core', script)(require, github, context, {})
  .then(() => console.log(JSON.stringify(calls)))
  .catch((e) => { console.error(e); process.exit(1); });
"""


def _comment(workflow: dict[str, Any], tmp_path: Path, plans: Path, environments: list[str], existing: list[dict[str, Any]]) -> list[Any]:
    """The comment step's script run by Node.js on the plans in ``plans``: the GitHub calls it made."""
    script = tmp_path / "script.js"
    script.write_text(_step(workflow, "comment", "actions/github-script@")["with"]["script"])
    harness = tmp_path / "harness.js"
    harness.write_text(_HARNESS)
    (tmp_path / "existing.json").write_text(json.dumps(existing))
    env = {**os.environ, "PLAN_DIR": str(plans), "ENVIRONMENTS": json.dumps(environments)}
    done = subprocess.run(["node", str(harness), str(script), str(tmp_path / "existing.json")], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_the_comment_reads_a_real_plan(workflow: dict[str, Any], aws: Any, tree: Any, lensops: Any, tmp_path: Path) -> None:
    tree.environment("dev")
    tree.write("environments/dev/alarms.yaml", alarm("api-5xx") + "---\n" + alarm("api-latency"))
    assert lensops("apply", "--repo", str(tree.root), "--yes").code == 0
    tree.write("environments/dev/alarms.yaml", alarm("api-5xx", threshold=9) + "---\n" + alarm("lambda-errors"))
    plan = lensops("plan", "--repo", str(tree.root), "--env", "dev", "--output", "json")
    assert plan.code == 2, plan.err
    plans = tmp_path / "plans"
    (plans / "plan-dev").mkdir(parents=True)
    (plans / "plan-dev" / "plan.json").write_text(plan.out)
    (plans / "plan-dev" / "exit-code").write_text("2\n")
    (plans / "plan-prod").mkdir()
    (plans / "plan-prod" / "exit-code").write_text("1\n")
    (plans / "plan-prod" / "plan.err").write_text("lensops: environment prod: account guard: credentials act in account 1, the Environment says 2\n")

    def run(existing: list[dict[str, Any]]) -> list[Any]:
        return _comment(workflow, tmp_path, plans, ["dev", "prod", "staging"], existing)

    calls = run([{"id": 5, "user": {"type": "User"}, "body": "looks good"}])
    assert [c[0] for c in calls] == ["list", "create"]
    body = calls[1][1]["body"]
    assert calls[1][1]["issue_number"] == 7
    assert body.startswith("<!-- lensops-plan -->")
    assert "| dev | changes pending | 1 | 1 | 0 | 1 | 0 |" in body
    assert "| + | `MetricAlarm/lambda-errors` | create | ok |" in body
    assert "| - | `MetricAlarm/api-latency` | delete | orphan | not in Git; sync.prune is off |" in body
    assert "| ~ | `MetricAlarm/api-5xx` | update | ok | `threshold` |" in body
    assert "| prod | error (exit 1) |" in body and "account guard" in body
    assert "| staging | did not run |" in body

    calls = run([{"id": 9, "user": {"type": "Bot"}, "body": "<!-- lensops-plan -->\nold"}])
    assert [c[0] for c in calls] == ["list", "update"]
    assert calls[1][1]["comment_id"] == 9


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_the_comment_shows_a_change_whose_ownership_was_not_verified(workflow: dict[str, Any], aws: Any, client: Any, tree: Any, lensops: Any, tmp_path: Path) -> None:
    """As the workflow plans: with an empty state store, a dashboard that differs is an update marked so, exit 2."""
    client("cloudwatch").put_dashboard(DashboardName="ops", DashboardBody=json.dumps({"widgets": []}))
    tree.environment("dev")
    tree.write("environments/dev/dashboard.yaml", "apiVersion: lensops.io/v1\nkind: Dashboard\nmetadata: {name: ops}\nspec:\n  body: {start: -PT6H, widgets: []}\n")
    plan = lensops("plan", "--repo", str(tree.root), "--env", "dev", "--output", "json")
    assert plan.code == 2, plan.out + plan.err
    plans = tmp_path / "plans"
    (plans / "plan-dev").mkdir(parents=True)
    (plans / "plan-dev" / "plan.json").write_text(plan.out)
    (plans / "plan-dev" / "exit-code").write_text("2\n")
    body = _comment(workflow, tmp_path, plans, ["dev"], [])[1][1]["body"]
    assert "| dev | changes pending | 0 | 1 | 0 | 0 | 0 |" in body
    assert "| ~ | `Dashboard/ops` | update | ok | `body.start`: ownership not verified: the state store has no record of environment 'dev'" in body
