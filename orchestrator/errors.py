"""Our exception tree; library errors are translated into it where they enter.

OrchestratorError
├── ConfigError              bad box.yml / fleet.yml / settings / CLI input (exit 2)
│   ├── InvalidFile          a box or fleet file's problems, each with its field path
│   ├── YamlRefused          a YAML text breaks a limit or rule at a line (yamlevents.py)
│   ├── IllegalTransition    a rollout can't make that move from its state (engine/state.py)
│   └── ReleaseMismatch      a release in Redis does not match the hash a task carries
├── ServiceUnavailable       Redis, Docker, the registry or AWS does not answer
│   └── NotReplicated        no replica acknowledged a lease, claim or fence write (WAIT)
├── RolloutNotSucceeded      a rollout, rollback or repair ended in another state (exit 1)
├── Detached                 Ctrl-C on an attached CLI; the rollout goes on (exit 130)
├── OutputFailed             stdout is full or closed: the results were not written
└── DeployError              a deploy step could not do its job (exit 1)
    ├── HealthCheckFailed    new containers never proved healthy
    ├── LoadBalancerError    leaving or joining a load balancer failed
    ├── RuntimeFailure       the container runtime refused an action
    │   └── RegistryAuthFailed   a registry refused a pull: no or wrong credentials
    ├── StartFailed          new containers did not start or prove healthy; none is left
    ├── SecretUnavailable    a secret reference could not be resolved (names the reference)
    ├── HostPathDenied       a release asks for a host path the box's limits refuse
    ├── Fenced               the chain's token is no longer the box's: it must not act
    ├── ProvisioningFailed   AWS refused a change `boxtype create/scale/delete` asked for
    │
    │   the coordinator's refusals (the rollout start, `resume`):
    ├── LeaseHeld            another rollout holds the box type (exit 3)
    │   └── Frozen           the box type is frozen by `lock acquire` (exit 3)
    ├── HookFailed           hooks/pre-rollout said no; nothing was changed
    ├── MigrationFailed      box.yml's migrate task failed; nothing was swapped
    └── PreflightFailed      some boxes can't take the release; nothing was changed

Exit codes (README "Exit codes" names the test that provokes each):
0 ok · 1 a deploy failed or halted (or `status` found a problem) · 2 bad input, nothing changed ·
3 the lease is held by another rollout · 4 Redis, Docker, a registry or AWS did not answer ·
130 interrupted (Ctrl-C) · 141 stdout's reader went away (`| head`), quietly.

InjectedFault (a RuntimeError, outside the tree on purpose) is raised only by a test hook.
ReaderGone (outside it too: no error) ends a command whose stdout's reader left (exit 141).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from schemas.checks import Problem


class OrchestratorError(Exception):
    """Base of every error this project raises on purpose."""

    exit_code = 1


class ConfigError(OrchestratorError):
    """Input a person must fix: it names the file, the field path and what to write."""

    exit_code = 2


class IllegalTransition(ConfigError):
    """A rollout asked to move where the state machine's table does not allow."""


class ServiceUnavailable(OrchestratorError):
    """A service we depend on (Redis, Docker, a registry, AWS) did not answer."""

    exit_code = 4


class NotReplicated(ServiceUnavailable):
    """A lease, claim or fence write reached the master but no replica acknowledged it in
    time: a failover could forget it, so what it granted is not used."""


class DeployError(OrchestratorError):
    """A deploy step failed; the box's own outcome says what was put back."""


class HealthCheckFailed(DeployError):
    """New containers did not pass their health check within the deadline."""


class LoadBalancerError(DeployError):
    """A load balancer refused or timed out on leave/join."""


class RuntimeFailure(DeployError):
    """The container runtime refused an action (create, start, stop, remove, pull)."""


class RegistryAuthFailed(RuntimeFailure):
    """A registry refused to serve an image: credentials missing or wrong (never shown)."""


class StartFailed(DeployError):
    """New containers did not start or prove healthy; none of them is left."""

    def __init__(self, reason: str, log_tail: str) -> None:
        super().__init__(reason)
        self.log_tail = log_tail


