"""The Environment's `account` guard and `assumeRoleArn`."""

from __future__ import annotations

from conftest import alarm


def test_wrong_account_is_refused_and_nothing_touched(aws, client, tree, lensops):
    tree.environment("dev", 'account: "111122223333"')
    tree.write("environments/dev/a.yaml", alarm("api-5xx"))
    result = lensops("apply", "--repo", str(tree.root))
    assert result.code == 1
    assert "account guard" in result.err and "123456789012" in result.err
    assert client("cloudwatch").describe_alarms()["MetricAlarms"] == []


def test_right_account_goes_ahead_and_env_account_interpolates(aws, client, tree, lensops):
    tree.environment("dev", 'account: "123456789012"')
    tree.write("environments/dev/a.yaml", alarm("api-5xx", extra='alarmDescription: "owned by {{ env.account }}"'))
    assert lensops("apply", "--repo", str(tree.root)).code == 0
    live = client("cloudwatch").describe_alarms()["MetricAlarms"][0]
    assert live["AlarmDescription"] == "owned by 123456789012"


def test_assume_role_acts_in_the_role_account(aws, client, tree, lensops):
    tree.environment("dev", 'account: "444455556666"\nassumeRoleArn: arn:aws:iam::444455556666:role/lensops')
    tree.write("environments/dev/a.yaml", alarm("api-5xx"))
    assert lensops("apply", "--repo", str(tree.root)).code == 0, "assumed-role credentials act in the role's account"
    assert client("cloudwatch").describe_alarms()["MetricAlarms"] == []
    assert lensops("plan", "--repo", str(tree.root)).code == 0
