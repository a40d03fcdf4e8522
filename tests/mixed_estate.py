"""A mixed estate of eleven kinds (each kind's own test file checks its floor), built from the manifest helpers of the kinds' own tests,
and the no-op-plan call floor each reconciler module's docstring promises for it.

Used by ``tests/test_call_budget.py`` (one copy of the estate, exact counts) and by
``tests/benchmarks/`` (larger copies, figures in a table). Not a test module.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from conftest import alarm
from test_backup import PLAN, ROLE, TABLE, VAULT
from test_budget import FINANCE, OPS, budget
from test_lambda_alias import alias
from test_stack import APP, APP_TEMPLATE, NETWORK, NETWORK_TEMPLATE
from test_wafv2 import IP_SET, WEB_ACL


@dataclass
class Estate:
    """What ``write_mixed`` put in the tree: resources per kind and the shapes the floor depends on."""

    counts: dict[str, int] = field(default_factory=dict)
    functions: list[str] = field(default_factory=list)
    """Lambda functions named by the aliases (made outside lensops by ``make_functions``)."""
    budget_notifications: int = 0
    """Notifications over every budget (K summed over N)."""
    backup_selections: int = 0
    tagged: dict[str, int] = field(default_factory=dict)
    """Tagging API resource type -> owned resources of that type whose tags come from one filtered listing."""
    alarm_names: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _topic(name: str) -> str:
    # The Topic of tests/test_plan_apply.py's estate (written inline there).
    return f"""apiVersion: lensops.io/v1
kind: Topic
metadata:
  name: {name}
spec:
  attributes: {{DisplayName: EconLens {name}}}
  subscriptions:
    - {{protocol: email, endpoint: ops@econlens.example}}
  tags: {{team: platform}}
"""


def _composite(name: str, rule_alarm: str) -> str:
    return f"""apiVersion: lensops.io/v1
kind: CompositeAlarm
metadata:
  name: {name}
spec:
  alarmRule: ALARM("{rule_alarm}")
"""


def _dashboard(name: str) -> str:
    return f"""apiVersion: lensops.io/v1
kind: Dashboard
metadata:
  name: {name}
spec:
  body:
    widgets:
      - {{type: text, x: 0, y: 0, width: 6, height: 3, properties: {{markdown: "EconLens {name}"}}}}