class SecretUnavailable(DeployError):
    """A secret reference could not be resolved; the message names the reference only."""


class HostPathDenied(DeployError):
    """A release asks to mount or read a host path the box refuses; names the rule and path."""


class Fenced(DeployError):
    """A chain's token is no longer its box's (revoked, superseded, lost) or its rollout is
    gone: the action it was about to take is not taken."""


class ProvisioningFailed(DeployError):
    """AWS refused a change to a box type's template, group, policies or security group."""


# -- the coordinator side: input files, releases, the rollout start and its end ---------------


class YamlRefused(ConfigError):
    """A YAML text breaks a limit (depth, aliases, size) or rule (keys, tags) at a place."""

    def __init__(self, message: str, mark: object, path: str = "") -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.message = message
        self.path = path  # the field path, as in box.yml errors ("" at the top)
        line, column = getattr(mark, "line", None), getattr(mark, "column", None)
        self.line = line + 1 if isinstance(line, int) else None
        self.column = column + 1 if isinstance(column, int) else None


def field_path_and_parents(path: str) -> list[str]:
    """`a.b[0]`, `a.b`, `a`: where a problem's line is looked for, nearest first."""
    out = []
    while path:
        out.append(path)
        parent = re.sub(r"(\.[^.\[]*|\[\d+\])$", "", path)
        path = "" if parent == path else parent
    return out


MAX_SHOWN = 50  # problems of one file listed; the count says how many more


class InvalidFile(ConfigError):
    """A file that can't be used; every problem is listed with its field path."""

    def __init__(self, path: str, problems: list[Problem], lines: dict[str, int] | None = None):
        self.path = path
        self.problems = problems
        shown = problems[:MAX_SHOWN]  # the rest is counted: a person fixes the first ones first
        lines = {} if lines is None else lines
        find = getattr(lines, "find", None)
        if find is not None:  # yamlload.Lines: one pass over the text for every problem at once
            find([p.path for p in shown])

        def where(p: Problem) -> str:
            # A normalised path (ports given as a mapping) may have no line: use its parent's.
            key = next((k for k in field_path_and_parents(p.path) if k in lines), "")
            line = lines.get(key)
            return f"{path}:{line}" if line else path

        more = len(problems) - len(shown)
        tail = [f"{path}: ... and {more} more problem(s) not shown"] if more > 0 else []
        super().__init__("\n".join([*(f"{where(p)}: {p}" for p in shown), *tail]))


class ReleaseMismatch(ConfigError):
    """A release in Redis whose content doesn't match the hash a task carries."""


class RolloutNotSucceeded(OrchestratorError):
    """The rollout ended in another state than succeeded (exit 1)."""


class Detached(OrchestratorError):
    """Ctrl-C (or SIGTERM) on an attached CLI: the rollout goes on without it."""

    exit_code = 130


class LeaseHeld(DeployError):
    """Another rollout holds the box type."""

    exit_code = 3


class Frozen(LeaseHeld):
    """The box type is frozen (`lock acquire`): nothing may deploy it until `lock release`."""


class HookFailed(DeployError):
    """A coordinator hook (hooks/pre-rollout) exited non-zero or could not run."""


class MigrationFailed(DeployError):
    """box.yml's one-off task failed (or ran past its deadline); nothing was swapped."""


class PreflightFailed(DeployError):
    """Some boxes can't take the release; nothing was changed."""


class OutputFailed(OrchestratorError):
    """The results could not be written to standard output: a full disk, a closed stdout."""


class ReaderGone(Exception):  # noqa: N818 (not an error: the reader had enough, `| head`)
    """Standard output's reader went away: the command ends quietly, as SIGPIPE ends one."""

    exit_code = 141  # 128 + SIGPIPE: what a shell reports for `yes | head`


class InjectedFault(RuntimeError):
    """Raised on purpose (ORCHESTRATOR_FAULT_STEP) to prove that escaped errors are rescued.

    Not an OrchestratorError: it must escape the step protocol to reach the rescue errback.
    """
