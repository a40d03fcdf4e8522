"""Lambda: LambdaAlias (version, routing weights, description, provisioned concurrency).

lensops manages aliases, never functions: the function must exist. An alias
is known as ``FUNCTION:ALIAS`` (its physical name), since two functions may
have aliases of the same name. Call budget per pass: for each function named
by the aliases in scope, one ``ListAliases`` listing and, when the function
has aliases, one ``ListProvisionedConcurrencyConfigs`` listing, shared by all
its aliases (N aliases on F functions: at most 2F reads, plus a page per 50
more provisioned-concurrency configurations of a function). A provisioned-concurrency change is then watched
with ``GetProvisionedConcurrencyConfig`` until AWS has allocated it.
Lambda aliases cannot be tagged: ownership comes from the state store only.

Deployments: ``allAtOnce`` moves all traffic at once; ``canary`` and
``linear`` give ``rollout_steps`` to the engine, which applies them one
interval apart, each gated by the alarms (controller/health.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from controller.diff import Change
from controller.errors import PermanentError
from controller.manifests.types import Duration, Spec, parse_duration
from controller.manifests.graph import is_ref
from controller.kinds import Desired, Draft, Live, Reconciler


class Deployment(Spec):
    """How a new version takes traffic: at once, canary, or linear steps gated by alarms."""

    type: Literal["allAtOnce", "canary", "linear"] = "allAtOnce"
    stepPercent: int | None = Field(default=None, ge=1, le=99)
    interval: Duration | None = None
    alarms: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _steps(self) -> "Deployment":
        if self.type != "allAtOnce" and (self.stepPercent is None or self.interval is None):
            raise ValueError(f"deployment type {self.type} needs stepPercent and interval")
        return self


def _version_text(value: Any) -> Any:
    """Versions are strings in the API; YAML reads ``2`` as a number."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class RoutingConfig(Spec):
    additionalVersionWeights: dict[Annotated[str, BeforeValidator(_version_text)], float] = Field(default_factory=dict)


class LambdaAliasSpec(Spec):
    """A Lambda alias on a function version."""

    functionName: str
    name: str | None = None
    functionVersion: Annotated[str, BeforeValidator(_version_text)]
    description: str | None = None
    routingConfig: RoutingConfig | None = None
    provisionedConcurrency: int | None = Field(default=None, ge=0)
    deployment: Deployment | None = None

    @model_validator(mode="after")
    def _no_provisioned_weights(self) -> "LambdaAliasSpec":
        if self.provisionedConcurrency and self.routingConfig and self.routingConfig.additionalVersionWeights:
            raise ValueError("provisionedConcurrency cannot be set on an alias with routing weights (AWS refuses it)")
        return self

    @field_validator("functionName")
    @classmethod
    def _literal_function(cls, value: str) -> str:
        # The function is part of the alias's identity, which must be known
        # before anything is applied, so it cannot wait for a reference.
        if is_ref(value):
            raise ValueError("functionName must be the function's name or ARN, not a reference")
        return value


@dataclass(frozen=True)
class Routing:
    """Where an alias sends traffic: its main version, and other versions' weights (0 to 1)."""

    function_version: str
    weights: dict[str, float] = field(default_factory=dict)


@dataclass
class _FunctionAliases:
    """One function's aliases (name -> ListAliases item) and provisioned concurrency (alias -> count)."""

    aliases: dict[str, dict[str, Any]]
    provisioned: dict[str, int]


def _state(routing: Routing, description: str | None, provisioned: int | None) -> dict[str, Any]:
    """The comparable form of an alias; no weights and no provisioned concurrency are left empty."""
    return {
        "functionVersion": routing.function_version,
        "description": description or "",
        "routingConfig": {"additionalVersionWeights": dict(routing.weights)} if routing.weights else {},
        "provisionedConcurrency": provisioned or None,
    }


