"""AWS Backup: BackupVault and BackupPlan (rules and selections).

Call budget per pass, for N declared or recorded resources of a kind:

- BackupVault: one paginated ``ListBackupVaults`` and one Resource Groups
  Tagging ``GetResources`` per hundred vaults (every tag a vault has, lensops's
  or its own).
- BackupPlan: one paginated ``ListBackupPlans`` (name -> id), then per
  existing plan one ``GetBackupPlan``, one ``ListTags`` (the tagging API does
  not list backup plans in moto) and one ``ListBackupSelections``, plus one
  ``GetBackupSelection`` per selection: 1 + 3N + S reads. Within one engine's
  life (the daemon's resyncs), a plan whose listed ``VersionId`` is the one
  it was read under comes from the read cache (``controller.kinds.ReadCache``),
  and so does every selection (a selection cannot change): 1 + 2N.

A vault's only mutable part is its tags: a different ``encryptionKeyArn``
means a new vault, which lensops leaves to a person. A plan's rules are
replaced with one ``UpdateBackupPlan``; selections have no update call, so a
changed selection is deleted and created again.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from pydantic import Field, model_validator

from controller.apishape import from_api, shape, to_api
from controller.diff import Change
from controller.errors import PermanentError
from controller.kinds import Desired, Draft, Live, Reconciler, with_own_tags
from controller.manifests.types import Spec
from reconcilers.tags import TagApi, chunks, tags_of
from reconcilers.listing import Listing

# What AWS fills in for a rule that leaves these out; the same defaults go into
# both the desired and the observed state so that leaving them out is no diff.
RULE_DEFAULTS: dict[str, Any] = {
    "scheduleExpressionTimezone": "Etc/UTC",
    "startWindowMinutes": 480,
    "completionWindowMinutes": 10080,
}

TAGS = TagApi(keys="TagKeyList", pairs=False)
"""How backup spells its tag writes."""

VAULTS = Listing("backup", "list_backup_vaults", "BackupVaultList", "BackupVaultName")

# AWS does not make plan names unique: the first listed is the one managed.
PLANS = Listing("backup", "list_backup_plans", "BackupPlansList", "BackupPlanName", first_wins=True)


def _get_selection(client: Any, plan_id: str, selection_id: str) -> dict[str, Any]:
    """One backup selection of a plan, as GetBackupSelection answers it."""
    return dict(client.get_backup_selection(BackupPlanId=plan_id, SelectionId=selection_id)["BackupSelection"])


class BackupVaultSpec(Spec):
    """A backup vault."""

    backupVaultName: str | None = None
    encryptionKeyArn: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class Lifecycle(Spec):
    moveToColdStorageAfterDays: int | None = Field(default=None, ge=1)
    deleteAfterDays: int | None = Field(default=None, ge=1)
    optInToArchiveForSupportedResources: bool | None = None


class CopyAction(Spec):
    destinationBackupVaultArn: str
    lifecycle: Lifecycle | None = None


class BackupRule(Spec):
    ruleName: str
    targetBackupVaultName: str
    scheduleExpression: str | None = None
    scheduleExpressionTimezone: str | None = None
    startWindowMinutes: int | None = Field(default=None, ge=60)
    completionWindowMinutes: int | None = Field(default=None, ge=60)
    lifecycle: Lifecycle | None = None
    recoveryPointTags: dict[str, str] = Field(default_factory=dict)
    copyActions: list[CopyAction] = Field(default_factory=list)
    enableContinuousBackup: bool | None = None


class BackupSelection(Spec):
    selectionName: str
    iamRoleArn: str
    resources: list[str] = Field(default_factory=list)
    notResources: list[str] = Field(default_factory=list)


class BackupPlanSpec(Spec):
    """A backup plan with its rules and resource selections."""

    backupPlanName: str | None = None
    rules: list[BackupRule] = Field(min_length=1)
    selections: list[BackupSelection] = Field(default_factory=list)
    tags: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _unique_names(self) -> BackupPlanSpec:
        for what, names in (("ruleName", [r.ruleName for r in self.rules]), ("selectionName", [s.selectionName for s in self.selections])):
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise ValueError(f"{what} must be unique in a plan: {', '.join(repeated)}")
        return self


class BackupVaultReconciler(Reconciler):
    """An AWS Backup vault: created with its key, then only its tags change."""

    kind = "BackupVault"
    spec_model = BackupVaultSpec
    name_field = "backupVaultName"
    service = "backup"
    iam_read = ("backup:ListBackupVaults", "tag:GetResources")
    iam_write = (
        "backup:CreateBackupVault",
        "backup:DeleteBackupVault",
        "backup:TagResource",
        "backup:UntagResource",
        # CreateBackupVault's dependent actions (AWS Backup's "Create a backup vault"): the vault's
        # storage, and grants on its encryption key (aws/backup when encryptionKeyArn is unset).
        "backup-storage:MountCapsule",
        "kms:CreateGrant",
        "kms:DescribeKey",
        "kms:RetireGrant",
        "kms:Decrypt",
        "kms:GenerateDataKey",
    )

    example = """\
