"""Every step a chain can name, by task name; the contract test checks it against TaskName."""

from __future__ import annotations

from schemas.contract import TaskName
from worker.steps.apps import pull, restore, swap
from worker.steps.lb import join_lb, leave_lb
from worker.steps.protocol import Body
from worker.steps.rollout import claim, finish
from worker.steps.services import ensure_services

STEPS: dict[TaskName, Body] = {
    TaskName.PULL: pull,
    TaskName.LEAVE_LB: leave_lb,
    TaskName.SWAP: swap,
    TaskName.RESTORE: restore,
    TaskName.JOIN_LB: join_lb,
    TaskName.ENSURE_SERVICES: ensure_services,
    TaskName.CLAIM: claim,
    TaskName.FINISH: finish,
}
