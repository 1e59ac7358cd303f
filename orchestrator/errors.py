"""Our exception tree; library errors are translated into it where they enter.

OrchestratorError
├── ConfigError              bad box.yml / fleet.yml / settings / CLI input (exit 2)
│   └── IllegalTransition    a rollout can't make that move from its state (state.py)
├── ServiceUnavailable       Redis, Docker, the registry or AWS does not answer
├── RolloutNotSucceeded      a rollout (or a check like `status`) ended other than ok
└── DeployError              a deploy step could not do its job (exit 1)
    ├── HealthCheckFailed    new containers never proved healthy
    ├── LoadBalancerError    leaving or joining a load balancer failed
    ├── RuntimeFailure       the container runtime refused an action
    │   └── RegistryAuthFailed   a registry refused a pull: no or wrong credentials
    ├── LeaseHeld            another rollout holds the box type
    ├── LeaseLost            this rollout no longer owns its box type
    └── ProvisioningFailed   AWS refused a change `boxtype create/scale/delete` asked for
"""

from __future__ import annotations


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


class RolloutNotSucceeded(OrchestratorError):
    """The rollout ended in another state than succeeded (exit 1)."""


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


class LeaseHeld(DeployError):
    """Another rollout holds the box type: its id, state, age and reason are named."""


class LeaseLost(DeployError):
    """The rollout no longer owns the box type's lease."""


class ProvisioningFailed(DeployError):
    """AWS refused a change to a box type's template, group, policies or security group."""
