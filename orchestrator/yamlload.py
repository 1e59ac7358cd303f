"""Read one YAML input file within limits: size, regular files, encoding, control characters;
then yamlevents.py builds it within depth and alias limits."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from orchestrator.errors import InvalidFile, YamlRefused, field_path_and_parents
from orchestrator.yamlevents import MAX_DEPTH, MAX_NODES, SourceFloat, SourceInt, build
from orchestrator.yamllines import find_lines
from schemas.checks import Problem

# 20,000 apps of a few lines each are about 3 MiB: room for that, not for a runaway file.
MAX_BYTES = 8 * 1024 * 1024
# YAML forbids these in a stream (PyYAML says so with a position, not a line).
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ufffe\uffff]")


class Lines(dict[str, int]):
    """Field path -> line, worked out from the text only for the paths an error asks about:
    a line for every node of a big file would cost far more than the file (full paths)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self._text = text
        self._searched: set[str] = set()

    def find(self, paths: Iterable[str]) -> None:
        """Look up these paths and their parents in one pass (InvalidFile asks for all)."""
        wanted = {p for path in paths for p in field_path_and_parents(path)} - self._searched
        if not wanted:
            return
        self._searched |= wanted
        found: dict[str, int] = {}
        # Lines up to an error are still worth having.
        with contextlib.suppress(YamlRefused, yaml.YAMLError):
            find_lines(self._text, wanted, found)
        self.update(found)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.find([key])
        return super().__contains__(key)

    def __getitem__(self, key: str) -> int:
        self.find([key])
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.find([key])
        return super().get(key, default)


def _refuse(name: str, message: str) -> InvalidFile:
    return InvalidFile(name, [Problem("", message)])


def read_bytes(path: Path, limit: int = MAX_BYTES) -> bytes:
    """A regular file's bytes, at most `limit`; never blocks on a FIFO or reads /dev/zero."""
    name = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        why = exc.strerror
        if exc.errno == errno.ENOENT and os.path.islink(path):  # the link is there, not its file
            why = f"a symbolic link to {os.readlink(path)!r}, which does not exist"
        raise _refuse(name, f"cannot read the file: {why}") from None
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
    head = raw[:512]
    ascii_utf16 = len(head) > 1 and (
        head[1::2].count(0) * 2 >= len(head) - 1 or head[0::2].count(0) * 2 >= len(head) - 1
    )
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")) or ascii_utf16:
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
    try:
        data = build(text)
    except YamlRefused as exc:
        at = f"line {exc.line}, column {exc.column}: " if exc.line else ""
        raise _refuse(name, f"{at}{exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = exc.problem or str(exc)
        raise _refuse(name, f"YAML syntax error at {at}{what}") from None
    except yaml.YAMLError as exc:
        raise _refuse(name, f"YAML error: {exc}") from None
    return data, Lines(text)


def read_yaml(path: Path) -> tuple[Any, dict[str, int]]:
    """Parse one YAML file within limits; errors name the file, line and column."""
    name = str(path)
    text = decode(read_bytes(path), name)
    if all(not line.strip() or line.lstrip().startswith("#") for line in text.splitlines()):
        raise _refuse(name, "the file is empty; it needs at least `apps:`")
    return parse(text, name)


__all__ = ["MAX_DEPTH", "MAX_NODES", "SourceFloat", "SourceInt", "parse", "read_yaml"]
