"""Many sends at once (preflight, the secrets query) go to a real broker Redis together: each
message lands on its box's queue with its task-sent event, no queue is declared first, and a
broker lost before they went is one ServiceUnavailable."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack.redis import RedisServer
from orchestrator.engine.celery_app import NO_DECLARE, batched, make_celery
from orchestrator.errors import ServiceUnavailable
from schemas.contract import queue_for
from tests.harness.common import started

pytestmark = pytest.mark.integration


def test_a_batch_lands_every_message_on_its_queue_and_declares_none(tmp_path: Path) -> None:
    with started(RedisServer(tmp_path)) as server:
        app = make_celery(f"{server.url}/0")
        boxes = [f"b{i:03d}" for i in range(300)]
        before = server.commandstats()
        with batched(app) as producer:
            for box in boxes:
                app.send_task("deploy.preflight", args=({"box_id": box},), queue=queue_for(box),
                              producer=producer, **NO_DECLARE)
        used = server.commandstats() - before
        client = server.client()
        assert [client.llen(queue_for(b)) for b in boxes] == [1] * len(boxes)
        assert used["lpush"] == len(boxes) and used["publish"] == len(boxes), used  # task-sent
        assert used["sadd"] == 0 and used["llen"] == 0, used  # no declare: nothing routes by it
        app.close()


def test_a_broker_lost_before_the_batch_went_is_service_unavailable(tmp_path: Path) -> None:
    with started(RedisServer(tmp_path)) as server:
        app = make_celery(f"{server.url}/0")
        app.conf.broker_connection_max_retries = 0
        with (pytest.raises(ServiceUnavailable, match="the broker did not take"),
              batched(app) as producer):
            app.send_task("deploy.preflight", args=({},), queue=queue_for("b1"),
                          producer=producer, **NO_DECLARE)
            server.stop()
        app.close()
