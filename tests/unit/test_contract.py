"""The worker registers exactly the contract's task names: an unknown name hangs a chain."""

from __future__ import annotations

from orchestrator.engine.celery_app import make_celery
from schemas.contract import TaskName
from worker.tasks import register_tasks


def test_worker_registers_exactly_the_contract_task_names() -> None:
    app = make_celery("redis://127.0.0.1:1/0")
    # Celery adds `shared` tasks of other apps in this process to every app: a baseline.
    before = set(app.tasks)
    register_tasks(app, lambda: None)  # type: ignore[arg-type, return-value]
    assert set(app.tasks) - before == {t.value for t in TaskName}
    app.close()


def test_messages_are_json_only() -> None:
    app = make_celery("redis://127.0.0.1:1/0")
    assert app.conf.accept_content == ["json"]
    assert app.conf.task_serializer == "json" and app.conf.result_serializer == "json"
    assert app.conf.task_acks_late and app.conf.worker_prefetch_multiplier == 1
    app.close()
