"""How AWS calls are counted in ``lensops_aws_api_calls_total``: a read answered "does not exist" is ``ok``.

Observing an estate that is not there yet asks AWS for things that do not
exist: a function's aliases before the function is deployed, a dashboard,
an account's budgets, a stack. Those answers are the API working, and a
dashboard or an alert on ``outcome="error"`` must not light up for a new
environment's first plan. The same "not found" from a write (deleting
what is already gone) is still an error.
"""

from __future__ import annotations

from typing import Any

from conftest import REGION
from controller.aws import ClientFactory
from mixed_estate import write_mixed
from test_faults import api_calls, since


def _outcomes(counted: Any, outcome: str) -> dict[tuple[str, str], int]:
    return {(service, operation): n for (service, operation, seen), n in counted.items() if seen == outcome}


def test_observing_an_estate_that_does_not_exist_yet_counts_no_error(aws: Any, tree: Any, lensops: Any) -> None:
    estate = write_mixed(tree)  # every kind; the aliases' functions are never made
    before = api_calls()
    plan = lensops("plan", "--repo", str(tree.root))
    assert plan.code == 2, plan.out[-3000:] + plan.err
    counted = since(before)
    assert _outcomes(counted, "error") == {}
    assert _outcomes(counted, "throttled") == {}
    ok = _outcomes(counted, "ok")
    assert ok[("lambda", "ListAliases")] == len(set(estate.functions)), "each missing function answered ResourceNotFoundException, counted ok"
    assert ("budgets", "DescribeBudgets") in ok and ("cloudwatch", "GetDashboard") in ok, ok


def test_not_found_is_ok_for_a_read_and_an_error_for_a_write(aws: Any) -> None:
    ssm = ClientFactory(concurrency=2, max_attempts=1).client("ssm", REGION)
    before = api_calls()
    for call in (ssm.get_parameter, ssm.delete_parameter):
        try:
            call(Name="/econlens/dev/db-endpoint")
        except ssm.exceptions.ParameterNotFound:
            pass
    assert since(before) == {("ssm", "GetParameter", "ok"): 1, ("ssm", "DeleteParameter", "error"): 1}
