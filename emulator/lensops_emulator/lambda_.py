"""Lambda additions: provisioned concurrency.

Part of the embedded AWS emulator used by tests and ``lensops demo`` (moto in
server mode plus what moto lacks). moto 5.2.5 answers the provisioned
concurrency paths (``/2019-09-30/functions/{name}/provisioned-concurrency``)
with 404. Written from the Lambda API reference:

- ``PutProvisionedConcurrencyConfig`` on a published version or an alias;
  the allocation is READY at once (AWS takes minutes). Refused, as in AWS,
  for $LATEST, for an alias with routing weights, and beyond the function's
  reserved concurrency.
- ``GetProvisionedConcurrencyConfig`` (ProvisionedConcurrencyConfigNotFoundException
  when there is none), ``DeleteProvisionedConcurrencyConfig`` and
  ``ListProvisionedConcurrencyConfigs`` (paged by MaxItems/Marker).

Each configuration is kept on moto's version or alias object, so deleting
the function, version or alias deletes it, and moto's reset wipes it.
"""

from __future__ import annotations

from typing import Any

from moto.awslambda.exceptions import InvalidParameterValueException, LambdaClientError
from moto.awslambda.models import LambdaAlias, LambdaFunction
from moto.awslambda.responses import LambdaResponse
from moto.core.responses import ActionResult, EmptyResult
from moto.core.utils import utcnow

from .dispatch import Addition

DEFAULT_MAX_ITEMS = 50
_CONFIG_ATTRIBUTE = "provisioned_concurrency_config"


class ProvisionedConcurrencyConfigNotFoundException(LambdaClientError):
    code = 404

    def __init__(self) -> None:
        super().__init__(
            "ProvisionedConcurrencyConfigNotFoundException", "No Provisioned Concurrency Config found for this function"
        )


class LambdaAdditions(LambdaResponse):
    """Lambda operations moto lacks; the rest stay moto's."""

    def __init__(self) -> None:
        super().__init__()
        # Parse path, query and body parameters from the API model, as for moto's
        # newer services, instead of moto Lambda's hand-written path parsing.
        self.automated_parameter_parsing = True

    def put_provisioned_concurrency_config(self) -> ActionResult:
        function, target = self._target()
        requested: int = self._get_param("ProvisionedConcurrentExecutions")
        if isinstance(target, LambdaAlias) and (target.routing_config or {}).get("AdditionalVersionWeights"):
            raise InvalidParameterValueException("Alias with weights can not be used with Provisioned Concurrency")
        reserved = function.reserved_concurrency
        if reserved is not None:
            others = sum(
                config["RequestedProvisionedConcurrentExecutions"]
                for holder, config in self._configs(function.function_name)
                if holder is not target
            )
            if others + requested > int(reserved):
                raise InvalidParameterValueException(
                    "Requested Provisioned Concurrency should not be greater than the "
                    "reservedConcurrentExecution for function"
                )
        config = {
            "RequestedProvisionedConcurrentExecutions": requested,
            "AvailableProvisionedConcurrentExecutions": requested,
            "AllocatedProvisionedConcurrentExecutions": requested,
            "Status": "READY",
            "LastModified": utcnow().strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000",
        }
        vars(target)[_CONFIG_ATTRIBUTE] = config
        return ActionResult(config)

    def get_provisioned_concurrency_config(self) -> ActionResult:
        _, target = self._target()
        return ActionResult(_config_of(target))

    def delete_provisioned_concurrency_config(self) -> EmptyResult:
        _, target = self._target()
        _config_of(target)
        del vars(target)[_CONFIG_ATTRIBUTE]
        return EmptyResult()

    def list_provisioned_concurrency_configs(self) -> ActionResult:
        function = self.backend.get_function(self._get_param("FunctionName"))
        items = sorted(
            ({"FunctionArn": _arn(holder), **config} for holder, config in self._configs(function.function_name)),
            key=lambda item: item["FunctionArn"],
        )
        marker = self._get_param("Marker")
        if marker and not marker.isdigit():
            raise InvalidParameterValueException(f"Invalid Marker: {marker}")
        start = int(marker or 0)
        end = start + (self._get_param("MaxItems") or DEFAULT_MAX_ITEMS)
        result: dict[str, Any] = {"ProvisionedConcurrencyConfigs": items[start:end]}
        if end < len(items):
            result["NextMarker"] = str(end)
        return ActionResult(result)

    def _target(self) -> tuple[LambdaFunction, LambdaFunction | LambdaAlias]:
        """The function, and the version or alias that Qualifier names."""
        function = self.backend.get_function(self._get_param("FunctionName"))
        name = function.function_name
        qualifier: str = self._get_param("Qualifier")
        if qualifier.upper() == "$LATEST":
            raise InvalidParameterValueException(
                "Provisioned Concurrency Configs cannot be applied to unpublished function versions."
            )
        if qualifier.isdigit():
            return function, self.backend.get_function(name, qualifier)
        return function, self.backend.get_alias(qualifier, name)

    def _configs(self, name: str) -> list[tuple[LambdaFunction | LambdaAlias, dict[str, Any]]]:
        holders: list[LambdaFunction | LambdaAlias] = [
            *self.backend.list_versions_by_function(name),
            *self.backend.list_aliases(name),
        ]
        return [(holder, vars(holder)[_CONFIG_ATTRIBUTE]) for holder in holders if _CONFIG_ATTRIBUTE in vars(holder)]


ADDITION = Addition(
    service="lambda",
    operations=frozenset(
        {
            "PutProvisionedConcurrencyConfig",
            "GetProvisionedConcurrencyConfig",
            "DeleteProvisionedConcurrencyConfig",
            "ListProvisionedConcurrencyConfigs",
        }
    ),
    handler=LambdaAdditions,
)


def _config_of(holder: LambdaFunction | LambdaAlias) -> dict[str, Any]:
    config: dict[str, Any] | None = vars(holder).get(_CONFIG_ATTRIBUTE)
    if config is None:
        raise ProvisionedConcurrencyConfigNotFoundException()
    return config


def _arn(holder: LambdaFunction | LambdaAlias) -> str:
    return holder.arn if isinstance(holder, LambdaAlias) else holder.function_arn
