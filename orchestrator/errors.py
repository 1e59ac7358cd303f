"""Our exception tree; library errors are translated into it where they enter.

OrchestratorError
├── ConfigError              bad box.yml / fleet.yml / settings / CLI input (exit 2)
├── ServiceUnavailable       Redis, Docker, the registry or AWS does not answer
└── DeployError              a deploy step could not do its job (exit 1)
    ├── HealthCheckFailed    new containers never proved healthy
    ├── LoadBalancerError    leaving or joining a load balancer failed
    ├── RuntimeFailure       the container runtime refused an action
    │   └── RegistryAuthFailed   a registry refused a pull: no or wrong credentials
    ├── StartFailed          new containers did not start or prove healthy; none is left
    ├── SecretUnavailable    a secret reference could not be resolved (names the reference)
    ├── LeaseLost            this rollout no longer owns its box type
    └── ProvisioningFailed   AWS refused a change `boxtype create/scale/delete` asked for

InjectedFault (a RuntimeError, outside the tree on purpose) is raised only by a test hook.
"""

from __future__ import annotations


class OrchestratorError(Exception):
    """Base of every error this project raises on purpose."""

    exit_code = 1


class ConfigError(OrchestratorError):
    """Input a person must fix: it names the file, the field path and what to write."""

    exit_code = 2


class ServiceUnavailable(OrchestratorError):
    """A service we depend on (Redis, Docker, a registry, AWS) did not answer."""


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


class LeaseLost(DeployError):
    """The rollout no longer owns the box type's lease."""


class ProvisioningFailed(DeployError):
    """AWS refused a change to a box type's template, group, policies or security group."""


class InjectedFault(RuntimeError):
    """Raised on purpose (ORCHESTRATOR_FAULT_STEP) to prove that escaped errors are rescued.

    Not an OrchestratorError: it must escape the step protocol to reach the rescue errback.
    """
