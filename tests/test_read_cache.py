"""The daemon's resyncs re-read only what changed: reads kept under the API's change markers.

A WAFv2 LockToken and a Backup plan's VersionId change with every write, and a
backup selection cannot change at all; the listings show them, so a resync of
an unchanged estate needs the listings (and the tags) but no ``GetIPSet``,
``GetWebACL``, ``GetBackupPlan`` or ``GetBackupSelection``. A change made
behind lensops's back moves the marker, is read and is reverted.
"""

from __future__ import annotations

from test_backup import PLAN, ROLE, TABLE, VAULT
from test_wafv2 import IP_SET, WEB_ACL

from mixed_estate import _join

MARKED_READS = (("wafv2", "GetIPSet"), ("wafv2", "GetWebACL"), ("backup", "GetBackupPlan"), ("backup", "GetBackupSelection"))
ADDRESSES = ["198.51.100.7/32", "203.0.113.0/24"]


def _passes(d) -> int:
    return sum(1 for e in d.events() if e.get("event") == "reconcile_finished")


def _ip_set(client) -> dict:
    wafv2 = client("wafv2")
    summary = next(s for s in wafv2.list_ip_sets(Scope="REGIONAL")["IPSets"] if s["Name"] == "blocked")
    return wafv2.get_ip_set(Name="blocked", Scope="REGIONAL", Id=summary["Id"])


def test_resyncs_skip_reads_whose_marker_is_unchanged_and_see_changes(aws, daemon, git_remote, client):
    git_remote.tree.environment("dev")
    git_remote.tree.write(
        "environments/dev/estate.yaml",
        _join([
            VAULT.format(team="platform"),
            PLAN.format(weekly_days=365, role=ROLE, resources=TABLE),
            IP_SET.format(addresses=", ".join(f'"{a}"' for a in ADDRESSES)),
            WEB_ACL.format(default="allow", action="block"),
        ]),
    )
    revision = git_remote.commit("waf and backup")
    d = daemon()
    d.wait_until(lambda: d.applied_revision("dev") == revision, timeout=60)
    # The pass after the apply reads everything once more under the new markers.
    seen = _passes(d)
    d.wait_until(lambda: _passes(d) >= seen + 1, timeout=30)

    aws.clear_requests()
    seen = _passes(d)
    d.wait_until(lambda: _passes(d) >= seen + 2, timeout=30)
    requests = aws.requests()
    assert requests.get(("wafv2", "ListIPSets"), 0) >= 2 and requests.get(("backup", "ListBackupPlans"), 0) >= 2
    assert {op: requests.get(op, 0) for op in MARKED_READS} == {op: 0 for op in MARKED_READS}

    got = _ip_set(client)
    client("wafv2").update_ip_set(
        Name="blocked", Scope="REGIONAL", Id=got["IPSet"]["Id"], Addresses=["192.0.2.1/32"], LockToken=got["LockToken"]
    )
    d.wait_until(lambda: sorted(_ip_set(client)["IPSet"]["Addresses"]) == ADDRESSES, timeout=30)
    assert d.terminate() == 0
