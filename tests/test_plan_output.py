"""Plan output: the text a reviewer reads for a change of each kind, and the JSON against its schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from controller.diff import Change
from controller.plan import Outline, Plan, ResourcePlan
from controller.render import plan_text

from conftest import alarm

SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "docs" / "plan.schema.json").read_text())


def test_plan_text_for_create_update_delete_and_long_values():
    plan = Plan("dev", "0123456789abcdef")
    plan.resources = [
        ResourcePlan("Topic", "alerts", "alerts", "create", [Change("attributes", None, {"DisplayName": "Alerts"})]),
        ResourcePlan("MetricAlarm", "api-5xx", "econlens-dev-api-5xx", "update", [Change("threshold", 5.0, 7.0), Change("tags.team", None, "platform")]),
        ResourcePlan(
            "Dashboard", "operations", "econlens-dev-operations", "update",
            [Change("body", {"widgets": [{"type": "text", "x": 0, "properties": {"markdown": "EconLens operations, all environments"}}]},
                    {"widgets": [{"type": "text", "x": 6, "properties": {"markdown": "EconLens operations, all environments"}}]})],
        ),
        ResourcePlan("Budget", "monthly", "monthly", "delete"),
        ResourcePlan("Stack", "network", "econlens-dev-network", "noop"),
        ResourcePlan("IPSet", "blocked", "blocked", "update", [Change("addresses", ["192.0.2.0/24"], [])], status="suspended", message="lensops.io/suspend: observed only"),
        ResourcePlan("WebACL", "api", "api", "create", status="conflict", message="api exists in AWS and is not managed by lensops"),
    ]
    assert plan_text(plan) == "\n".join(
        [
            "Environment dev (revision 0123456789ab)",
            "  + Topic/alerts (alerts)",
            '      attributes: {"DisplayName": "Alerts"}',
            "  ~ MetricAlarm/api-5xx (econlens-dev-api-5xx)",
            "      threshold: 5.0 -> 7.0",
            '      tags.team: null -> "platform"',
            "  ~ Dashboard/operations (econlens-dev-operations)",
            "      body:",
            "        @@ -7,3 +7,3 @@",
            '               "type": "text",',
            '        -      "x": 0',
            '        +      "x": 6',
            "             }",
            "  - Budget/monthly (monthly)",
            "  ~ IPSet/blocked (blocked)  [suspended: lensops.io/suspend: observed only]",
            '      addresses: ["192.0.2.0/24"] -> []',
            "  ! WebACL/api (api): conflict: api exists in AWS and is not managed by lensops",
            "Plan: 1 to create, 2 to update, 1 to delete, 1 unchanged, 1 held, 1 failed.",
        ]
    )


def test_json_plan_validates_against_its_schema(aws, tree, lensops):
    tree.environment("dev")
    tree.write("environments/dev/a.yaml", alarm("api-5xx"))
    planned = lensops("plan", "--repo", str(tree.root), "--output", "json")
    assert planned.code == 2
    jsonschema.validate(json.loads(planned.out), SCHEMA)
    applied = lensops("apply", "--repo", str(tree.root), "--output", "json")
    assert applied.code == 0
    doc = json.loads(applied.out)
    jsonschema.validate(doc, SCHEMA)
    assert doc["environments"][0]["applied"] == [{"kind": "MetricAlarm", "name": "api-5xx", "action": "create", "fields": doc["environments"][0]["applied"][0]["fields"]}]


def test_an_outline_prints_one_entry_per_line_in_the_colour_of_its_symbol():
    """A value that outlines what AWS will do (a Stack's change set) reads one entry per line, not as a list."""
    entries = Outline(["+ Add Audit (AWS::SNS::Topic)", "~ Modify Jobs (AWS::SQS::Queue) REPLACEMENT: True", "! Remove Table (AWS::DynamoDB::Table)"])
    plan = Plan("dev", "0123456789abcdef")
    plan.resources = [ResourcePlan("Stack", "app", "dev-app", "update", [Change("changeSet", entries, [])])]
    assert plan_text(plan).splitlines()[1:5] == [
        "  ~ Stack/app (dev-app)",
        "      changeSet:",
        "        + Add Audit (AWS::SNS::Topic)",
        "        ~ Modify Jobs (AWS::SQS::Queue) REPLACEMENT: True",
    ]
    coloured = plan_text(plan, colour=True).splitlines()
    assert coloured[3] == "        \033[32m+ Add Audit (AWS::SNS::Topic)\033[0m"
    assert coloured[4] == "        \033[33m~ Modify Jobs (AWS::SQS::Queue) REPLACEMENT: True\033[0m"
    assert coloured[5] == "        \033[31;1m! Remove Table (AWS::DynamoDB::Table)\033[0m"
    assert json.loads(json.dumps(plan.as_dict()))["resources"][0]["changes"] == [{"path": "changeSet", "old": list(entries), "new": []}]
