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

Filtering, ordering, tokens and the answer's shape stay moto's.
"""

from __future__ import annotations

import sys

from moto.core.responses import ActionResult
from moto.resourcegroupstaggingapi.exceptions import ResourceGroupsTaggingAPIError
from moto.resourcegroupstaggingapi.responses import ResourceGroupsTaggingAPIResponse

from .dispatch import Addition

DEFAULT_RESOURCES_PER_PAGE = 50  # moto's
MAX_RESOURCES_PER_PAGE = 100


class TaggingAdditions(ResourceGroupsTaggingAPIResponse):
    """GetResources paged by resources unless TagsPerPage is given; the rest stays moto's."""

    def get_resources(self) -> ActionResult:
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
            resource_arn_list=self._get_param("ResourceARNList", []),
        )
        return ActionResult(
            {
                "ResourceTagMappingList": [
                    {"ResourceARN": r.arn, "Tags": [{"Key": k, "Value": v} for k, v in r.tags.items()]} for r in resources
                ],
                "PaginationToken": token,
            }
        )


ADDITION = Addition(
    service="resourcegroupstaggingapi",
    operations=frozenset({"GetResources"}),
    handler=TaggingAdditions,
)
