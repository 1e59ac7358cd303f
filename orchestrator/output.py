"""The commands' standard output: a write that fails is told apart from every other OSError."""

from __future__ import annotations

from typing import TextIO

from orchestrator.errors import OutputFailed, ReaderGone


class GuardedStdout:
    """Stands in for sys.stdout while a command runs. Writing to a closed stdout (`>&-`, where
    Python's is None and click would drop the text unsaid) or a full one (`> /dev/full`) raises
    OutputFailed; a gone reader raises ReaderGone. Other OSErrors keep their own handlers."""

    def __init__(self, inner: TextIO | None) -> None:
        self.inner = inner
        # click writes text as is to a stream that names both.
        self.encoding = getattr(inner, "encoding", None) or "utf-8"
        self.errors = getattr(inner, "errors", None) or "strict"

    def isatty(self) -> bool:
        return self.inner is not None and self.inner.isatty()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        try:
            return self._open().write(text)
        except OSError as exc:
            raise _failed(exc) from None

    def flush(self) -> None:
        try:
            self._open().flush()
        except OSError as exc:
            raise _failed(exc) from None

    def __getattr__(self, name: str) -> object:
        # fileno, buffer, line_buffering...: the real stream's (a closed one has none).
        return getattr(self._open(), name)

    def _open(self) -> TextIO:
        if self.inner is None:
            raise OutputFailed("could not write the output: standard output is closed")
        return self.inner


def _failed(exc: OSError) -> Exception:
    if isinstance(exc, BrokenPipeError):
        return ReaderGone()
    return OutputFailed(f"could not write the output to standard output: {exc.strerror or exc}")
