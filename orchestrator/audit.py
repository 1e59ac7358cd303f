"""Who asked for a rollout, from where, with which command: kept with the rollout record."""

from __future__ import annotations

import getpass
import os
import shlex
import socket
import sys
from dataclasses import dataclass

from schemas.redaction import redact


@dataclass(frozen=True)
class Who:
    user: str
    host: str
    performer: str  # given by CI (ORCHESTRATOR_PERFORMER), else the user
    command: str

    def __str__(self) -> str:
        by = self.user if self.performer == self.user else f"{self.performer} (as {self.user})"
        return f"{by}@{self.host}"


def who(performer: str | None = None) -> Who:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container): the uid still says who
        user = f"uid {os.getuid()}"
    argv = ["orchestrator", *sys.argv[1:]]  # the same whether run as a script or with -m
    return Who(user, socket.gethostname(), performer or user, redact(shlex.join(argv)))