apiVersion: lensops.io/v1
kind: BackupVault
metadata:
  name: main
spec:
  backupVaultName: econlens-{{ env.name }}
"""
    notes = {
        "encryptionKeyArn": "Set at creation only; afterwards only the tags change.",
    }

    def arn(self, physical: str) -> str:
        return f"arn:aws:backup:{self.ctx.region}:{self.ctx.account}:backup-vault:{physical}"

    def _vaults(self) -> dict[str, dict[str, Any]]:
        return VAULTS.read(self.ctx)

    def observe(self, physicals: list[str]) -> dict[str, Live]:
        if not physicals:
            return {}
        vaults = self._vaults()
        present = [p for p in physicals if p in vaults]
        if not present:
            return {}
        # Every vault's own tags, lensops's or not (an adopted vault has its own): 100 ARNs a call.
        arns = sorted({vaults[name].get("BackupVaultArn") or self.arn(name) for name in present})
        tags: dict[str, dict[str, str]] = {}
        for batch in self.ctx.map(functools.partial(tags_of, self.ctx), chunks(arns, 100)):
            tags.update(batch)
        found: dict[str, Live] = {}
        for name in present:
            raw = vaults[name]
            arn = raw.get("BackupVaultArn") or self.arn(name)
            owned = tags.get(arn) or {}
            found[name] = Live.tagged(
                name,
                {"encryptionKeyArn": raw.get("EncryptionKeyArn"), "tags": owned},
                arn=arn,
                attrs={"arn": arn, "name": name},
                tags=owned,
                extra={"recoveryPoints": int(raw.get("NumberOfRecoveryPoints") or 0)},
            )
        return found

    def discover(self, prefix: str) -> list[str]:
        """Every vault, from the pass's one ``ListBackupVaults`` listing."""
        return sorted(name for name in self._vaults() if name.startswith(prefix))

    def desired_state(self, desired: Desired) -> dict[str, Any]:
        state: dict[str, Any] = {"tags": dict(desired.tags)}
        # Left out, AWS uses its managed key: the live key is then not compared.
        if desired.spec.get("encryptionKeyArn"):
            state["encryptionKeyArn"] = desired.spec["encryptionKeyArn"]
        return state

    def create(self, desired: Desired, state: dict[str, Any]) -> Live:
        params: dict[str, Any] = {"BackupVaultName": desired.physical}
        if state["tags"]:
            params["BackupVaultTags"] = state["tags"]
        if state.get("encryptionKeyArn"):
            params["EncryptionKeyArn"] = state["encryptionKeyArn"]
        arn = self.ctx.client("backup").create_backup_vault(**params).get("BackupVaultArn") or self.arn(desired.physical)
        return Live(desired.physical, state, arn=arn, attrs={"arn": arn, "name": desired.physical})

    def update(self, desired: Desired, state: dict[str, Any], live: Live, changes: list[Change]) -> Live:
        for change in changes:
            if change.path == "encryptionKeyArn":
                raise PermanentError(
                    f"the encryption key of backup vault {live.physical} cannot change "
                    f"({change.old} -> {change.new}): the vault must be replaced by hand"
                )
        client = self.ctx.client("backup")
        TAGS.write(client, live.arn, changes)
        return Live(live.physical, state, arn=live.arn, attrs=live.attrs, extra=live.extra)

    def delete(self, live: Live) -> None:
        points = live.extra.get("recoveryPoints", 0)
        if points:
            raise PermanentError(
                f"backup vault {live.physical} holds {points} recovery points: delete them first, "
                'or keep the vault with lensops.io/prune: "false"'
            )
        self.ctx.client("backup").delete_backup_vault(BackupVaultName=live.physical)


