"""``lensops import``: an estate made by hand with boto3 becomes adopting manifests whose plan is
only the ownership tags; filters, ownership, NoEcho parameters, re-runs and --dry-run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from controller.catalog import registry
from lensops_emulator.estate import seed
from conftest import ACCOUNT, REGION, writes
from test_stack import NETWORK_TEMPLATE

FUNCTION = "econlens-dev-scenario-processor"  # made by seed(), with versions 1 and 2

TEMPLATE = NETWORK_TEMPLATE  # Prefix, and Retention with a default

SECRET_TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Parameters:
  DbPassword:
    Type: String
    NoEcho: true
Resources:
  Setting:
    Type: AWS::SSM::Parameter
    Properties:
      Name: /app/password-set
      Type: String
      Value: "yes"
"""


def make_estate(client: Any, aws_url: str) -> None:
    """One or more resources of every kind, made as a person would, referring to each other."""
    seed(aws_url)
    sns = client("sns")
    topic = sns.create_topic(Name="shop-dev-alerts", Tags=[{"Key": "Team", "Value": "payments"}])["TopicArn"]
    sns.set_topic_attributes(TopicArn=topic, AttributeName="DisplayName", AttributeValue="Shop alerts")
    sns.subscribe(TopicArn=topic, Protocol="email", Endpoint="oncall@example.com")
    cw = client("cloudwatch")
    for name, threshold in (("shop-dev-api-5xx", 5.0), ("shop-dev-api-latency", 2.5)):
        cw.put_metric_alarm(
            AlarmName=name, Namespace="AWS/ApiGateway", MetricName="5XXError", Statistic="Sum", Period=60,
            EvaluationPeriods=3, Threshold=threshold, ComparisonOperator="GreaterThanThreshold",
            Dimensions=[{"Name": "ApiName", "Value": "shop"}], AlarmActions=[topic], OKActions=[topic],
            Tags=[{"Key": "Team", "Value": "payments"}],
        )
    cw.put_composite_alarm(
        AlarmName="shop-dev-api-unhealthy", AlarmRule='ALARM("shop-dev-api-5xx") OR ALARM("shop-dev-api-latency")',
        AlarmActions=[topic], AlarmDescription="API is failing or slow",
    )
    cw.put_dashboard(DashboardName="shop-dev-overview", DashboardBody=json.dumps(
        {"widgets": [{"type": "metric", "x": 0, "y": 0, "width": 12, "height": 6,
                      "properties": {"region": REGION, "metrics": [["AWS/Lambda", "Errors"]]}}]}
    ))
    client("budgets").create_budget(
        AccountId=ACCOUNT,
        Budget={"BudgetName": "shop-dev-monthly", "BudgetLimit": {"Amount": "400", "Unit": "USD"}, "TimeUnit": "MONTHLY", "BudgetType": "COST"},
        NotificationsWithSubscribers=[{
            "Notification": {"NotificationType": "FORECASTED", "ComparisonOperator": "GREATER_THAN", "Threshold": 100, "ThresholdType": "PERCENTAGE"},
            "Subscribers": [{"SubscriptionType": "EMAIL", "Address": "finops@example.com"}],
        }],
    )
    backup = client("backup")
    backup.create_backup_vault(BackupVaultName="shop-dev-vault", BackupVaultTags={"Team": "payments"})
    plan_id = backup.create_backup_plan(BackupPlan={"BackupPlanName": "shop-dev-daily", "Rules": [{
        "RuleName": "daily", "TargetBackupVaultName": "shop-dev-vault", "ScheduleExpression": "cron(0 5 * * ? *)",
        "Lifecycle": {"DeleteAfterDays": 35},
    }]})["BackupPlanId"]
    backup.create_backup_selection(BackupPlanId=plan_id, BackupSelection={
        "SelectionName": "database", "IamRoleArn": f"arn:aws:iam::{ACCOUNT}:role/service-role/AWSBackupDefaultServiceRole",
        "Resources": [f"arn:aws:rds:{REGION}:{ACCOUNT}:db:econlens-dev-db"],
    })
    waf = client("wafv2")
    ip_set = waf.create_ip_set(Name="shop-dev-blocked", Scope="REGIONAL", IPAddressVersion="IPV4", Addresses=["192.0.2.0/24"])["Summary"]["ARN"]
    waf.create_web_acl(
        Name="shop-dev-api", Scope="REGIONAL", DefaultAction={"Allow": {}},
        VisibilityConfig={"SampledRequestsEnabled": True, "CloudWatchMetricsEnabled": True, "MetricName": "shop-dev-api"},
        Rules=[{
            "Name": "blocked", "Priority": 0, "Statement": {"IPSetReferenceStatement": {"ARN": ip_set}},
            "Action": {"Block": {}},
            "VisibilityConfig": {"SampledRequestsEnabled": True, "CloudWatchMetricsEnabled": True, "MetricName": "blocked"},
        }],
    )
    client("lambda").create_alias(FunctionName=FUNCTION, Name="live", FunctionVersion="2", Description="what users get")
    client("cloudformation").create_stack(
        StackName="shop-dev-settings", TemplateBody=TEMPLATE, Parameters=[{"ParameterKey": "Prefix", "ParameterValue": "shop"}],
        Tags=[{"Key": "Team", "Value": "payments"}],
    )
    client("logs").create_log_group(logGroupName="/shop/dev/api", tags={"Team": "payments"})
    client("logs").put_retention_policy(logGroupName="/shop/dev/api", retentionInDays=30)


