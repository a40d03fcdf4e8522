"""Safe YAML: multi-document files parsed with line numbers and hard caps.

One pass over libyaml's event stream builds plain dicts and lists, keeping
the line of every mapping key and sequence item. The walk is iterative, so
deep nesting cannot exhaust the stack, and the caps are enforced as the
events arrive, before anything they would let through is built: files over
1 MiB, more than 10,000 documents in a file, nesting deeper than 64 levels,
and documents whose aliases would expand to more than 100,000 nodes (the
"billion laughs"). Scalars are typed as PyYAML's safe loader types them;
merge keys (``<<``) merge, and a key given twice is a problem.

Manifests know no local tags (``!Name``): one on a scalar is a problem.
A reader that has its own (CloudFormation's ``!Ref``, ``!GetAtt``...) passes
``local_tags``, a function that makes the tagged node's data from the tag's
name and the node (a scalar's text as written, or the list or mapping); the
caps hold for its documents just the same.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import yaml

try:  # libyaml when present: several times faster on large trees
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]  # the pure-Python class of the same interface

MAX_FILE_BYTES = 1024 * 1024
MAX_DOCUMENTS = 10_000
MAX_DEPTH = 64
MAX_NODES = 100_000

Path = tuple[Any, ...]
LocalTags = Callable[[str, Any], Any]
"""``(name, value) -> data`` for a node tagged ``!name``: ``value`` is a scalar's text, or a list or dict."""


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


