"""Resource Groups Tagging API addition: GetResources pages count resources, as AWS's do.

Part of the embedded AWS emulator used by tests and ``lensops demo`` (moto in
server mode plus what moto lacks). moto 5.2.5 also ends a GetResources page
before its tags reach ``TagsPerPage``, and defaults that to 100 when the
request does not give it: with two tags a resource, a page holds 49 or 50
resources whatever ``ResourcesPerPage`` says. AWS limits a page by tags only
when asked (the API reference: TagsPerPage "restricts the number of tags ...
returned by GetResources in paginated output"; AWS recommends
ResourcesPerPage instead). So:

- without ``TagsPerPage``, a page holds ``ResourcesPerPage`` resources
  (moto's default, 50, when absent; 1..100, else InvalidParameterException);
- with ``TagsPerPage``, moto pages as it does.

``ResourceARNList`` (at most 100 ARNs, never with ``TagFilters``, one answer
without pages, as in AWS): CloudWatch alarm ARNs are looked up in the alarms
and their tagger directly, any other ARN through moto's scan. moto scans every
tagged resource of the account for each call, building each one's tags.

Filtering, ordering, tokens and the answer's shape stay moto's.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from moto.cloudwatch.models import cloudwatch_backends
from moto.core.responses import ActionResult
from moto.resourcegroupstaggingapi.exceptions import ResourceGroupsTaggingAPIError
from moto.resourcegroupstaggingapi.responses import ResourceGroupsTaggingAPIResponse

from .dispatch import Addition

DEFAULT_RESOURCES_PER_PAGE = 50  # moto's
MAX_RESOURCES_PER_PAGE = 100
MAX_ARNS = 100
_ALARM_ARN = re.compile(r"^arn:[^:]+:cloudwatch:(?P<region>[^:]+):(?P<account>\d{12}):alarm:(?P<name>.+)$")


class TaggingAdditions(ResourceGroupsTaggingAPIResponse):
    """GetResources paged by resources unless TagsPerPage is given; the rest stays moto's."""

    def get_resources(self) -> ActionResult:
        arns = self._get_param("ResourceARNList", [])
        if arns:
            return self._by_arns(arns)
        if self._get_param("TagsPerPage") is not None:
            return super().get_resources()
        resources_per_page = self._get_int_param("ResourcesPerPage", DEFAULT_RESOURCES_PER_PAGE)
        if resources_per_page not in range(1, MAX_RESOURCES_PER_PAGE + 1):
            raise ResourceGroupsTaggingAPIError(
                "InvalidParameterException", f"ResourcesPerPage must be between 1 and {MAX_RESOURCES_PER_PAGE}"
            )
        token, resources = self.backend.get_resources(
            pagination_token=self._get_param("PaginationToken"),
            tag_filters=self._get_param("TagFilters", []),
            resources_per_page=resources_per_page,
            tags_per_page=sys.maxsize,  # no limit by tags
            resource_type_filters=self._get_param("ResourceTypeFilters", []),
        )
        return _answer({r.arn: r.tags for r in resources}, PaginationToken=token)

    def _by_arns(self, arns: list[str]) -> ActionResult:
        """The tags of the resources named (those that carry tags), in one answer."""
        if self._get_param("TagFilters"):
            raise ResourceGroupsTaggingAPIError("InvalidParameterException", "ResourceARNList cannot be given with TagFilters")
        if len(arns) > MAX_ARNS:
            raise ResourceGroupsTaggingAPIError("InvalidParameterException", f"ResourceARNList holds at most {MAX_ARNS} ARNs")
        found: dict[str, dict[str, str]] = {}
        others: list[str] = []
        for arn in dict.fromkeys(arns):
            match = _ALARM_ARN.match(arn)
            if match is None:
                others.append(arn)
                continue
            backend: Any = cloudwatch_backends[match["account"]][match["region"]]
            tags = backend.tagger.get_tag_dict_for_resource(arn) if match["name"] in backend.alarms else {}
            if tags:
                found[arn] = tags
        if others:
            _, resources = self.backend.get_resources(resources_per_page=sys.maxsize, tags_per_page=sys.maxsize, resource_arn_list=others)
            found.update({r.arn: r.tags for r in resources})
        return _answer(found)


def _answer(found: dict[str, dict[str, str]], **extra: Any) -> ActionResult:
    """A GetResources answer: ARN -> tags, in order, and ``extra`` fields (the page token)."""
    mappings = [{"ResourceARN": arn, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]} for arn, tags in found.items()]
    return ActionResult({"ResourceTagMappingList": mappings, **extra})


ADDITION = Addition(
    service="resourcegroupstaggingapi",
    operations=frozenset({"GetResources"}),
    handler=TaggingAdditions,
)
