"""Tags, as every taggable kind reads and writes them.

Ownership lives in two tags (``lensops:environment``, ``lensops:id``); reads
come in batches from the Resource Groups Tagging API where the service is
indexed there; writes go through the service's own tagging calls, whose only
differences are spellings (``TagApi``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controller.apishape import map_to_tags, tags_to_map
from controller.diff import Change
from controller.kinds import Context


def tag_updates(changes: list[Change]) -> tuple[dict[str, str], list[str]]:
    """Split ``tags.<key>`` changes into tags to set and tag keys to remove."""
    to_set: dict[str, str] = {}
    to_remove: list[str] = []
    for change in changes:
        if change.path == "tags":
            new = change.new or {}
            old = change.old or {}
            to_set.update({k: v for k, v in new.items() if old.get(k) != v})
            to_remove.extend(k for k in old if k not in new)
        elif change.path.startswith("tags."):
            key = change.path[len("tags.") :]
            if change.new is None:
                to_remove.append(key)
            else:
                to_set[key] = change.new
    return to_set, to_remove


def only_tags_changed(changes: list[Change]) -> bool:
    """True when every change is to a tag."""
    return all(c.path == "tags" or c.path.startswith("tags.") for c in changes)


def tags_of(ctx: Context, arns: list[str]) -> dict[str, dict[str, str]]:
    """ARN -> tags of the named resources (at most 100, as the API takes): one ``GetResources`` call.

    Every tag of each resource, lensops's or its own: a resource adopted with tags of its own
    (``Team``) shows them, so its plan has no phantom tag change. Batches run beside each
    other, where a filtered listing pages serially by token. Resources without tags are left
    out, as the API does.
    """
    if not arns:
        return {}
    # One answer: the API takes no page token (nor TagFilters) beside a ResourceARNList.
    page = ctx.client("resourcegroupstaggingapi").get_resources(ResourceARNList=arns)
    return {item["ResourceARN"]: tags_to_map(item.get("Tags")) for item in page.get("ResourceTagMappingList", [])}


@dataclass(frozen=True)
class TagApi:
    """How one service spells its ``TagResource``/``UntagResource`` calls."""

    arn: str = "ResourceArn"
    """The name of the ARN parameter (``ResourceARN`` for CloudWatch and WAFv2)."""
    keys: str = "TagKeys"
    """The name of the tag keys parameter of ``UntagResource`` (``TagKeyList`` for Backup)."""
    tags: str = "Tags"
    """The name of the tags parameter of ``TagResource`` (``tags`` for CloudWatch Logs)."""
    pairs: bool = True
    """Tags as a list of ``{Key, Value}`` (else a map, as Backup takes them)."""

    def write(self, client: Any, arn: str, changes: list[Change]) -> None:
        """Set and remove the tags ``changes`` name on ``arn``: at most one call each."""
        to_set, to_remove = tag_updates(changes)
        if to_set:
            client.tag_resource(**{self.arn: arn, self.tags: map_to_tags(to_set) if self.pairs else to_set})
        if to_remove:
            client.untag_resource(**{self.arn: arn, self.keys: to_remove})


def chunks(items: list[str], size: int) -> list[list[str]]:
    """``items`` in lists of at most ``size``."""
    return [items[i : i + size] for i in range(0, len(items), size)]
