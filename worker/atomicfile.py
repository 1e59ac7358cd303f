"""Files replaced whole: a reader finds the old file or the new one, never part of one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def replace_file(path: Path, data: bytes, *, durable: bool = False) -> None:
    """`path` now holds `data`, readable by its owner only (mode 600). The bytes go to a
    temporary file of its own name beside it, renamed over it: two writers at once (a
    worker's threads) each rename a whole file (a shared `<name>.tmp` made the second's
    rename find it gone). `durable`: the file and its folder are synced to the disk first,
    so a power cut keeps the old file or the new one (the box's record, its secret key)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