def documents(root: Path, env: str = "dev") -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for path in sorted((root / "environments" / env).glob("*.yaml")):
        found += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return found


def by_kind(root: Path) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for doc in documents(root):
        out.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    return out


def plan(lensops: Any, root: Path) -> tuple[int, dict[str, Any]]:
    result = lensops("plan", "--repo", str(root), "--env", "dev", "--output", "json")
    assert result.code in (0, 2), result.err[-3000:]
    return result.code, json.loads(result.out)


def test_an_estate_of_every_kind_imports_and_plans_only_its_ownership_tags(aws, client, lensops, tmp_path):
    make_estate(client, aws.url)
    out = tmp_path / "imported"
    imported = lensops("import", "--env", "dev", "--region", REGION, "--prefix", "shop-dev-", "--out", str(out))
    assert imported.code == 0, imported.err[-3000:]
    # The alias and the log group do not start with the prefix: a second import adds them.
    again = lensops("import", "--env", "dev", "--region", REGION, "--kind", "LambdaAlias", "--kind", "LogGroup", "--out", str(out))
    assert again.code == 0, again.err
    kinds = by_kind(out)
    assert set(kinds) == {*registry().kinds, "Environment"}, set(registry().kinds) ^ set(kinds)

    # Names a person would choose; adopt annotations; references between imported resources.
    assert set(kinds["MetricAlarm"]) == {"api-5xx", "api-latency"}
    alarm = kinds["MetricAlarm"]["api-5xx"]
    assert alarm["metadata"]["annotations"] == {"lensops.io/adopt": "true"}
    assert alarm["spec"]["alarmActions"] == ["ref:Topic/alerts"]
    assert alarm["spec"]["tags"] == {"Team": "payments"}
    assert "actionsEnabled" not in alarm["spec"] and "treatMissingData" not in alarm["spec"]
    acl = kinds["WebACL"]["api"]["spec"]
    assert acl["rules"][0]["statement"] == {"ipSetReferenceStatement": {"arn": "ref:IPSet/blocked"}}
    assert "scope" not in acl and "visibilityConfig" not in acl
    stack = kinds["Stack"]["settings"]["spec"]
    assert stack["parameters"] == {"Prefix": "shop"}  # Retention is the template's default
    assert (out / "templates" / stack["template"]).read_text() == TEMPLATE
    assert kinds["BackupPlan"]["daily"]["spec"]["rules"][0]["targetBackupVaultName"] == "shop-dev-vault"

    assert lensops("validate", str(out)).code == 0

    code, doc = plan(lensops, out)
    assert code == 2
    changed = [r for env in doc["environments"] for r in env["resources"] if r["action"] != "noop"]
    assert changed, "adoption adds the ownership tags"
    for resource in changed:
        assert resource["action"] == "update", resource
        paths = {c["path"] for c in resource["changes"]}
        assert paths <= {"tags", "tags.lensops:environment", "tags.lensops:id", "changeSet"}, resource["changes"]
    untaggable = {r["kind"] for env in doc["environments"] for r in env["resources"] if r["action"] == "noop"}
    assert {"Dashboard", "LambdaAlias"} <= untaggable

    aws.clear_requests()
    applied = lensops("apply", "--repo", str(out), "--env", "dev", "--yes")
    assert applied.code == 0, applied.err[-3000:] + applied.out[-3000:]
    written = writes(aws.requests())
    tagging = {op for (_, op) in written}
    # Tags only: the services' tag calls, and the stack's tags through its change set.
    assert "TagResource" in tagging and tagging <= {"TagResource", "CreateChangeSet", "ExecuteChangeSet", "DeleteChangeSet"}, written

    code, doc = plan(lensops, out)
    assert code == 0, [r for env in doc["environments"] for r in env["resources"] if r["action"] != "noop"]


