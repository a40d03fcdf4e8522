"""What the command line prints while work runs in parallel: one whole line per event."""

from __future__ import annotations

import re

import pytest
from lensops_emulator import FaultPlan

from conftest import run_cli

LINE = re.compile(r"^dev: \+ Topic/t\d+ created$")


def test_progress_lines_from_parallel_writes_never_run_together(aws, tree):
    tree.environment("dev")
    tree.write(
        "environments/dev/topics.yaml",
        "---\n".join(f"apiVersion: lensops.io/v1\nkind: Topic\nmetadata: {{name: t{i}}}\nspec: {{}}\n" for i in range(120)),
    )
    applied = run_cli("apply", "--yes", "--repo", str(tree.root), env={"LENSOPS_CONCURRENCY": "16"})
    assert applied.code == 0, applied.err
    progress = [line for line in applied.err.splitlines() if line.startswith("dev: + ") or "created" in line]
    assert len(progress) == 120, applied.err
    assert all(LINE.match(line) for line in progress), [line for line in progress if not LINE.match(line)][:5]


@pytest.mark.parametrize(
    "manifest, service",
    [
        ("apiVersion: lensops.io/v1\nkind: Topic\nmetadata: {name: alerts}\nspec: {}\n", "sns"),  # a query (XML) API
        ("apiVersion: lensops.io/v1\nkind: LogGroup\nmetadata: {name: app}\nspec: {logGroupName: /econlens/app}\n", "logs"),  # JSON
    ],
)
def test_a_proxy_page_in_place_of_aws_answer_reads_as_its_status_and_title(aws, tree, lensops, manifest, service):
    """Something in front of AWS (a proxy, an endpoint) answers 502 with an HTML page: the error
    says so in one line, not with the page's markup."""
    tree.environment("dev")
    tree.write("environments/dev/a.yaml", manifest)
    aws.set_faults(FaultPlan(error_rate=1.0, kinds={"gateway"}, services={service}))
    plan = lensops("plan", "--repo", str(tree.root))
    aws.set_faults(None)
    assert plan.code == 1, plan.out + plan.err
    shown = plan.out + plan.err
    assert "HTTP 502" in shown and "Bad Gateway" in shown, shown
    assert "<" not in shown and "DOCTYPE" not in shown, shown