def function_name(value: str) -> str:
    """The bare function name from a name, a function ARN or a partial ARN (``123456789012:function:api``)."""
    parts = value.split(":")
    if "function" in parts[:-1]:
        return parts[parts.index("function") + 1]
    return value


def split_physical(physical: str) -> tuple[str, str]:
    """``FUNCTION:ALIAS`` -> (function, alias); alias names cannot hold a colon."""
    function, _, alias = physical.rpartition(":")
    return function, alias


class LambdaAliasReconciler(Reconciler):
    """A Lambda alias: its version, routing weights, description and provisioned concurrency."""

    kind = "LambdaAlias"
    spec_model = LambdaAliasSpec
    name_field = "name"
    service = "lambda"
    taggable = False
    settle_interval = 15.0
    # DescribeAlarms: the health gate reads deployment.alarms at each rollout step.
    iam_read = ("lambda:ListFunctions", "lambda:ListAliases", "lambda:ListProvisionedConcurrencyConfigs", "lambda:GetProvisionedConcurrencyConfig", "cloudwatch:DescribeAlarms")
    iam_write = (
        "lambda:CreateAlias",
        "lambda:UpdateAlias",
        "lambda:DeleteAlias",
        "lambda:PutProvisionedConcurrencyConfig",
        "lambda:DeleteProvisionedConcurrencyConfig",
    )

    example = """\
apiVersion: lensops.io/v1
kind: LambdaAlias
metadata:
  name: live
spec:
  functionName: econlens-{{ env.name }}-scenario-processor
  functionVersion: "3"
"""
    notes = {
        "functionName": "Function name or ARN; the function and its versions must exist (lensops manages aliases, not functions). Not a `ref:`.",
        "functionVersion": "The published version that takes the traffic; a number is read as text.",
        "provisionedConcurrency": "Not with routing weights (AWS refuses it); allocation is waited for.",
        "deployment": (
            "When `functionVersion` changes on an alias that serves another version (and the manifest sets no "
            "`routingConfig` weights): `canary` sends `stepPercent` % to the new version, then all of it after "
            "`interval`; `linear` adds `stepPercent` % every `interval`. Each step is gated by the alarms; one "
            "going to `ALARM` puts the traffic back on the previous version. Provisioned concurrency is off "
            "during the steps."
        ),
        "deployment.stepPercent": "Required by `canary` and `linear`.",
        "deployment.interval": "Required by `canary` and `linear`.",
        "deployment.alarms": "Added to the Environment's `health.alarms` for the bake after this alias changes.",
    }

    @classmethod
    def gate_alarms(cls, spec: dict[str, Any]) -> list[str]:
        """The deployment's alarms gate a change of the alias, with the environment's."""
        return list((spec.get("deployment") or {}).get("alarms") or [])

    @classmethod
    def physical_name(cls, spec: dict[str, Any], metadata_name: str) -> str:
        """``FUNCTION:ALIAS``: alias names are unique per function only."""
        return f"{function_name(spec['functionName'])}:{spec.get('name') or metadata_name}"

    def arn(self, physical: str) -> str:
        return f"arn:aws:lambda:{self.ctx.region}:{self.ctx.account}:function:{physical}"

    def target_routing(self, spec: dict[str, Any]) -> Routing:
        """The routing the manifest asks for once any rollout is over."""
        weights = (spec.get("routingConfig") or {}).get("additionalVersionWeights") or {}
        return Routing(str(spec["functionVersion"]), {str(v): float(w) for v, w in weights.items()})

    def rollout_steps(self, desired: Desired, state: dict[str, Any], live: Live) -> list[dict[str, Any]]:
        """A new version through ``canary`` (stepPercent, then all) or ``linear`` (+stepPercent each interval).

        Each step keeps the live version as the alias's main version and sends
        the step's share to the new one. Provisioned concurrency cannot sit on
        an alias with weights, so it is off during the steps and back at the end.
        """
        deployment = desired.spec.get("deployment") or {}
        kind = deployment.get("type", "allAtOnce")
        old, new = live.state.get("functionVersion"), state["functionVersion"]
        if kind == "allAtOnce" or not old or old == new or state["routingConfig"]:
            return []
        step = int(deployment["stepPercent"])
        shares = [step] if kind == "canary" else list(range(step, 100, step))
        return [
            {**state, "functionVersion": old, "routingConfig": {"additionalVersionWeights": {new: share / 100}}, "provisionedConcurrency": None}
            for share in shares
        ]

    def rollout_interval(self, desired: Desired) -> float:
        deployment = desired.spec.get("deployment") or {}
        return float(parse_duration(deployment.get("interval") or 0))

    # --- observe -------------------------------------------------------

    def _function(self, function: str) -> _FunctionAliases | None:
        """The function's aliases and their provisioned concurrency, read once a pass; None when it does not exist."""

        def fetch() -> _FunctionAliases | None:
            client = self.ctx.client("lambda")
            aliases: dict[str, dict[str, Any]] = {}
            try:
                for page in client.get_paginator("list_aliases").paginate(FunctionName=function):
                    aliases.update((a["Name"], a) for a in page.get("Aliases", []))
            except client.exceptions.ResourceNotFoundException:
                return None
            provisioned: dict[str, int] = {}
            if aliases:
                paginator = client.get_paginator("list_provisioned_concurrency_configs")
                for page in paginator.paginate(FunctionName=function):
                    for config in page.get("ProvisionedConcurrencyConfigs", []):
                        qualifier = config["FunctionArn"].rsplit(":", 1)[1]
                        provisioned[qualifier] = int(config.get("RequestedProvisionedConcurrentExecutions") or 0)
            return _FunctionAliases(aliases, provisioned)

        return self.ctx.once(f"lambda:aliases:{function}", fetch)

    def observe(self, physicals: list[str]) -> dict[str, Live]:
        found: dict[str, Live] = {}
        functions = sorted({split_physical(p)[0] for p in physicals})
        listings = dict(zip(functions, self.ctx.map(self._function, functions), strict=True))
        for physical in physicals:
            function, alias = split_physical(physical)
            listing = listings[function]
            raw = listing.aliases.get(alias) if listing else None
            if listing is None or raw is None:
                continue
            weights = (raw.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
            state = _state(
                Routing(raw["FunctionVersion"], {str(v): float(w) for v, w in weights.items()}),
                raw.get("Description"),
                listing.provisioned.get(alias),
            )
            arn = raw.get("AliasArn") or self.arn(physical)
            found[physical] = Live(physical, state, arn=arn, attrs={"arn": arn, "functionVersion": raw["FunctionVersion"]})
        return found

    def discover(self, prefix: str) -> list[str]:
        """Every alias of every function whose name starts with ``prefix``: one paginated
        ``ListFunctions``, then each function's aliases as ``observe`` reads them (shared)."""
        functions: list[str] = []
        for page in self.ctx.client("lambda").get_paginator("list_functions").paginate():
            functions.extend(f["FunctionName"] for f in page.get("Functions", []) if f["FunctionName"].startswith(prefix))
        found: list[str] = []
        for function, listing in zip(functions, self.ctx.map(self._function, functions), strict=True):
            found.extend(f"{function}:{alias}" for alias in sorted(listing.aliases if listing else {}))
        return found

    def manifest_spec(self, live: Live) -> Draft:
        """The function and alias from the physical name, the version, weights, description and provisioned concurrency."""
        function, alias = split_physical(live.physical)
        spec: dict[str, Any] = {"functionName": function, "name": alias}
        spec.update({k: v for k, v in live.state.items() if v not in (None, "", {}, [])})
        return Draft(spec)

    def desired_state(self, desired: Desired) -> dict[str, Any]:
        spec = desired.spec
        return _state(self.target_routing(spec), spec.get("description"), spec.get("provisionedConcurrency"))

    # --- apply -----------------------------------------------------------

    def create(self, desired: Desired, state: dict[str, Any]) -> Live:
        function, alias = split_physical(desired.physical)
        client = self.ctx.client("lambda")
        params: dict[str, Any] = {
            "FunctionName": function,
            "Name": alias,
            "FunctionVersion": state["functionVersion"],
            "Description": state["description"],
        }
        if state["routingConfig"]:
            params["RoutingConfig"] = {"AdditionalVersionWeights": state["routingConfig"]["additionalVersionWeights"]}
        try:
            arn = client.create_alias(**params)["AliasArn"]
        except client.exceptions.ResourceNotFoundException as exc:
            raise PermanentError(
                f"function {function} or its version {state['functionVersion']} does not exist "
                f"(lensops manages aliases, not functions): {exc.response['Error'].get('Message', '')}"
            ) from None
        if state["provisionedConcurrency"]:
            self._put_provisioned(function, alias, state["provisionedConcurrency"])
        return self._live(desired.physical, state, arn, provisioning=bool(state["provisionedConcurrency"]))

    def update(self, desired: Desired, state: dict[str, Any], live: Live, changes: list[Change]) -> Live:
        function, alias = split_physical(live.physical)
        client = self.ctx.client("lambda")
        changed = {c.path.split(".", 1)[0] for c in changes}
        provisioned = state["provisionedConcurrency"]
        # AWS refuses provisioned concurrency on an alias with weights: drop it
        # before the alias gains weights, set it after the alias loses them.
        if "provisionedConcurrency" in changed and not provisioned:
            client.delete_provisioned_concurrency_config(FunctionName=function, Qualifier=alias)
        params: dict[str, Any] = {}
        if "functionVersion" in changed:
            params["FunctionVersion"] = state["functionVersion"]
        if "description" in changed:
            params["Description"] = state["description"]
        if "routingConfig" in changed:
            params["RoutingConfig"] = {"AdditionalVersionWeights": state["routingConfig"].get("additionalVersionWeights", {})}
        if params:
            client.update_alias(FunctionName=function, Name=alias, **params)
        if "provisionedConcurrency" in changed and provisioned:
            self._put_provisioned(function, alias, provisioned)
        # A new version behind an alias with provisioned concurrency is allocated anew.
        provisioning = bool(provisioned) and bool(changed & {"provisionedConcurrency", "functionVersion"})
        return self._live(live.physical, state, live.arn, provisioning=provisioning)

    def settle(self, desired: Desired, live: Live) -> Live | None:
        """Wait for provisioned concurrency to be allocated (minutes in AWS); FAILED fails the alias."""
        if not live.extra.get("provisioning"):
            return live
        function, alias = split_physical(live.physical)
        config = self.ctx.client("lambda").get_provisioned_concurrency_config(FunctionName=function, Qualifier=alias)
        status = config.get("Status")
        if status == "FAILED":
            raise PermanentError(f"provisioned concurrency failed: {config.get('StatusReason', 'no reason given')}")
        return live if status == "READY" else None

    def delete(self, live: Live) -> None:
        function, alias = split_physical(live.physical)
        self.ctx.client("lambda").delete_alias(FunctionName=function, Name=alias)

    def _put_provisioned(self, function: str, alias: str, count: int) -> None:
        self.ctx.client("lambda").put_provisioned_concurrency_config(
            FunctionName=function, Qualifier=alias, ProvisionedConcurrentExecutions=count
        )

    def _live(self, physical: str, state: dict[str, Any], arn: str, provisioning: bool) -> Live:
        arn = arn or self.arn(physical)
        return Live(
            physical,
            state,
            arn=arn,
            attrs={"arn": arn, "functionVersion": state["functionVersion"]},
            extra={"provisioning": provisioning},
        )
