"""Read one YAML input file within limits: size, nesting, alias expansion, encoding, keys."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml

from orchestrator.errors import InvalidFile
from schemas.checks import Problem

# 20,000 apps of a few lines each are about 3 MiB: room for that, not for a runaway file.
MAX_BYTES = 8 * 1024 * 1024
# Nodes once every alias is expanded: what the models will walk. A 558-byte alias bomb
# expands to billions; legitimate aliases (merge keys) add little.
MAX_NODES = 2_000_000
MAX_ALIAS_NODES = 100_000
# Deeper than any box.yml needs; PyYAML's composer recurses once per level.
MAX_DEPTH = 50

# YAML forbids these in a stream (PyYAML says so with a position, not a line).
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ufffe\uffff]")


class SourceInt(int):
    """An int that remembers how it was written (`0123` is octal 83 in YAML 1.1)."""

    source_text: str


class SourceFloat(float):
    """A float that remembers how it was written (`1.10` must not become `1.1`)."""

    source_text: str


class _Loader(yaml.SafeLoader):
    """SafeLoader with duplicate keys refused, YAML 1.2 ints, bounded depth and aliases."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        if self._depth > MAX_DEPTH:
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, f"nested deeper than {MAX_DEPTH} levels", mark
            )
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    # Keys written here must be unique; keys a merge (`<<:`) brings in may be overridden.
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG:
            continue
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, Hashable):
            raise yaml.constructor.ConstructorError(
                None, None, "a key must be a plain value, not a list or mapping",
                key_node.start_mark,
            )
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}: each key may appear once", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


def _int(loader: _Loader, node: yaml.ScalarNode) -> SourceInt:
    out = SourceInt(loader.construct_yaml_int(node))
    out.source_text = str(node.value)
    return out


def _float(loader: _Loader, node: yaml.ScalarNode) -> SourceFloat:
    out = SourceFloat(loader.construct_yaml_float(node))
    out.source_text = str(node.value)
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_Loader.add_constructor("tag:yaml.org,2002:int", _int)
_Loader.add_constructor("tag:yaml.org,2002:float", _float)

# YAML 1.1 reads an unquoted `- 22:22` as the base-60 number 1342: a silent wrong port.
# Resolve ints as YAML 1.2 does (no base 60), so `22:22` stays the string it looks like.
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:int"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)


def _expanded(node: yaml.Node) -> int | None:
    """Nodes in the tree once aliases are expanded (None: an alias contains itself).

    Linear in the composed graph: each node is sized once, from its children's sizes.
    """
    sizes: dict[int, int] = {}
    visiting: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(node, False)]
    while stack:
        current, done = stack.pop()
        if id(current) in sizes:
            continue
        if not done and id(current) in visiting:
            return None  # popped again below itself: a cycle
        visiting.add(id(current))
        children: list[yaml.Node] = []
        if isinstance(current, yaml.MappingNode):
            children = [n for pair in current.value for n in pair]
        elif isinstance(current, yaml.SequenceNode):
            children = list(current.value)
        if done:
            sizes[id(current)] = 1 + sum(sizes.get(id(c), 0) for c in children)
            if sizes[id(current)] > MAX_NODES:
                return sizes[id(current)]
            continue
        stack.append((current, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)
    return sizes[id(node)]


def _distinct(node: yaml.Node) -> int:
    seen: set[int] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, yaml.MappingNode):
            stack.extend(n for pair in current.value for n in pair)
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)
    return len(seen)


def line_index(node: yaml.Node | None) -> dict[str, int]:
    """Field path -> 1-based line, for error messages; each node visited once."""
    out: dict[str, int] = {}
    seen: set[int] = set()
    stack: list[tuple[yaml.Node | None, str]] = [(node, "")]
    while stack:
        current, prefix = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, yaml.MappingNode):
            for k, v in current.value:
                path = f"{prefix}.{k.value}" if prefix else str(k.value)
                out.setdefault(path, k.start_mark.line + 1)
                stack.append((v, path))
        elif isinstance(current, yaml.SequenceNode):
            for i, v in enumerate(current.value):
                path = f"{prefix}[{i}]"
                out.setdefault(path, v.start_mark.line + 1)
                stack.append((v, path))
    return out


def _refuse(name: str, message: str) -> InvalidFile:
    return InvalidFile(name, [Problem("", message)])


def read_bytes(path: Path, limit: int = MAX_BYTES) -> bytes:
    """A regular file's bytes, at most `limit`; never blocks on a FIFO or reads /dev/zero."""
    name = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise _refuse(name, f"cannot read the file: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            what = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
            raise _refuse(name, f"this is {what}; give a YAML file")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise _refuse(name, f"cannot read the file: {exc.strerror}") from None
    finally:
        os.close(fd)
    if size > limit:
        raise _refuse(name, f"the file is larger than {limit // (1024 * 1024)} MiB; split it")
    return b"".join(chunks)


def decode(raw: bytes, name: str) -> str:
    """UTF-8 text (a UTF-8 BOM is dropped); anything else is refused with where and why."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")) or (len(raw) > 1 and b"\x00" in raw[:2]):
        raise _refuse(name, "this file is UTF-16; save it as UTF-8")
    if b"\x00" in raw:
        raise _refuse(name, "this is not a text file (it has NUL bytes); give a YAML file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise _refuse(name, f"line {line}: this is not UTF-8 text; save it as UTF-8") from None
    text = text.removeprefix("\ufeff")
    bad = _CONTROL.search(text)
    if bad:
        line = text.count("\n", 0, bad.start()) + 1
        column = bad.start() - (text.rfind("\n", 0, bad.start()) + 1) + 1
        raise _refuse(
            name,
            f"line {line}, column {column}: control character U+{ord(bad.group()):04X} is not "
            "allowed in YAML; remove it (write it as an escape in a double-quoted string)",
        )
    return text


def parse(text: str, name: str) -> tuple[Any, dict[str, int]]:
    """The document and its line index; InvalidFile with line and column on any YAML error."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        total = _expanded(node)
        if total is None:
            raise _refuse(name, "an alias refers to a node that contains it; write it out")
        if total > MAX_NODES or total - _distinct(node) > MAX_ALIAS_NODES:
            raise _refuse(
                name,
                f"aliases expand to {'more than ' if total > MAX_NODES else ''}{total} nodes "
                f"(limit {MAX_NODES}, of which {MAX_ALIAS_NODES} through aliases); "
                "write the values out instead of nesting aliases",
            )
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = exc.problem or str(exc)
        raise _refuse(name, f"YAML syntax error at {at}{what}") from None
    except yaml.YAMLError as exc:
        raise _refuse(name, f"YAML error: {exc}") from None
    except RecursionError:
        raise _refuse(name, f"nested too deeply (limit {MAX_DEPTH} levels)") from None
    finally:
        loader.dispose()
    return data, line_index(node)


def read_yaml(path: Path) -> tuple[Any, dict[str, int]]:
    """Parse one YAML file within limits; errors name the file, line and column."""
    name = str(path)
    text = decode(read_bytes(path), name)
    if all(not line.strip() or line.lstrip().startswith("#") for line in text.splitlines()):
        raise _refuse(name, "the file is empty; it needs at least `apps:`")
    return parse(text, name)