def test_an_adopted_topic_and_vault_with_tags_of_their_own_plan_only_the_ownership_tags(aws, client, lensops, tree):
    client("sns").create_topic(Name="alerts", Tags=[{"Key": "Team", "Value": "payments"}])
    client("backup").create_backup_vault(BackupVaultName="vault", BackupVaultTags={"Team": "payments"})
    tree.environment("dev")
    tree.write("environments/dev/a.yaml", """
        apiVersion: lensops.io/v1
        kind: Topic
        metadata: {name: alerts, annotations: {lensops.io/adopt: "true"}}
        spec: {tags: {Team: payments}}
        ---
        apiVersion: lensops.io/v1
        kind: BackupVault
        metadata: {name: vault, annotations: {lensops.io/adopt: "true"}}
        spec: {tags: {Team: payments}}
    """)
    code, doc = plan(lensops, tree.root)
    assert code == 2
    for resource in doc["environments"][0]["resources"]:
        assert {c["path"] for c in resource["changes"]} == {"tags.lensops:environment", "tags.lensops:id"}, resource


def test_prefix_kind_and_tag_filters(aws, client, lensops, tmp_path):
    sns = client("sns")
    sns.create_topic(Name="shop-dev-alerts", Tags=[{"Key": "Team", "Value": "payments"}])
    sns.create_topic(Name="shop-dev-audit", Tags=[{"Key": "Team", "Value": "security"}])
    sns.create_topic(Name="blog-dev-alerts")
    client("logs").create_log_group(logGroupName="shop-dev-logs")

    out = tmp_path / "prefix"
    assert lensops("import", "--env", "dev", "--region", REGION, "--prefix", "shop-dev-", "--out", str(out)).code == 0
    assert {(k, n) for k, names in by_kind(out).items() for n in names} == {
        ("Environment", "dev"), ("Topic", "alerts"), ("Topic", "audit"), ("LogGroup", "logs"),
    }

    out = tmp_path / "kind"
    assert lensops("import", "--env", "dev", "--region", REGION, "--kind", "LogGroup", "--out", str(out)).code == 0
    assert set(by_kind(out)) == {"Environment", "LogGroup"}

    out = tmp_path / "tag"
    result = lensops("import", "--env", "dev", "--region", REGION, "--tag", "Team=payments", "--out", str(out), "--output", "json")
    assert result.code == 0, result.err
    assert set(by_kind(out)["Topic"]) == {"shop-alerts"}
    assert json.loads(result.out)["filteredByTag"] >= 3

    assert lensops("import", "--env", "dev", "--region", REGION, "--kind", "Nope", "--out", str(out)).code == 1


def test_a_resource_owned_by_another_environment_is_skipped(aws, client, lensops, tmp_path):
    sns = client("sns")
    sns.create_topic(Name="prod-alerts", Tags=[{"Key": "lensops:environment", "Value": "prod"}, {"Key": "lensops:id", "Value": "Topic/alerts"}])
    sns.create_topic(Name="dev-alerts")
    out = tmp_path / "out"
    result = lensops("import", "--env", "dev", "--region", REGION, "--kind", "Topic", "--out", str(out))
    assert result.code == 0, result.err
    assert set(by_kind(out)["Topic"]) == {"alerts"}
    assert by_kind(out)["Topic"]["alerts"]["spec"] == {"name": "dev-alerts"}
    assert "prod-alerts: owned by lensops environment prod" in result.out


