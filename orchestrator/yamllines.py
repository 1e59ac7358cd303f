"""Field path -> line for the paths an error names: one pass over the parser's events that builds
no document and follows only the branches leading to those paths."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import yaml

from orchestrator.yamlevents import MergeKey, events, scalar_value

# A wanted path, and how much of it the branch walked so far has matched.
_Want = tuple[str, int]
_SEGMENT_END = re.compile(r"[.\[]")
_NOT_A_KEY = object()  # a list or mapping as a key (a YAML null key is None)


def _token(path: str, start: int) -> str:
    """The piece of `path` from `start` to the next '.' or '[': a key holding a dot spans
    several, and is checked in full once its first piece matched."""
    end = _SEGMENT_END.search(path, start + 1)
    return path[start : end.start() if end else len(path)]


class _Branch:
    """A mapping or list on the way to wanted paths; its children's segments are checked
    against them without spelling out the path (a long path and 200,000 items cost nothing)."""

    def __init__(self, wants: list[_Want], is_list: bool, root: bool) -> None:
        self.by_token: dict[str, list[_Want]] = {}
        for want in wants:
            self.by_token.setdefault(_token(*want), []).append(want)
        self.is_list, self.root = is_list, root
        self.index = 0
        self.expect_key = True
        self.value_wants: list[_Want] = []  # a mapping's: where the current key leads

    def step(self, segment: str, line: int, found: dict[str, int]) -> list[_Want]:
        """The wants the child at `segment` leads on to; the lines of those it reaches."""
        onward = []
        for path, at in self.by_token.get(_token(segment, 0), ()):
            end = at + len(segment)
            if not path.startswith(segment, at):
                continue
            if end == len(path):
                found.setdefault(path, line)
            elif path[end] in ".[":
                onward.append((path, end))
        return onward

    def key(self, key: Any, line: int, found: dict[str, int]) -> None:
        if key is _NOT_A_KEY or isinstance(key, MergeKey):
            self.value_wants = []
            return
        segment = str(key) if self.root else f".{key}"
        self.value_wants = self.step(segment, line, found)


class _Walk:
    """The branches open at the current event, and the anchored scalars (keys may be aliases)."""

    def __init__(self, paths: Iterable[str], found: dict[str, int]) -> None:
        self.root: list[_Want] = [(path, 0) for path in paths if path]
        self.found = found
        self.stack: list[_Branch | None] = []
        self.anchored: dict[str | None, Any] = {}

    def arrive(self, ev: Any) -> list[_Want]:
        """What the node starting at `ev` leads on to (nothing for a key)."""
        if not self.stack:
            return self.root
        top = self.stack[-1]
        if top is None:
            return []
        line = ev.start_mark.line + 1
        if top.is_list:
            return top.step(f"[{top.index}]", line, self.found)
        if top.expect_key:
            # As the builder's paths were: a mapping value is on its key's line.
            top.key(self.key_of(ev), line, self.found)
            return []
        return top.value_wants

    def key_of(self, ev: Any) -> Any:
        if isinstance(ev, yaml.AliasEvent):
            ev = self.anchored.get(ev.anchor)
        return scalar_value(ev) if isinstance(ev, yaml.ScalarEvent) else _NOT_A_KEY

    def leave(self) -> None:
        top = self.stack[-1] if self.stack else None
        if top is None:
            return
        if top.is_list:
            top.index += 1
        else:
            top.expect_key = not top.expect_key

    def feed(self, ev: Any) -> None:
        if isinstance(ev, yaml.MappingStartEvent | yaml.SequenceStartEvent):
            self.anchored.pop(ev.anchor, None)
            wants = self.arrive(ev)
            is_list = isinstance(ev, yaml.SequenceStartEvent)
            self.stack.append(_Branch(wants, is_list, not self.stack) if wants else None)
        elif isinstance(ev, yaml.ScalarEvent | yaml.AliasEvent):
            if isinstance(ev, yaml.ScalarEvent) and ev.anchor is not None:
                self.anchored[ev.anchor] = ev
            self.arrive(ev)
            self.leave()
        elif isinstance(ev, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            self.stack.pop()
            self.leave()


def find_lines(text: str, paths: Iterable[str], found: dict[str, int]) -> None:
    """Add to `found` the line of each of `paths` in `text` (YamlRefused or yaml.YAMLError
    midway: what was found before stays)."""
    walk = _Walk(paths, found)
    for ev in events(text):
        walk.feed(ev)
