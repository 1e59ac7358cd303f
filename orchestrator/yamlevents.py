"""Build a YAML document straight from the parser's events: no node tree, bounded depth and
alias expansion, YAML 1.2 integers, numbers that remember how they were written."""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from orchestrator.errors import YamlRefused

# Nodes once every alias is expanded: what the models will walk. A 558-byte alias bomb
# expands to billions; legitimate aliases (merge keys) add little.
MAX_NODES = 2_000_000
# No box.yml list comes near it (argv, ports, CIDRs); each bad item of a longer one would cost
# a validation error of its own (~2 KB: 200,000 of them outgrew any memory limit).
MAX_ITEMS = 10_000
MAX_ALIAS_NODES = 100_000
# Deeper than any box.yml needs (and the models validate recursively).
MAX_DEPTH = 50

# libyaml's parser when PyYAML was built with it (about ten times faster), else PyYAML's own.
_PARSER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
# The tags a plain value may carry, and what each takes. PyYAML's constructors trust that the
# resolver already matched the text, so an explicit tag on other text fails with whatever the
# code hits (`!!bool maybe`: KeyError, `!!int ""`: IndexError); collection tags (`!!seq`,
# `!!set`) on a plain value build a generator or a half-made object.
_TAKES = {
    "tag:yaml.org,2002:null": "null or ~",
    "tag:yaml.org,2002:bool": "true or false",
    _INT: "a whole number such as 8080",
    _FLOAT: "a number such as 0.5",
    "tag:yaml.org,2002:timestamp": "a date such as 2024-01-31 or 2024-01-31 12:00:00",
    "tag:yaml.org,2002:binary": "base64 text",
}


class SourceInt(int):
    """An int that remembers how it was written (`0123` is octal 83 in YAML 1.1)."""

    source_text: str


class SourceFloat(float):
    """A float that remembers how it was written (`1.10` must not become `1.1`)."""

    source_text: str


class _Resolver(yaml.resolver.Resolver):
    """YAML 1.1 reads an unquoted `- 22:22` as the base-60 number 1342: a silent wrong port.
    Ints resolve as YAML 1.2 does (no base 60), so `22:22` stays the string it looks like."""


_Resolver.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _INT]
    for first, resolvers in yaml.resolver.Resolver.yaml_implicit_resolvers.items()
}
_Resolver.add_implicit_resolver(
    _INT,
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)
# Both keep no state between scalars: one of each serves every document.
_RESOLVER = _Resolver()
_CONSTRUCTOR = yaml.constructor.SafeConstructor()


@dataclass
class _Frame:
    value: Any  # the dict or list being filled
    anchor: str | None
    size: int = 1
    key: Any = None
    key_mark: Any = None
    expect_key: bool = True
    merges: list[dict[Any, Any]] = field(default_factory=list)
    index: int = 0


