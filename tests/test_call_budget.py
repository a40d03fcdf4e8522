"""A no-op plan makes exactly the AWS calls each reconciler module's docstring budgets, and no write.

The estate holds every kind (tests/mixed_estate.py, built from the kinds' own
test helpers), with more than 100 alarms so that the batching shows: two
``DescribeAlarms`` for the metric alarms, each with one ``GetResources`` for
its alarms' tags. The expected counts are ``mixed_floor``: each term is quoted from a
reconciler module's docstring. A reconciler found reading more than its
docstring says is a finding: its operation goes into ``OVER_BUDGET`` with the
reason, which marks the test xfail(strict=True), so it fails the day the
reconciler is fixed and the entry must go.
"""

from __future__ import annotations

import pytest

from conftest import writes
from mixed_estate import make_functions, mixed_floor, reconciled_kinds, write_mixed

# (service, operation) -> why a no-op plan reads it more often than the docstring says.
# Empty: at the time of writing every reconciler keeps to its budget.
OVER_BUDGET: dict[tuple[str, str], str] = {}


def _mismatch(seen: dict[tuple[str, str], int], expected: dict[tuple[str, str], int]) -> dict[tuple[str, str], tuple[int, int]]:
    """(service, operation) -> (seen, documented) where they differ."""
    return {k: (seen.get(k, 0), expected.get(k, 0)) for k in sorted(set(seen) | set(expected)) if seen.get(k, 0) != expected.get(k, 0)}


@pytest.fixture
def applied(aws, client, tree, lensops):
    """Two copies of every kind (122 alarms), applied once; the emulator's counts cleared."""
    estate = write_mixed(tree, copies=2, alarms_per_copy=60)
    make_functions(client, estate.functions)
    first = lensops("apply", "--repo", str(tree.root))
    assert first.code == 0, first.out[-3000:] + first.err
    aws.clear_requests()
    return estate


@pytest.mark.xfail(bool(OVER_BUDGET), reason="; ".join(f"{k}: {v}" for k, v in OVER_BUDGET.items()), strict=True)
def test_noop_plan_reads_exactly_the_documented_floor(aws, tree, lensops, applied):
    estate = applied
    assert estate.counts["MetricAlarm"] + estate.counts["CompositeAlarm"] > 100

    # The first pass after creation: every stack's drift check is due (never checked).
    plan = lensops("plan", "--repo", str(tree.root))
    assert plan.code == 0, plan.out[-3000:] + plan.err
    seen = aws.requests()
    assert writes(seen) == {}
    assert _mismatch(seen, mixed_floor(estate, drift_due=estate.counts["Stack"])) == {}

    # Steady state: the checks are fresh, so no drift call at all.
    aws.clear_requests()
    again = lensops("plan", "--repo", str(tree.root))
    assert again.code == 0, again.out[-3000:] + again.err
    seen = aws.requests()
    assert writes(seen) == {}
    assert _mismatch(seen, mixed_floor(estate)) == {}


def test_the_mixed_estate_holds_every_registered_kind(tree):
    """A kind added to the registry must be added to the estate (and its floor to ``mixed_floor``)."""
    estate = write_mixed(tree, copies=1, alarms_per_copy=1)
    assert reconciled_kinds(), "no kind with a reconciler is registered"
    missing = sorted(kind for kind in reconciled_kinds() if not estate.counts.get(kind))
    assert not missing, f"tests/mixed_estate.py writes no resource of {missing}"


def test_the_floor_is_what_the_docstrings_say_for_one_kind():
    """The floor's arithmetic on its own: 250 alarms are 3 DescribeAlarms and 3 GetResources by ARN list."""
    from mixed_estate import alarm_floor, tagging_pages

    assert alarm_floor(250) == {("sts", "GetCallerIdentity"): 1, ("cloudwatch", "DescribeAlarms"): 3, ("resourcegroupstaggingapi", "GetResources"): 3}
    assert tagging_pages(250) == 3
    assert tagging_pages(100) == 1 and tagging_pages(101) == 2 and tagging_pages(0) == 1