def load_documents(text: str | bytes, local_tags: LocalTags | None = None) -> list[Document]:
    """Parse every document of one YAML file, or raise ``YamlProblem``.

    ``local_tags`` makes the data of nodes tagged ``!name`` (counted as the
    mapping they become); without it such a scalar is a problem, and such a
    mapping or list is read as if untagged. Lines inside a tagged mapping or
    list are recorded at the paths it would have untagged.
    """
    if isinstance(text, bytes):
        if len(text) > MAX_FILE_BYTES:
            raise YamlProblem(f"file is {len(text)} bytes, more than the {MAX_FILE_BYTES} allowed")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise YamlProblem(f"not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    elif len(text.encode("utf-8")) > MAX_FILE_BYTES:
        raise YamlProblem(f"file is more than the {MAX_FILE_BYTES} bytes allowed")
    parser = _Loader(text)
    try:
        with paused_gc():
            return _Builder(parser.get_event, local_tags).documents()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        if exc.problem == "exceeded maximum nesting depth":  # libyaml's own cap, met while it looks ahead in [[[[...
            raise YamlProblem(f"nesting deeper than {MAX_DEPTH} levels", line) from None
        raise YamlProblem(f"YAML syntax error: {exc.problem or exc.context}", line) from None
    except yaml.reader.ReaderError as exc:  # its text ends in a second line, "in <unicode string>, position N"
        character = exc.character if isinstance(exc.character, int) else ord(exc.character[:1] or "\0")
        raise YamlProblem(f"unacceptable character #x{character:04x}: {exc.reason}", text.count("\n", 0, exc.position) + 1) from None
    except yaml.YAMLError as exc:
        raise YamlProblem(f"YAML error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    finally:
        parser.dispose()


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection inside: for work that makes many containers and no cycle.

    Plain data from YAML has no cycle to find, yet each collection would walk
    everything built so far, again and again (up to 10x the time on a big
    tree or an alias-heavy document). Reference counting still frees all.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


_SCALARS = yaml.constructor.SafeConstructor()
_RESOLVER = yaml.resolver.Resolver()
_STR = "tag:yaml.org,2002:str"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_BINARY = "tag:yaml.org,2002:binary"
_MERGE = "tag:yaml.org,2002:merge"
_VALUE = "tag:yaml.org,2002:value"
_PLAIN = (True, False)


class _KeyTag:
    """A scalar tagged merge (``<<``) or value (``=``): only meaningful as a mapping key."""

    __slots__ = ("tag", "text")

    def __init__(self, tag: str, text: str):
        self.tag = tag
        self.text = text


class _Late(YamlProblem):
    """A problem found while building: a syntax error or a cap later in the file still wins."""


_NO_KEY: Any = object()
"""An open mapping's ``key`` while its next key is awaited."""
_MERGING: Any = object()
"""An open mapping's ``key`` while the value of a ``<<`` key is built."""


class _Open:
    """A mapping or sequence whose events are still arriving."""

    __slots__ = ("value", "path", "line", "start", "anchor", "counted", "key", "key_lines", "merges", "merge_items", "tag")

    def __init__(self, value: dict[Any, Any] | list[Any], path: Path, line: int, start: int, anchor: str | None, counted: int, tag: str | None):
        self.value = value
        self.path = path
        self.line = line
        self.start = start
        """Where the lines of its content begin in the document's ``entries``."""
        self.anchor = anchor
        self.counted = counted
        """The document's node count once it opened (for the size of an anchored collection)."""
        self.key: Any = _NO_KEY
        self.key_lines: dict[str, int] = {}
        self.merges: list[tuple[dict[str, Any], int, int]] | None = None
        """Mappings merged into this one by ``<<`` keys, in order, with their range of ``entries``."""
        self.merge_items = False
        """A sequence that is the value of a ``<<`` key: its items merge into the mapping above."""
        self.tag = tag
        """The name of its local tag (``!name``) when the reader has ``local_tags``."""


@dataclass
class _Anchor:
    value: Any
    line: int
    path: Path
    start: int
    end: int
    """``entries[start:end]``: the lines inside the anchored node."""
    size: int
    """Nodes it expands to, itself included."""


class _Builder:
    """Builds every document of one stream from its events, enforcing the caps as it goes.

    After a problem in the data (a duplicate key, a bad tag...) it reads on
    without building, so that as before a syntax error, a cap or a duplicate
    anchor anywhere in the file is the problem reported.
    """

    def __init__(self, next_event: Callable[[], Any], local_tags: LocalTags | None = None) -> None:
        self.next_event = next_event
        self.local_tags = local_tags
        self.plain: dict[str, Any] = {}
        """Plain scalars already typed: the same words recur in every manifest."""
        self.entries: list[tuple[Path, int]] = []
        self.anchors: dict[str, _Anchor] = {}
        self.anchor_names: set[str] = set()
        self.stack: list[_Open] = []
        self.total = 0
        self.root: Any = None
        self.root_line = 0
        self.problem: YamlProblem | None = None
        self.composed = True
        """No duplicate anchor so far (one would outrank a problem in the data)."""

    def documents(self) -> list[Document]:
        docs: list[Document] = []
        stack, plain, anchors = self.stack, self.plain, self.anchors
        next_event = self.next_event
        scalar_event, mapping_end, mapping_start = yaml.ScalarEvent, yaml.MappingEndEvent, yaml.MappingStartEvent
        while True:
            event = next_event()
            kind = type(event)
            if kind is yaml.StreamEndEvent or event is None:
                if self.problem is not None:
                    raise YamlProblem(str(self.problem), self.problem.line)
                return docs
            try:
                if kind is scalar_event:
                    self.total += 1
                    line = event.start_mark.line + 1
                    if self.total > MAX_NODES:
                        self.too_many(line)
                    anchor = event.anchor
                    if anchor is not None:
                        self.new_anchor(anchor, line)
                        anchors[anchor] = _Anchor(None, line, (), 0, 0, 1)
                    if self.problem is not None:
                        continue
                    tag = event.tag
                    if tag is not None and tag != "!":
                        value = self.construct(tag, event, line)
                    elif not event.implicit[0]:
                        value = event.value
                    else:
                        value = plain.get(event.value, plain)
                        if value is plain:
                            value = self.construct(_RESOLVER.resolve(yaml.ScalarNode, event.value, _PLAIN), event, line)
                            if not isinstance(value, _KeyTag):
                                plain[event.value] = value
                    n = len(self.entries)
                    if anchor is not None:  # a scalar that is a dict is a local tag's: its mapping and key count too
                        anchors[anchor] = _Anchor(value, line, self.child_path(), n, n, 3 if type(value) is dict else 1)
                    elif stack:  # the usual cases first, inline: a key, or a value in a mapping
                        top = stack[-1]
                        key = top.key
                        if key is _NO_KEY:
                            container = top.value
                            if type(value) is str and type(container) is dict and value not in container:
                                self.entries.append((top.path + (value,), line))
                                top.key_lines[value] = line
                                top.key = value
                                continue
                        elif key is not _MERGING and type(value) is not _KeyTag:
                            top.value[key] = value
                            top.key = _NO_KEY
                            continue
                    self.add(value, line, n, n)
                elif kind is mapping_end or kind is yaml.SequenceEndEvent:
                    self.close(stack.pop())
                elif kind is mapping_start or kind is yaml.SequenceStartEvent:
                    self.total += 1
                    line = event.start_mark.line + 1
                    if self.total > MAX_NODES:
                        self.too_many(line)
                    if len(stack) >= MAX_DEPTH:
                        raise YamlProblem(f"nesting deeper than {MAX_DEPTH} levels", line)
                    if event.anchor is not None:
                        self.new_anchor(event.anchor, line)
                    parent = stack[-1] if stack else None
                    path = self.child_path() if self.problem is None else ()
                    merging = parent is not None and (parent.key is _MERGING or parent.merge_items)
                    tag = event.tag[1:] if self.local_tags is not None and _is_local(event.tag) and not merging else None  # a merge reads its node untagged, as PyYAML
                    opened = _Open({} if kind is mapping_start else [], path, line, len(self.entries), event.anchor, self.total, tag)
                    if parent is not None and parent.key is _MERGING and kind is not mapping_start:
                        opened.merge_items, opened.merges = True, []
                    stack.append(opened)
                    if tag is not None:
                        self.count_local_tag(line)
                elif kind is yaml.AliasEvent:
                    self.alias(event)
                elif kind is yaml.DocumentStartEvent:
                    if len(docs) >= MAX_DOCUMENTS:
                        raise YamlProblem(f"more than {MAX_DOCUMENTS} documents in one file", event.start_mark.line + 1)
                    self.total = 0
                    self.entries = []
                    anchors.clear()
                    self.anchor_names.clear()
                elif kind is yaml.DocumentEndEvent:
                    docs.append(Document(data=self.root, line=self.root_line, lines=dict(self.entries)))
            except _Late as exc:
                if self.problem is None:
                    self.problem = exc

    # --- caps ----------------------------------------------------------------

    def too_many(self, line: int) -> None:
        raise YamlProblem(f"document expands to more than {MAX_NODES} nodes (YAML aliases?)", line)

    def count_local_tag(self, line: int) -> None:
        """A node with a local tag is counted as what it becomes, as in its long form: a mapping,
        its key and the node (``!Ref x`` is ``{Ref: x}``)."""
        self.total += 2
        if self.total > MAX_NODES:
            self.too_many(line)

    def new_anchor(self, anchor: str, line: int) -> None:
        """An anchor may be defined once per document; YAML's composer refuses a second."""
        if anchor in self.anchor_names and self.composed:
            self.composed = False
            self.problem = YamlProblem("YAML syntax error: second occurrence", line)
        self.anchor_names.add(anchor)

    def alias(self, event: Any) -> None:
        """A copy of the anchored node, its lines repeated under the alias's path."""
        anchored = self.anchors.get(event.anchor)
        line = event.start_mark.line + 1
        if anchored is None:
            raise YamlProblem(f"unknown alias *{event.anchor}", line)
        self.total += anchored.size
        if self.total > MAX_NODES:
            self.too_many(line)
        if self.problem is not None:
            return
        value = anchored.value
        start = len(self.entries)
        if isinstance(value, (dict, list)):
            top = self.stack[-1] if self.stack else None
            if top is not None and top.key is _MERGING and isinstance(value, list):
                self.merge_list(top, anchored)
                return
            path, base = self.child_path(), len(anchored.path)
            self.entries.extend([(path + p[base:], n) for p, n in self.entries[anchored.start : anchored.end]])
            value = _copy(value)
        self.add(value, anchored.line, start, len(self.entries))

    # --- building ------------------------------------------------------------

    def child_path(self) -> Path:
        """The path of the node that starts now, from the collection it is in."""
        if not self.stack:
            return ()
        top = self.stack[-1]
        if top.merge_items:
            return top.path
        if type(top.value) is list:
            return top.path + (len(top.value),)
        key = top.key
        if key is _NO_KEY or key is _MERGING:
            return top.path
        return top.path + (key,)

    def construct(self, tag: str, event: Any, line: int) -> Any:
        """A scalar's value for its tag, as PyYAML's safe loader gives it (dates stay text)."""
        if tag == _STR:
            return event.value
        if self.local_tags is not None and _is_local(tag):
            self.not_merging(line)
            self.count_local_tag(line)
            return self.local_tags(tag[1:], event.value)
        if tag in (_TIMESTAMP, _BINARY):
            return str(event.value)
        if tag in (_MERGE, _VALUE):
            return _KeyTag(tag, event.value)
        constructor = _SCALARS.yaml_constructors.get(tag)
        if constructor is None:
            self.not_merging(line)
            raise _Late(f"unsupported YAML tag {tag}", line)
        node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
        try:
            return constructor(_SCALARS, node)
        except (ValueError, KeyError, IndexError, TypeError, yaml.YAMLError):
            self.not_merging(line)
            raise _Late(f"cannot read {event.value!r} as {tag.rsplit(':', 1)[-1]}", line) from None

    def not_merging(self, line: int) -> None:
        """A scalar that cannot be built right under ``<<``: the merge problem comes first, as in PyYAML."""
        top = self.stack[-1] if self.stack else None
        if top is not None and top.merge_items:
            raise _Late("YAML error: expected a mapping for merging, but found scalar", line)
        if top is not None and top.key is _MERGING:
            raise _Late("YAML error: expected a mapping or list of mappings for merging, but found scalar", line)

    def merge_list(self, top: _Open, anchored: _Anchor) -> None:
        """``<<: *list``: each item merges into ``top``, its lines with it."""
        assert top.merges is not None
        depth = len(anchored.path) + 1
        inside = self.entries[anchored.start : anchored.end]
        item_lines = {p[-1]: n for p, n in inside if len(p) == depth}
        for index, item in enumerate(anchored.value):
            if not isinstance(item, dict):
                raise _Late(f"YAML error: expected a mapping for merging, but found {_node_id(item)}", item_lines.get(index, anchored.line))
            prefix, start = anchored.path + (index,), len(self.entries)
            self.entries.extend([(top.path + p[depth:], n) for p, n in inside if len(p) > depth and p[:depth] == prefix])
            top.merges.append((_copy(item), start, len(self.entries)))
        top.key = _NO_KEY

    def add(self, value: Any, line: int, start: int, end: int) -> None:
        """A complete node: the root, a mapping key, a mapping value or a sequence item."""
        stack = self.stack
        if not stack:
            if isinstance(value, _KeyTag):
                raise _Late(f"unsupported YAML tag {value.tag}", line)
            self.root, self.root_line = value, line
            return
        top = stack[-1]
        container = top.value
        if type(container) is list:
            if top.merge_items:
                if not isinstance(value, dict):
                    raise _Late(f"YAML error: expected a mapping for merging, but found {_node_id(value)}", line)
                assert top.merges is not None
                top.merges.append((value, start, end))
            elif isinstance(value, _KeyTag):
                raise _Late(f"unsupported YAML tag {value.tag}", line)
            else:
                self.entries.append((top.path + (len(container),), line))
            container.append(value)
            return
        key = top.key
        if key is _NO_KEY:
            if isinstance(value, _KeyTag):
                if value.tag == _MERGE:
                    top.key = _MERGING
                    if top.merges is None:
                        top.merges = []
                    return
                value = value.text
            elif isinstance(value, (dict, list)):
                raise _Late("a mapping key must be a scalar", line)
            elif type(value) is not str:
                value = str(value).lower() if isinstance(value, bool) else str(value)
            if value in container:
                raise _Late(f"duplicate key {value!r}", line)
            self.entries.append((top.path + (value,), line))
            top.key_lines[value] = line
            top.key = value
            return
        top.key = _NO_KEY
        if key is _MERGING:
            if not isinstance(value, dict):
                raise _Late(f"YAML error: expected a mapping or list of mappings for merging, but found {_node_id(value)}", line)
            assert top.merges is not None
            top.merges.append((value, start, end))
        elif isinstance(value, _KeyTag):
            raise _Late(f"unsupported YAML tag {value.tag}", line)
        else:
            container[key] = value

    def close(self, done: _Open) -> None:
        """A mapping or sequence ends: remember its anchor, apply its merges, hand it up."""
        end = len(self.entries)
        anchored = None
        if done.anchor is not None:
            anchored = _Anchor(done.value, done.line, done.path, done.start, end, self.total - done.counted + 1)
            self.anchors[done.anchor] = anchored
        if self.problem is not None:
            return
        value: Any = done.value
        if done.merge_items:  # the list after '<<': its items merge into the mapping above
            top = self.stack[-1]
            assert top.merges is not None and done.merges is not None
            top.merges.extend(done.merges)
            top.key = _NO_KEY
            return
        if done.merges:
            value = self.merged(done)
        if done.tag is not None and self.local_tags is not None:
            value = self.local_tags(done.tag, value)
        if anchored is not None:
            anchored.value = value
        self.add(value, done.line, done.start, end)

    def merged(self, done: _Open) -> dict[str, Any]:
        """Merged keys first (the first mapping that has a key gives it), then the mapping's own.

        A key of the mapping's own that a merge also gives is a duplicate, as PyYAML has it.
        """
        out: dict[str, Any] = {}
        given: dict[str, tuple[int, int]] = {}
        shadowed = False
        assert done.merges is not None and isinstance(done.value, dict)  # a list after '<<' handed its merges up in close()
        for source, start, end in done.merges:
            for key, item in source.items():
                if key in out:
                    shadowed = True
                else:
                    out[key], given[key] = item, (start, end)
        if shadowed:  # the lines of the mapping that gave each key win
            for key, (start, end) in given.items():
                prefix = done.path + (key,)
                self.entries.extend([(p, n) for p, n in self.entries[start:end] if p[: len(prefix)] == prefix])
        for key, item in done.value.items():
            if key in out:
                raise _Late(f"duplicate key {key!r}", done.key_lines[key])
            out[key] = item
        return out


def _copy(value: Any) -> Any:
    """A copy of plain data (dicts, lists, scalars), fast; deep only to ``MAX_DEPTH``."""
    if type(value) is dict:
        return {key: _copy(item) for key, item in value.items()}
    if type(value) is list:
        return [_copy(item) for item in value]
    return value


def _is_local(tag: str | None) -> bool:
    """``!name``: a local tag (not ``!``, the non-specific one, nor a ``!!`` one, which arrive resolved)."""
    return tag is not None and len(tag) > 1 and tag[0] == "!"


def _node_id(value: Any) -> str:
    return "mapping" if isinstance(value, dict) else "sequence" if isinstance(value, list) else "scalar"