class _Builder:
    def __init__(self) -> None:
        self.anchors: dict[str, tuple[Any, int]] = {}
        self.open_anchors: set[str] = set()
        self.stack: list[_Frame] = []
        self.total = 0
        self.through_aliases = 0
        self.document: Any = None
        self.documents = 0

    def scalar(self, ev: Any) -> Any:
        try:
            return scalar_value(ev)
        except YamlRefused as exc:
            raise self.refused(exc.message, ev.start_mark) from None

    def here(self) -> str:
        """The field path of the node being read (for a message: built only on an error)."""
        path = ""
        for frame in self.stack:
            if isinstance(frame.value, list):
                path += f"[{frame.index}]"
            elif frame.expect_key:
                break  # a key is being read: its mapping is the place
            else:
                path = f"{path}.{frame.key}" if path else str(frame.key)
        return path

    def refused(self, message: str, mark: Any) -> YamlRefused:
        return YamlRefused(message, mark, self.here())

    def add(self, value: Any, size: int, mark: Any, counted: int = 0) -> None:
        # `counted`: nodes of this value already counted (a closing container's children).
        self.total += size - counted
        if self.total > MAX_NODES:
            raise self.refused(f"the document expands to more than {MAX_NODES} nodes", mark)
        if not self.stack:
            self.document = value
            self.documents += 1
            return
        top = self.stack[-1]
        top.size += size
        if isinstance(top.value, list):
            if len(top.value) >= MAX_ITEMS:
                raise self.refused(f"a list of more than {MAX_ITEMS:,} items; no field takes "
                                   "that many", mark)
            top.value.append(value)
            top.index += 1
        elif top.expect_key:
            if not isinstance(value, Hashable):
                raise self.refused("a key must be a plain value, not a list or mapping", mark)
            if not isinstance(value, MergeKey) and value in top.value:
                raise self.refused(f"duplicate key {value!r}: each key may appear once", mark)
            top.key, top.key_mark, top.expect_key = value, mark, False
        else:
            if isinstance(top.key, MergeKey):
                top.merges += _merge_sources(value, top.key_mark)
            else:
                top.value[top.key] = value
            top.expect_key = True

    def open(self, ev: Any, value: Any) -> None:
        if len(self.stack) >= MAX_DEPTH:
            raise self.refused(f"nested deeper than {MAX_DEPTH} levels", ev.start_mark)
        tag = ev.tag
        if tag not in (None, "!", _MAP, _SEQ):
            raise self.refused(f"the tag {tag} is not supported here; remove it", ev.start_mark)
        if ev.anchor is not None:
            self.open_anchors.add(ev.anchor)
        self.stack.append(_Frame(value, ev.anchor))

    def close(self, ev: Any) -> None:
        frame = self.stack.pop()
        if frame.merges:
            merged: dict[Any, Any] = {}
            for source in reversed(frame.merges):  # the first source named wins
                merged.update(source)
            merged.update(frame.value)  # keys written here win over merged ones
            frame.value.clear()
            frame.value.update(merged)
        if frame.anchor is not None:
            self.open_anchors.discard(frame.anchor)
            self.anchors[frame.anchor] = (frame.value, frame.size)
        self.add(frame.value, frame.size, ev.start_mark, counted=frame.size - 1)

    def alias(self, ev: Any) -> None:
        if ev.anchor in self.open_anchors:
            raise self.refused(
                "an alias refers to a node that contains it; write it out", ev.start_mark
            )
        if ev.anchor not in self.anchors:
            raise self.refused(
                f"alias *{ev.anchor} names no anchor defined before it", ev.start_mark
            )
        value, size = self.anchors[ev.anchor]
        self.through_aliases += size
        if self.through_aliases > MAX_ALIAS_NODES:
            raise self.refused(
                f"aliases expand to more than {MAX_ALIAS_NODES} nodes; write the values out "
                "instead of nesting aliases",
                ev.start_mark,
            )
        self.add(value, size, ev.start_mark)

    def feed(self, ev: Any) -> None:
        if isinstance(ev, yaml.ScalarEvent):
            value = self.scalar(ev)
            if ev.anchor is not None:
                self.anchors[ev.anchor] = (value, 1)
            self.add(value, 1, ev.start_mark)
        elif isinstance(ev, yaml.MappingStartEvent):
            self.open(ev, {})
        elif isinstance(ev, yaml.SequenceStartEvent):
            self.open(ev, [])
        elif isinstance(ev, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            self.close(ev)
        elif isinstance(ev, yaml.AliasEvent):
            self.alias(ev)
        elif isinstance(ev, yaml.DocumentStartEvent) and self.documents:
            raise self.refused("a second document (`---`) in one file; keep one", ev.start_mark)


def scalar_value(ev: Any) -> Any:
    """The value of a scalar event, as the builder reads it (keys of the line index too)."""
    tag, explicit = ev.tag, ev.tag not in (None, "!")
    if not explicit:
        tag = _RESOLVER.resolve(yaml.ScalarNode, ev.value, ev.implicit)  # type: ignore[no-untyped-call]
    if tag == _STR:
        return ev.value
    if tag == _MERGE:
        return MergeKey()
    if tag not in _TAKES:
        raise YamlRefused(f"the tag {tag} is not supported; remove it", ev.start_mark)
    # Called directly, not through construct_object, which would keep every node.
    node = yaml.ScalarNode(tag, ev.value, ev.start_mark, ev.end_mark, ev.style)
    try:
        value = _CONSTRUCTOR.yaml_constructors[tag](_CONSTRUCTOR, node)
    except Exception as exc:  # any failure is the text's, whatever PyYAML raised (see _TAKES)
        raise YamlRefused(_unreadable(tag, ev.value, exc, explicit), ev.start_mark) from None
    if tag == _INT and isinstance(value, int):
        value = SourceInt(value)
        value.source_text = ev.value
    elif tag == _FLOAT and isinstance(value, float):
        value = SourceFloat(value)
        value.source_text = ev.value
    return value


def _unreadable(tag: str, text: str, exc: Exception, explicit: bool) -> str:
    shown = text if len(text) <= 40 else text[:37] + "..."
    why = exc.problem if isinstance(exc, yaml.MarkedYAMLError) else None
    if isinstance(exc, ValueError):  # Python's own text, less its advice on sys settings
        why = str(exc).split(";")[0][:100]
    detail = f" ({why})" if why else ""
    short = tag.replace("tag:yaml.org,2002:", "!!")
    if not explicit:  # a date with month 13, an int of 5,000 digits: text that looks typed
        return f"YAML reads {shown!r} as {short}, which fails{detail}; quote it if it is text"
    return f"{short} takes {_TAKES[tag]}, not {shown!r}{detail}; fix the value or remove the tag"


class MergeKey:
    """The `<<` key: the mapping(s) after it are merged into this one."""

    def __hash__(self) -> int:
        return 0

    def __eq__(self, other: object) -> bool:
        return False


def _merge_sources(value: Any, mark: Any) -> list[dict[Any, Any]]:
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list) and all(isinstance(v, dict) for v in value):
        return list(value)
    raise YamlRefused("a merge key (<<) takes a mapping or a list of mappings", mark)


def events(text: str) -> Iterator[Any]:
    loader = _PARSER(text)
    try:
        while loader.check_event():
            yield loader.get_event()
    finally:
        loader.dispose()


def build(text: str) -> Any:
    """The document of `text`; YamlRefused, or yaml.MarkedYAMLError for a syntax error."""
    builder = _Builder()
    for ev in events(text):
        builder.feed(ev)
    return builder.document
