"""`lensops status` and `lensops history`: tables for people, JSON for scripts, read from the state store."""

from __future__ import annotations

import json

import pytest

from conftest import alarm
from test_lambda_alias import alias, lambda_  # noqa: F401  (the fixture: functions api and worker)


def test_status_and_history_after_applies(aws, client, tree, lensops):
    tree.environment("dev")
    tree.write("environments/dev/alarms.yaml", alarm("a") + "---\n" + alarm("b"))
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    suspended = alarm("b").replace("  name: b\n", '  name: b\n  annotations: {lensops.io/suspend: "true"}\n')
    tree.write("environments/dev/alarms.yaml", alarm("a") + "---\n" + suspended)
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    client("cloudwatch").put_metric_alarm(
        AlarmName="a", Namespace="AWS/Lambda", MetricName="Errors", Statistic="Sum", Period=60,
        EvaluationPeriods=1, Threshold=50, ComparisonOperator="GreaterThanThreshold",
        Dimensions=[{"Name": "FunctionName", "Value": "scenario-processor"}],
    )
    assert lensops("plan", "--repo", str(tree.root)).code == 2

    doc = json.loads(lensops("status", "--output", "json").out)["environments"]["dev"]
    assert doc["status"] == "synced" and doc["appliedRevision"]
    assert doc["counts"] == {"total": 2, "synced": 2, "drifted": 0, "failed": 0, "suspended": 1, "orphans": 0}

    text = lensops("status").out.splitlines()
    assert text[0].split() == ["ENVIRONMENT", "STATUS", "REVISION", "AGE", "RESOURCES", "SYNCED", "DRIFTED", "FAILED", "SUSPENDED", "ORPHANS"]
    row = text[1].split()
    assert row[0] == "dev" and row[1] == "synced" and row[-6:] == ["2", "2", "0", "0", "1", "0"]

    history = lensops("history")
    lines = history.out.splitlines()
    assert lines[0].startswith("STARTED") and "RESULT" in lines[0]
    assert "dev" in lines[1] and "success" in lines[1] and " cli " in lines[1]
    assert json.loads(lensops("history", "--output", "json").out)["revisions"][-1]["changes"][0]["action"] == "create"


# --- status --check ----------------------------------------------------------------------------

ENV_STATES = {
    # status, failed revision, record data, resource health -> whether `status --check` fails
    "synced": ("synced", "", {}, "healthy", False),
    "out of sync in a deny window": ("out_of_sync", "", {"last_pass": {"executed": False, "result": "success", "drifted": []}}, "healthy", False),
    "baking": ("baking", "", {"bake": {"revision": "r2", "until": 2e9, "alarms": ["api-5xx"]}}, "healthy", False),
    "held by the rollback runbook": ("held", "", {"hold": {"revision": "r1", "after": "r2"}}, "healthy", False),
    "removed": ("removed", "", {}, "healthy", False),
    "drift put back": ("synced", "", {"last_pass": {"executed": True, "result": "success", "drifted": ["MetricAlarm/a"], "reverted": ["MetricAlarm/a"]}}, "healthy", False),
    "failed": ("failed", "", {"last_pass": {"executed": True, "result": "failed", "errors": ["MetricAlarm/a: AccessDenied"]}}, "degraded", True),
    "invalid": ("synced", "", {"invalid": {"revision": "bad0123456789", "problems": ["a.yaml:3: Topic/x: boom"], "at": 1.0}}, "healthy", True),
    "drifted, not put back": ("synced", "", {"last_pass": {"executed": False, "result": "success", "drifted": ["MetricAlarm/a"]}}, "healthy", True),
    "held after a failed bake": ("rolled_back", "r2", {"failed_digest": "d2"}, "healthy", True),
}


def _recorded(status: str, failed: str, data: dict, health: str) -> None:
    from controller.settings import load_settings
    from controller.state import EnvironmentRecord, ResourceRecord, open_store

    store = open_store(load_settings().state_url)
    store.put_environment(EnvironmentRecord("dev", applied_revision="r1", failed_revision=failed, status=status, data=data))
    store.put_resource(ResourceRecord("dev", "MetricAlarm", "a", "a", sync="synced", health=health))
    store.close()