def _lifecycle(value: dict[str, Any] | None) -> dict[str, Any]:
    """A lifecycle without unset fields; opting out of archive is the same as saying nothing."""
    out = {k: v for k, v in (value or {}).items() if v is not None}
    if out.get("optInToArchiveForSupportedResources") is False:
        del out["optInToArchiveForSupportedResources"]
    return out


def _rule(d: dict[str, Any]) -> dict[str, Any]:
    """The canonical form of a rule (its name aside), from a spec or from GetBackupPlan."""
    rule: dict[str, Any] = {
        "targetBackupVaultName": d["targetBackupVaultName"],
        **{key: default if d.get(key) is None else d[key] for key, default in RULE_DEFAULTS.items()},
        "lifecycle": _lifecycle(d.get("lifecycle")),
        "recoveryPointTags": dict(d.get("recoveryPointTags") or {}),
        "copyActions": sorted(
            (
                {"destinationBackupVaultArn": c["destinationBackupVaultArn"], "lifecycle": _lifecycle(c.get("lifecycle"))}
                for c in d.get("copyActions") or []
            ),
            key=lambda c: str(c["destinationBackupVaultArn"]),
        ),
        "enableContinuousBackup": bool(d.get("enableContinuousBackup")),
    }
    # AWS documents no default schedule (moto fills one in): when the manifest
    # leaves it out, the live one is not compared (see compare_view).
    if d.get("scheduleExpression"):
        rule["scheduleExpression"] = d["scheduleExpression"]
    return rule


def _selection(d: dict[str, Any]) -> dict[str, Any]:
    """The canonical form of a selection (its name aside), from a spec or from GetBackupSelection."""
    return {
        "iamRoleArn": d["iamRoleArn"],
        "resources": sorted(set(d.get("resources") or [])),
        "notResources": sorted(set(d.get("notResources") or [])),
    }


