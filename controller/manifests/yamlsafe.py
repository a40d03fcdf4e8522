"""Safe YAML: multi-document files parsed with line numbers and hard caps.

A pre-pass over the event stream (iterative, so deep nesting cannot exhaust
the stack) refuses, before anything is built: files over 1 MiB, more than
10,000 documents in a file, nesting deeper than 64 levels, and aliases whose
expansion would exceed 100,000 nodes (the "billion laughs"). Documents are
then built from the node graph into plain dicts and lists, keeping the line
of every mapping key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

try:  # libyaml when present: several times faster on large trees
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

MAX_FILE_BYTES = 1024 * 1024
MAX_DOCUMENTS = 10_000
MAX_DEPTH = 64
MAX_NODES = 100_000

Path = tuple[Any, ...]


class YamlProblem(Exception):
    """A file that cannot be read as manifests; ``line`` is 1-based (0: whole file)."""

    def __init__(self, message: str, line: int = 0):
        self.line = line
        super().__init__(message)


@dataclass
class Document:
    """One YAML document: its data, its first line, and the line of each key path."""

    data: Any
    line: int
    lines: dict[Path, int] = field(default_factory=dict)

    def line_of(self, path: Path) -> int:
        """The line of the deepest known prefix of ``path`` (a field or its parents)."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.line


def load_documents(text: str | bytes) -> list[Document]:
    """Parse every document of one YAML file, or raise ``YamlProblem``."""
    if isinstance(text, bytes):
        if len(text) > MAX_FILE_BYTES:
            raise YamlProblem(f"file is {len(text)} bytes, more than the {MAX_FILE_BYTES} allowed")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise YamlProblem(f"not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    elif len(text.encode("utf-8")) > MAX_FILE_BYTES:
        raise YamlProblem(f"file is more than the {MAX_FILE_BYTES} bytes allowed")
    try:
        _prescan(text)
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        raise YamlProblem(f"YAML syntax error: {exc.problem or exc.context}", line) from exc
    except yaml.YAMLError as exc:
        raise YamlProblem(f"YAML error: {exc}") from exc
    docs = []
    for node in nodes:
        if node is None:
            continue
        builder = _Builder()
        try:
            data = builder.build(node, ())
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            raise YamlProblem(f"YAML error: {exc.problem or exc.context}", mark.line + 1 if mark else 0) from None
        docs.append(Document(data=data, line=node.start_mark.line + 1, lines=builder.lines))
    return docs


def _prescan(text: str) -> None:
    """Walk the event stream once to enforce the caps before any node is built."""
    depth = 0
    documents = 0
    sizes: dict[str, int] = {}
    # one frame per open collection: [anchor, nodes inside it so far]
    frames: list[list[Any]] = []
    total = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.DocumentStartEvent):
            documents += 1
            total = 0
            sizes.clear()
            if documents > MAX_DOCUMENTS:
                raise YamlProblem(f"more than {MAX_DOCUMENTS} documents in one file", event.start_mark.line + 1)
            continue
        if isinstance(event, (yaml.ScalarEvent, yaml.AliasEvent, yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            if isinstance(event, yaml.AliasEvent):
                if event.anchor not in sizes:
                    raise YamlProblem(f"unknown alias *{event.anchor}", event.start_mark.line + 1)
                weight = sizes[event.anchor]
            else:
                weight = 1
            total += weight
            for frame in frames:
                frame[1] += weight
            if total > MAX_NODES:
                raise YamlProblem(
                    f"document expands to more than {MAX_NODES} nodes (YAML aliases?)", event.start_mark.line + 1
                )
            if isinstance(event, yaml.ScalarEvent) and event.anchor:
                sizes[event.anchor] = 1
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    raise YamlProblem(f"nesting deeper than {MAX_DEPTH} levels", event.start_mark.line + 1)
                frames.append([event.anchor, 1])
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
            anchor, size = frames.pop()
            if anchor:
                sizes[anchor] = size


_SCALARS = yaml.constructor.SafeConstructor()
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_BINARY = "tag:yaml.org,2002:binary"


class _Builder:
    """Builds plain data from a node graph, recording the line of every key."""

    def __init__(self) -> None:
        self.lines: dict[Path, int] = {}

    def build(self, node: yaml.Node, path: Path) -> Any:
        if isinstance(node, yaml.MappingNode):
            _SCALARS.flatten_mapping(node)
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self.build(key_node, path)
                if isinstance(key, (dict, list)):
                    raise YamlProblem("a mapping key must be a scalar", key_node.start_mark.line + 1)
                if not isinstance(key, str):
                    key = str(key).lower() if isinstance(key, bool) else str(key)
                if key in out:
                    raise YamlProblem(f"duplicate key {key!r}", key_node.start_mark.line + 1)
                self.lines[path + (key,)] = key_node.start_mark.line + 1
                out[key] = self.build(value_node, path + (key,))
            return out
        if isinstance(node, yaml.SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                self.lines[path + (index,)] = item.start_mark.line + 1
                items.append(self.build(item, path + (index,)))
            return items
        if node.tag in (_TIMESTAMP, _BINARY):
            return str(node.value)
        constructor = _SCALARS.yaml_constructors.get(node.tag)
        if constructor is None:
            raise YamlProblem(f"unsupported YAML tag {node.tag}", node.start_mark.line + 1)
        try:
            return constructor(_SCALARS, node)
        except (ValueError, KeyError, IndexError, TypeError, yaml.YAMLError):
            raise YamlProblem(f"cannot read {node.value!r} as {node.tag.rsplit(':', 1)[-1]}", node.start_mark.line + 1) from None