@pytest.mark.parametrize("case", list(ENV_STATES))
def test_status_check_fails_on_failed_invalid_drifted_or_held_environments_only(lensops, case):
    status, failed, data, health, fails = ENV_STATES[case]
    _recorded(status, failed, data, health)
    assert lensops("status").code == 0  # without --check, status reports and exits 0
    checked = lensops("status", "--check")
    assert checked.code == (1 if fails else 0), checked.out + checked.err
    reasons = [line for line in checked.err.splitlines() if line.startswith("lensops: dev: ")]
    assert bool(reasons) == fails, checked.err
    as_json = lensops("status", "--check", "--output", "json")
    assert as_json.code == checked.code and json.loads(as_json.out)["environments"]["dev"]


def test_status_check_names_what_failed(lensops):
    _recorded("rolled_back", "r2abcdef", {"invalid": {"revision": "bad0123456789", "problems": ["a.yaml:3: Topic/x: boom"], "at": 1.0}}, "degraded")
    checked = lensops("status", "--check")
    assert checked.code == 1
    assert "lensops: dev: invalid: revision bad012345678 refused; failed (1 resource); held after a failed bake of r2abcdef" in checked.err


# --- which store, and a missing one -------------------------------------------------------------


def test_status_and_history_name_their_store_and_refuse_one_that_does_not_exist(tmp_path, lensops, monkeypatch):
    missing = tmp_path / "nowhere" / "state.db"
    monkeypatch.setenv("LENSOPS_STATE_URL", f"sqlite:///{missing}")
    for command in ("status", "history"):
        result = lensops(command)
        assert result.code == 1 and result.out == ""
        assert result.err.strip() == (
            f"lensops: state store sqlite:///{missing} does not exist: set LENSOPS_STATE_URL to the store the daemon writes"
        )
    assert not missing.parent.exists()  # nothing made up on the spot

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LENSOPS_STATE_URL", "sqlite://relative.db")  # two slashes: a file in the working folder
    result = lensops("status", "--check")
    assert result.code == 1 and f"sqlite:///{tmp_path}/relative.db does not exist" in result.err
    assert not (tmp_path / "relative.db").exists()


def test_status_and_history_say_which_store_they_read(tree, lensops, aws):
    from controller.settings import load_settings

    tree.environment("dev")
    tree.write("environments/dev/a.yaml", alarm("a"))
    assert lensops("apply", "--repo", str(tree.root), "--yes").code == 0
    path = load_settings().state_url[len("sqlite:///"):]
    for command in ("status", "history"):
        text = lensops(command)
        assert text.code == 0 and text.err.splitlines() == [f"state: sqlite:///{path}"]
        doc = json.loads(lensops(command, "--output", "json").out)
        assert doc["store"] == f"sqlite:///{path}"


def test_a_missing_dynamodb_table_is_an_error_for_status_and_an_empty_store_for_plan(aws, client, tree, lensops, monkeypatch):
    monkeypatch.setenv("LENSOPS_STATE_URL", "dynamodb://lensops-nowhere")
    result = lensops("status")
    assert result.code == 1
    assert result.err.strip() == (
        "lensops: state store dynamodb://lensops-nowhere does not exist (region us-east-1): set LENSOPS_STATE_URL to the store the daemon writes"
    )
    assert lensops("history", "--output", "json").code == 1

    tree.environment("dev")
    tree.write("environments/dev/a.yaml", alarm("a"))
    planned = lensops("plan", "--repo", str(tree.root))
    assert planned.code == 2, planned.err  # one alarm to create, read against an empty store
    assert "lensops-nowhere" not in client("dynamodb").list_tables()["TableNames"]
    assert ("dynamodb", "CreateTable") not in aws.requests()


def test_plan_creates_no_sqlite_store(tmp_path, tree, lensops, aws, monkeypatch):
    store = tmp_path / "plan-only" / "state.db"
    monkeypatch.setenv("LENSOPS_STATE_URL", f"sqlite:///{store}")
    tree.environment("dev")
    tree.write("environments/dev/a.yaml", alarm("a"))
    assert lensops("plan", "--repo", str(tree.root)).code == 2
    assert not store.parent.exists()
    assert lensops("apply", "--repo", str(tree.root), "--yes").code == 0  # apply creates it
    assert store.exists() and lensops("plan", "--repo", str(tree.root)).code == 0