def _by_name(items: list[dict[str, Any]], key: str, canonical: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Items keyed by name, so that a diff names the rule or selection that differs.

    AWS may hold two selections of one name (made out of band): the second is
    keyed ``name (2)``, which no manifest has, so it shows up as a change.
    """
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        name, count = item[key], 1
        while name in out:
            count += 1
            name = f"{item[key]} ({count})"
        out[name] = canonical(item)
    return dict(sorted(out.items()))


def _api_rule(name: str, rule: dict[str, Any]) -> dict[str, Any]:
    wanted = {"ruleName": name, **{k: v for k, v in rule.items() if v not in ({}, [])}}
    if "copyActions" in wanted:
        wanted["copyActions"] = [{k: v for k, v in c.items() if v != {}} for c in wanted["copyActions"]]
    return to_api(wanted, shape("backup", "BackupRuleInput"))  # type: ignore[no-any-return]


def _api_selection(name: str, selection: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {"SelectionName": name, "IamRoleArn": selection["iamRoleArn"], "Resources": selection["resources"]}
    if selection["notResources"]:
        params["NotResources"] = selection["notResources"]
    return params


class BackupPlanReconciler(Reconciler):
    """An AWS Backup plan with its rules, resource selections and tags."""

    kind = "BackupPlan"
    spec_model = BackupPlanSpec
    name_field = "backupPlanName"
    service = "backup"
    iam_read = (
        "backup:ListBackupPlans",
        "backup:GetBackupPlan",
        "backup:ListBackupSelections",
        "backup:GetBackupSelection",
        "backup:ListTags",
    )
    iam_write = (
        "backup:CreateBackupPlan",
        "backup:UpdateBackupPlan",
        "backup:DeleteBackupPlan",
        "backup:CreateBackupSelection",
        "backup:DeleteBackupSelection",
        "backup:TagResource",
        "backup:UntagResource",
        "iam:PassRole",
    )

    example = """\
apiVersion: lensops.io/v1
kind: BackupPlan
metadata:
  name: daily
spec:
  backupPlanName: econlens-{{ env.name }}-daily
  rules:
    - ruleName: daily
      targetBackupVaultName: econlens-{{ env.name }}
      scheduleExpression: cron(0 5 * * ? *)
      lifecycle:
        deleteAfterDays: 35
  selections:
    - selectionName: database
      iamRoleArn: arn:aws:iam::123456789012:role/service-role/AWSBackupDefaultServiceRole
      resources: [arn:aws:rds:us-east-1:123456789012:db:econlens-dev-db]
"""
    notes = {
        "selections": "A changed selection is deleted and created again (the API has no update).",
    }

    @classmethod
    def implied_dependencies(cls, spec: dict[str, Any]) -> list[tuple[str, str]]:
        return sorted({("BackupVault", rule["targetBackupVaultName"]) for rule in spec.get("rules", [])})

    def _plans(self) -> dict[str, dict[str, Any]]:
        return PLANS.read(self.ctx)

    def observe(self, physicals: list[str]) -> dict[str, Live]:
        if not physicals:
            return {}
        plans = self._plans()
        present = [name for name in physicals if name in plans]
        return dict(zip(present, self.ctx.map(lambda name: self._read(name, plans[name]["BackupPlanId"], plans[name].get("VersionId")), present), strict=True))

    def _read(self, name: str, plan_id: str, version: str | None) -> Live:
        """One plan, its selections and tags; the plan and selections come from the read cache
        while the listing's VersionId is the same (a selection cannot change: its id is its marker)."""
        client = self.ctx.client("backup")
        base = (self.ctx.account, self.ctx.region, "backup-plan", plan_id)
        got = self.ctx.reads.read(base, version, lambda: client.get_backup_plan(BackupPlanId=plan_id))
        arn = got["BackupPlanArn"]
        rules = from_api(got["BackupPlan"].get("Rules", []), shape("backup", "BackupRules"))
        tags = self._tags(arn)
        # Selections as AWS holds them, with their ids: update and delete need those.
        selections: list[dict[str, Any]] = []
        for page in client.get_paginator("list_backup_selections").paginate(BackupPlanId=plan_id):
            for summary in page.get("BackupSelectionsList", []):
                sid = summary["SelectionId"]
                selection = self.ctx.reads.read(
                    (*base, sid), sid, functools.partial(_get_selection, client, plan_id, sid)
                )
                raw = from_api(selection, shape("backup", "BackupSelection"))
                selections.append({"id": sid, "selectionName": raw["selectionName"], **_selection(raw)})
        state = {
            "rules": _by_name(rules, "ruleName", _rule),
            "selections": _by_name(selections, "selectionName", _selection),
            "tags": tags,
        }
        return Live.tagged(
            name,
            state,
            arn=arn,
            attrs={"arn": arn, "id": plan_id, "versionId": got.get("VersionId", "")},
            tags=tags,
            extra={"selections": selections},
        )

    def _tags(self, arn: str) -> dict[str, str]:
        client = self.ctx.client("backup")
        tags: dict[str, str] = {}
        params: dict[str, Any] = {"ResourceArn": arn}
        while True:
            page = client.list_tags(**params)
            tags.update(page.get("Tags") or {})
            if not page.get("NextToken"):
                return tags
            params["NextToken"] = page["NextToken"]

    def discover(self, prefix: str) -> list[str]:
        """Every plan, from the pass's one ``ListBackupPlans`` listing (the first of a name)."""
        return sorted(name for name in self._plans() if name.startswith(prefix))

    def manifest_spec(self, live: Live) -> Draft:
        """Rules and selections as lists again, each without what AWS fills in by itself."""
        rules = []
        for name, rule in live.state.get("rules", {}).items():
            item: dict[str, Any] = {"ruleName": name}
            for key, value in rule.items():
                if value in ({}, [], False, None) or RULE_DEFAULTS.get(key) == value:
                    continue
                item[key] = value
            rules.append(item)
        selections = []
        for name, selection in live.state.get("selections", {}).items():
            selections.append({"selectionName": name, **{k: v for k, v in selection.items() if v not in ([], None)}})
        spec: dict[str, Any] = {"rules": rules}
        if selections:
            spec["selections"] = selections
        return Draft(with_own_tags(spec, live))

    def desired_state(self, desired: Desired) -> dict[str, Any]:
        spec = desired.spec
        return {
            "rules": _by_name(spec["rules"], "ruleName", _rule),
            "selections": _by_name(spec.get("selections", []), "selectionName", _selection),
            "tags": dict(desired.tags),
        }

    def compare_view(self, live: Live, state: dict[str, Any], applied: dict[str, Any] | None = None) -> dict[str, Any]:
        wanted = state.get("rules", {})
        view = dict(live.state)
        view["rules"] = {
            name: rule if "scheduleExpression" in wanted.get(name, rule) else {k: v for k, v in rule.items() if k != "scheduleExpression"}
            for name, rule in live.state.get("rules", {}).items()
        }
        return view

    def _document(self, physical: str, state: dict[str, Any]) -> dict[str, Any]:
        return {"BackupPlanName": physical, "Rules": [_api_rule(name, rule) for name, rule in state["rules"].items()]}

    def create(self, desired: Desired, state: dict[str, Any]) -> Live:
        params: dict[str, Any] = {"BackupPlan": self._document(desired.physical, state)}
        if state["tags"]:
            params["BackupPlanTags"] = state["tags"]
        made = self.ctx.client("backup").create_backup_plan(**params)
        plan_id, arn = made["BackupPlanId"], made["BackupPlanArn"]
        selections = self._select(plan_id, state["selections"], [])
        attrs = {"arn": arn, "id": plan_id, "versionId": made.get("VersionId", "")}
        return Live(desired.physical, state, arn=arn, attrs=attrs, extra={"selections": selections})

    def update(self, desired: Desired, state: dict[str, Any], live: Live, changes: list[Change]) -> Live:
        client = self.ctx.client("backup")
        plan_id = live.attrs["id"]
        attrs = dict(live.attrs)
        fields = {c.path.split(".", 1)[0] for c in changes}
        if "rules" in fields:
            updated = client.update_backup_plan(BackupPlanId=plan_id, BackupPlan=self._document(live.physical, state))
            attrs["versionId"] = updated.get("VersionId", attrs.get("versionId", ""))
        selections = live.extra.get("selections", [])
        if "selections" in fields:
            selections = self._select(plan_id, state["selections"], selections)
        TAGS.write(client, live.arn, changes)
        return Live(live.physical, state, arn=live.arn, attrs=attrs, extra={"selections": selections})

    def _select(self, plan_id: str, wanted: dict[str, dict[str, Any]], current: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Make the plan's selections ``wanted``: the API has no update, so a changed one is deleted and made again."""
        client = self.ctx.client("backup")
        kept: dict[str, dict[str, Any]] = {}
        for selection in current:
            name = selection["selectionName"]
            if name not in kept and wanted.get(name) == _selection(selection):
                kept[name] = selection
            else:
                client.delete_backup_selection(BackupPlanId=plan_id, SelectionId=selection["id"])
        for name, selection in wanted.items():
            if name not in kept:
                made = client.create_backup_selection(BackupPlanId=plan_id, BackupSelection=_api_selection(name, selection))
                kept[name] = {"id": made["SelectionId"], "selectionName": name, **selection}
        return list(kept.values())

    def delete(self, live: Live) -> None:
        client = self.ctx.client("backup")
        plan_id = live.attrs["id"]
        for selection in live.extra.get("selections", []):
            client.delete_backup_selection(BackupPlanId=plan_id, SelectionId=selection["id"])
        client.delete_backup_plan(BackupPlanId=plan_id)
