"""`lensops apply` beside a running daemon on the same state store is refused, naming the daemon that
holds the environment's lease; `plan` still answers. With SQLite the daemon's leases are in memory
no more: they are recorded in the store's file, where the CLI reads them."""

from __future__ import annotations

import json

from conftest import alarm, writes


def _threshold(client) -> float:
    return client("cloudwatch").describe_alarms(AlarmNames=["api-5xx"])["MetricAlarms"][0]["Threshold"]


def test_apply_is_refused_while_a_daemon_on_the_sqlite_store_holds_the_environment(aws, daemon, git_remote, client, lensops):
    git_remote.tree.environment("dev")
    git_remote.tree.write("environments/dev/alarms.yaml", alarm("api-5xx", 5))
    first = git_remote.commit("threshold 5")
    d = daemon()
    d.wait_until(lambda: d.applied_revision("dev") == first)

    # An edit not pushed: what an operator would apply by hand from a working copy.
    git_remote.tree.write("environments/dev/alarms.yaml", alarm("api-5xx", 9))
    work = str(git_remote.work)
    aws.clear_requests()
    refused = lensops("apply", "--repo", work, "--yes")
    assert refused.code == 1, refused.out + refused.err
    line = next(x for x in refused.err.splitlines() if "is held by" in x)
    assert line.startswith("lensops: dev is held by replica ") and line.endswith("): apply through Git, or stop that daemon"), line
    owner = line.split("replica ", 1)[1].split(" (lease until ", 1)[0]
    assert owner.split(":")[1] == str(d.proc.pid)  # host:pid:random, the daemon's replica id
    assert writes(aws.requests()) == {} and _threshold(client) == 5
    assert d.applied_revision("dev") == first

    planned = lensops("plan", "--repo", work, "--output", "json")
    assert planned.code == 2, planned.err  # a plan beside the daemon is allowed: changes pending
    assert json.loads(planned.out)["environments"][0]["resources"][0]["changes"][0]["path"] == "threshold"

    d.stop()  # the daemon gives its leases up as it stops
    applied = lensops("apply", "--repo", work, "--yes")
    assert applied.code == 0, applied.out + applied.err
    assert _threshold(client) == 9