"""


def _join(docs: list[str]) -> str:
    """Documents in one file (the helpers' own leading ``---`` dropped)."""
    return "---\n".join(d.strip("\n").removeprefix("---").strip("\n") + "\n" for d in docs)


def write_mixed(tree: Any, copies: int = 1, alarms_per_copy: int = 2, env_extra: str = "") -> Estate:
    """Write ``copies`` of a small estate of every kind into ``tree`` (environment ``dev``).

    A copy is: 1 Topic, ``alarms_per_copy`` MetricAlarms, 1 CompositeAlarm on the
    copy's first alarm, 1 Dashboard, 1 Stack (``network``, the first copy also
    ``app`` referencing it), 2 LambdaAliases on one function of the copy, 1 Budget
    with two notifications, 1 BackupVault, 1 BackupPlan (one selection) targeting
    it, 1 IPSet and 1 WebACL referencing it.
    """
    tree.environment("dev", env_extra)
    tree.write("templates/network.yaml", NETWORK_TEMPLATE)
    tree.write("templates/app.yaml", APP_TEMPLATE)
    est = Estate(counts=defaultdict(int))
    tagged: dict[str, int] = {"sns:topic": 0, "backup:backup-vault": 0}
    for i in range(copies):
        docs: list[str] = [_topic(f"alerts-{i}")]
        tagged["sns:topic"] += 1
        names = [f"alarm-{i}-{j}" for j in range(alarms_per_copy)]
        docs += [alarm(n, threshold=5 + j) for j, n in enumerate(names)]
        docs.append(_composite(f"health-{i}", names[0]))
        est.alarm_names += names
        docs.append(_dashboard(f"operations-{i}"))
        est.counts["Topic"] += 1
        est.counts["MetricAlarm"] += alarms_per_copy
        est.counts["CompositeAlarm"] += 1
        est.counts["Dashboard"] += 1
        tree.write(f"environments/dev/cloudwatch-{i}.yaml", _join(docs))

        stacks = [
            NETWORK.replace("name: network", f"name: network-{i}")
            .replace("stackName: dev-network", f"stackName: dev-network-{i}")
            .replace("Prefix: dev", f"Prefix: dev{i}")
        ]
        if i == 0:
            stacks.append(APP.replace("ref:Stack/network.", "ref:Stack/network-0."))
        est.counts["Stack"] += len(stacks)
        tree.write(f"environments/dev/stacks-{i}.yaml", _join(stacks))

        function = f"fn-{i}"
        est.functions.append(function)
        aliases = [alias(f"{function}-live", function=function, alias_name="live"), alias(f"{function}-beta", function=function, version="2", alias_name="beta")]
        est.counts["LambdaAlias"] += 2
        tree.write(f"environments/dev/aliases-{i}.yaml", _join(aliases))

        tree.write(
            f"environments/dev/budget-{i}.yaml",
            budget(thresholds=(80, 100), subscribers=(OPS, FINANCE)).replace("name: monthly", f"name: budget-{i}"),
        )
        est.counts["Budget"] += 1
        est.budget_notifications += 2

        vault = VAULT.format(team="platform").replace("name: main", f"name: vault-{i}")
        plan = (
            PLAN.format(weekly_days=365, role=ROLE, resources=TABLE)
            .replace("name: nightly", f"name: nightly-{i}")
            .replace("targetBackupVaultName: main", f"targetBackupVaultName: vault-{i}")
        )
        tree.write(f"environments/dev/backup-{i}.yaml", _join([vault, plan]))
        tagged["backup:backup-vault"] += 1
        est.counts["BackupVault"] += 1
        est.counts["BackupPlan"] += 1
        est.backup_selections += 1

        ip_set = IP_SET.format(addresses='"203.0.113.0/24", "198.51.100.7/32"').replace("name: blocked", f"name: blocked-{i}")
        acl = (
            WEB_ACL.format(default="allow", action="block")
            .replace("name: edge", f"name: edge-{i}")
            .replace("ref:IPSet/blocked", f"ref:IPSet/blocked-{i}")
        )
        tree.write(f"environments/dev/waf-{i}.yaml", _join([ip_set, acl]))
        est.counts["IPSet"] += 1
        est.counts["WebACL"] += 1
    est.tagged = tagged
    return est


def _zipped_handler(version: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", f"def handle(event, context):\n    return {{'version': {version}}}\n")
    return buffer.getvalue()


def make_functions(make_client: Any, names: list[str]) -> None:
    """Lambda functions with published versions 1 and 2 (lensops manages aliases, not functions)."""
    iam = make_client("iam")
    try:
        role = iam.get_role(RoleName="lambda")["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        role = iam.create_role(
            RoleName="lambda",
            AssumeRolePolicyDocument=json.dumps(
                {"Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
            ),
        )["Role"]["Arn"]
    made = make_client("lambda")
    for name in names:
        made.create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler="handler.handle", Code={"ZipFile": _zipped_handler(1)})
        made.publish_version(FunctionName=name)
        made.update_function_code(FunctionName=name, ZipFile=_zipped_handler(2))
        made.publish_version(FunctionName=name)


# --- the floor ---------------------------------------------------------------

TAGGING = "resourcegroupstaggingapi"


def tagging_pages(resources: int) -> int:
    """GetResources pages for one listing of ``resources`` owned resources (``ResourcesPerPage=100``).

    ``ceil(N/100)``, in AWS and in the emulator alike (emulator/lensops_emulator/tagging.py:
    pages count resources, not tags). A listing that finds nothing is still one call.
    """
    return max(1, math.ceil(resources / 100))


def alarm_floor(n: int) -> dict[tuple[str, str], int]:
    """A no-op plan of n MetricAlarms alone: STS, then per hundred alarms one DescribeAlarms and one GetResources."""
    return {
        ("sts", "GetCallerIdentity"): 1,
        ("cloudwatch", "DescribeAlarms"): math.ceil(n / 100),
        (TAGGING, "GetResources"): math.ceil(n / 100),
    }


def mixed_floor(est: Estate, drift_due: int = 0) -> dict[tuple[str, str], int]:
    """The no-op plan's reads per (service, operation), from each reconciler module's docstring budget.

    controller/runner.py: one ``GetCallerIdentity`` for the account guard.
    reconcilers/sns.py: ListTopics + ListSubscriptions listings, GetTopicAttributes per topic, tags from one tagging listing.
    reconcilers/cloudwatch.py: 100 alarm names per DescribeAlarms (metric and composite alarms each), and
      one GetResources by ARN list per such batch, one GetDashboard per dashboard.
    reconcilers/cloudformation.py: one DescribeStacks listing, one GetTemplate per stack, and one
      DetectStackDrift per stack whose check is due (``drift_due``: never checked, or longer ago than
      ``drift_check_interval``); no DescribeStackResourceDrifts while no stack has drifted.
    reconcilers/lambda_alias.py: per function one ListAliases and one ListProvisionedConcurrencyConfigs (2F).
    reconcilers/budgets.py: 1 + 2N + N*K (per budget its notifications and its tags).
    reconcilers/backup.py: vaults 1 listing + tagging; plans 1 + 3N + S.
    reconcilers/wafv2.py: per kind 2 + 2N (a listing per scope; ListTagsForResource is shared by both kinds).
    """
    c = est.counts
    floor: dict[tuple[str, str], int] = {
        ("sts", "GetCallerIdentity"): 1,
        ("sns", "ListTopics"): 1,
        ("sns", "ListSubscriptions"): 1,
        ("sns", "GetTopicAttributes"): c["Topic"],
        ("cloudwatch", "DescribeAlarms"): math.ceil(c["MetricAlarm"] / 100) + math.ceil(c["CompositeAlarm"] / 100),
        ("cloudwatch", "GetDashboard"): c["Dashboard"],
        ("cloudformation", "DescribeStacks"): 1,
        ("cloudformation", "GetTemplate"): c["Stack"],
        ("cloudformation", "DetectStackDrift"): drift_due,
        ("lambda", "ListAliases"): len(est.functions),
        ("lambda", "ListProvisionedConcurrencyConfigs"): len(est.functions),
        ("budgets", "DescribeBudgets"): 1,
        ("budgets", "DescribeNotificationsForBudget"): c["Budget"],
        ("budgets", "ListTagsForResource"): c["Budget"],
        ("budgets", "DescribeSubscribersForNotification"): est.budget_notifications,
        ("backup", "ListBackupVaults"): 1,
        ("backup", "ListBackupPlans"): 1,
        ("backup", "GetBackupPlan"): c["BackupPlan"],
        ("backup", "ListTags"): c["BackupPlan"],
        ("backup", "ListBackupSelections"): c["BackupPlan"],
        ("backup", "GetBackupSelection"): est.backup_selections,
        ("wafv2", "ListIPSets"): 2,
        ("wafv2", "GetIPSet"): c["IPSet"],
        ("wafv2", "ListWebACLs"): 2,
        ("wafv2", "GetWebACL"): c["WebACL"],
        ("wafv2", "ListTagsForResource"): c["IPSet"] + c["WebACL"],
        (TAGGING, "GetResources"): sum(tagging_pages(owned) for owned in est.tagged.values())
        + math.ceil(c["MetricAlarm"] / 100)
        + math.ceil(c["CompositeAlarm"] / 100),
    }
    return {k: v for k, v in floor.items() if v}