def test_a_no_echo_parameter_is_written_as_a_variable(aws, client, lensops, tmp_path):
    client("cloudformation").create_stack(
        StackName="app-secrets", TemplateBody=SECRET_TEMPLATE, Parameters=[{"ParameterKey": "DbPassword", "ParameterValue": "hunter2"}]
    )
    out = tmp_path / "out"
    result = lensops("import", "--env", "dev", "--region", REGION, "--kind", "Stack", "--out", str(out))
    assert result.code == 0, result.err
    spec = by_kind(out)["Stack"]["app-secrets"]["spec"]
    assert spec["parameters"] == {"DbPassword": "{{ vars.app_secrets_DbPassword }}"}
    assert "vars.app_secrets_DbPassword" in result.out
    text = "".join(p.read_text() for p in out.rglob("*.y*ml"))
    assert "****" not in text and "hunter2" not in text


def test_re_running_adds_only_what_is_new_and_leaves_other_files_alone(aws, client, lensops, tmp_path):
    sns = client("sns")
    sns.create_topic(Name="alerts")
    out = tmp_path / "out"
    assert lensops("import", "--env", "dev", "--region", REGION, "--kind", "Topic", "--out", str(out)).code == 0
    mine = out / "environments" / "dev" / "topics-by-hand.yaml"
    mine.write_text("apiVersion: lensops.io/v1\nkind: Topic\nmetadata: {name: audit}\nspec: {name: audit}\n")
    before = {p: p.read_text() for p in out.rglob("*.yaml")}
    sns.create_topic(Name="audit")
    sns.create_topic(Name="billing")
    result = lensops("import", "--env", "dev", "--region", REGION, "--kind", "Topic", "--out", str(out))
    assert result.code == 0, result.err
    assert mine.read_text() == before[mine]
    assert (out / "environments/dev/environment.yaml").read_text() == before[out / "environments/dev/environment.yaml"]
    topics = [d["metadata"]["name"] for d in documents(out) if d["kind"] == "Topic"]
    assert sorted(topics) == ["alerts", "audit", "billing"]
    assert (out / "environments/dev/topic.yaml").read_text().startswith(before[out / "environments/dev/topic.yaml"])
    assert lensops("validate", str(out)).code == 0


def test_a_service_the_caller_may_not_read_is_skipped_and_the_rest_imported(aws, client, lensops, tmp_path):
    from lensops_emulator.faults import FaultPlan

    client("sns").create_topic(Name="alerts")
    client("wafv2").create_ip_set(Name="blocked", Scope="REGIONAL", IPAddressVersion="IPV4", Addresses=["192.0.2.0/24"])
    out = tmp_path / "out"
    aws.set_faults(FaultPlan(error_rate=1.0, kinds={"denied"}, services={"wafv2"}))
    try:
        result = lensops("import", "--env", "dev", "--region", REGION, "--out", str(out), "--output", "json")
    finally:
        aws.set_faults(None)
    assert result.code == 0, result.err
    assert set(by_kind(out)) == {"Environment", "Topic"}
    skipped = {s["kind"]: s["why"] for s in json.loads(result.out)["skipped"]}
    assert {"IPSet", "WebACL"} <= set(skipped) and "AccessDenied" in skipped["IPSet"], skipped


def test_import_reads_in_batches(aws, client, lensops, tmp_path):
    cw = client("cloudwatch")
    for n in range(150):
        cw.put_metric_alarm(
            AlarmName=f"app-{n:03d}", Namespace="App", MetricName="Errors", Statistic="Sum", Period=60,
            EvaluationPeriods=1, Threshold=1.0, ComparisonOperator="GreaterThanThreshold",
        )
    aws.clear_requests()
    out = tmp_path / "out"
    assert lensops("import", "--env", "dev", "--region", REGION, "--kind", "MetricAlarm", "--out", str(out)).code == 0
    calls = aws.requests()
    assert len(by_kind(out)["MetricAlarm"]) == 150
    # The listing's pages, then the reads by hundreds with their tags: never a call per alarm.
    assert calls.get(("cloudwatch", "DescribeAlarms"), 0) <= 6, calls
    assert calls.get(("resourcegroupstaggingapi", "GetResources"), 0) <= 2, calls
    assert calls.get(("cloudwatch", "DescribeAlarms"), 0) >= 2 and sum(calls.values()) <= 10, calls


def test_dry_run_writes_nothing(aws, client, lensops, tmp_path):
    client("sns").create_topic(Name="alerts")
    out = tmp_path / "out"
    result = lensops("import", "--env", "dev", "--region", REGION, "--out", str(out), "--dry-run")
    assert result.code == 0, result.err
    assert not out.exists()
    assert "environments/dev/topic.yaml" in result.out and "kind: Topic" in result.out