def test_credentials_in_the_state_url_are_never_printed(lensops, monkeypatch):
    for url in ("dynamodb://admin:hunter2@state", "postgres://admin:hunter2@db/state"):
        monkeypatch.setenv("LENSOPS_STATE_URL", url)
        for command in ("status", "history"):
            result = lensops(command)
            assert result.code == 1 and "hunter2" not in result.out + result.err, result.err
            assert result.err.startswith("lensops: LENSOPS_STATE_URL ") and "***@" in result.err


# --- messages ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("lambda_")
def test_a_failed_resource_is_said_once_and_history_cuts_messages_at_a_word(aws, tree, lensops):
    tree.environment("dev")
    tree.write("environments/dev/alias.yaml", alias("live"))
    assert lensops("apply", "--repo", str(tree.root), "--yes").code == 0
    tree.write("environments/dev/alias.yaml", alias("live", version="99"))
    assert lensops("apply", "--repo", str(tree.root), "--yes").code == 1

    text = lensops("status").out
    error = "ResourceNotFoundException: Function not found: arn:aws:lambda:us-east-1:123456789012:function:api:99"
    assert text.count(error) == 1, text
    assert f"  failed: LambdaAlias/live: {error}" in text.splitlines()
    doc = json.loads(lensops("status", "--output", "json").out)["environments"]["dev"]
    assert doc["message"] == f"LambdaAlias/live: {error}"  # the JSON keeps both fields as they were

    row = next(line for line in lensops("history").out.splitlines() if " failed " in line)
    message = row.split(" failed ", 1)[1].split(None, 1)[1]
    assert message == "LambdaAlias/live: ResourceNotFoundException: Function not found…", row
    assert len(message) <= 100


def test_drift_put_back_is_named_in_status_and_logged_with_its_fields_only(aws, client, tree, lensops):
    tree.environment("dev")
    tree.write("environments/dev/alarms.yaml", alarm("a") + "---\n" + alarm("b"))
    assert lensops("apply", "--repo", str(tree.root), "--yes").code == 0
    cloudwatch = client("cloudwatch")
    cloudwatch.put_metric_alarm(
        AlarmName="a", Namespace="AWS/Lambda", MetricName="Errors", Statistic="Sum", Period=60,
        EvaluationPeriods=1, Threshold=4242, ComparisonOperator="GreaterThanThreshold",
        Dimensions=[{"Name": "FunctionName", "Value": "scenario-processor"}],
    )
    healed = lensops("apply", "--repo", str(tree.root), "--yes")
    assert healed.code == 0
    logged = [line for line in healed.err.splitlines() if "drift_detected" in line]
    assert len(logged) == 1 and "4242" not in logged[0], healed.err
    for field in ("environment=dev", "kind=MetricAlarm", "name=a", "fields=['threshold']", "revision=local-", "reverted=True"):
        assert field in logged[0], logged[0]

    status = lensops("status")
    assert status.out.splitlines()[1].split()[-6:] == ["2", "2", "0", "0", "0", "0"]  # nothing drifted now
    assert any(line.startswith("  drift put back at ") and line.endswith(": MetricAlarm/a (threshold)") for line in status.out.splitlines()), status.out
    doc = json.loads(lensops("status", "--output", "json").out)["environments"]["dev"]
    assert doc["lastDrift"]["resources"] == [{"resource": "MetricAlarm/a", "fields": ["threshold"], "reverted": True}]
    assert lensops("status", "--check").code == 0


def test_drift_not_put_back_is_named_and_fails_the_check(aws, client, tree, lensops):
    suspended = alarm("b").replace("  name: b\n", '  name: b\n  annotations: {lensops.io/suspend: "true"}\n')
    tree.environment("dev")
    tree.write("environments/dev/alarms.yaml", alarm("b"))
    assert lensops("apply", "--repo", str(tree.root), "--yes").code == 0
    tree.write("environments/dev/alarms.yaml", suspended)
    client("cloudwatch").put_metric_alarm(
        AlarmName="b", Namespace="AWS/Lambda", MetricName="Errors", Statistic="Sum", Period=60,
        EvaluationPeriods=1, Threshold=77, ComparisonOperator="GreaterThanThreshold",
        Dimensions=[{"Name": "FunctionName", "Value": "scenario-processor"}],
    )
    assert lensops("apply", "--repo", str(tree.root), "--yes").code == 0  # suspended: observed, never changed
    status = lensops("status", "--check")
    assert status.code == 1 and "lensops: dev: drifted: MetricAlarm/b" in status.err
    assert "  drifted: MetricAlarm/b (threshold)" in status.out.splitlines()
