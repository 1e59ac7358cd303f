"""Two notifiers follow the rollouts: every lifecycle event reaches a webhook and an SQS queue
subscribed to an SNS topic exactly once, and hooks/post-rollout runs once.

moto stands in for SSM (the webhook URL, a secret reference), SNS and SQS; it delivers SNS to
SQS itself. It cannot prove delivery retries against a real SNS endpoint.
"""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from devstack.moto import DUMMY_CREDENTIALS
from schemas.contract import Keys
from tests.harness.aws_fx import AwsAccount
from tests.harness.common import wait_for
from tests.harness.redis_fx import ProductRedis
from tests.harness.rollout_fx import Fleet


class Receiver(ThreadingHTTPServer):
    bodies: list[dict[str, Any]]


class Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        length = int(self.headers["Content-Length"])
        self.server.bodies.append(json.loads(self.rfile.read(length)))  # type: ignore[attr-defined]
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(("127.0.0.1", 0), Hook)
    server.bodies = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def aws_env(aws: AwsAccount) -> dict[str, str]:
    return {"ORCHESTRATOR_AWS_ENDPOINT_URL": aws.endpoint_url,
            "ORCHESTRATOR_AWS_REGION": aws.region,
            "AWS_ACCESS_KEY_ID": DUMMY_CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": DUMMY_CREDENTIALS["aws_secret_access_key"]}


def sqs_bodies(sqs: Any, queue: str) -> list[dict[str, Any]]:
    out = []
    while True:
        got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        if not got.get("Messages"):
            return out
        for m in got["Messages"]:
            out.append(json.loads(json.loads(m["Body"])["Message"]))
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])


def test_two_notifiers_deliver_each_lifecycle_event_once(
    fleet_factory: Callable[..., Fleet], product_redis: ProductRedis, aws: AwsAccount,
    receiver: Receiver, tmp_path: Path,
) -> None:
    ssm, sns, sqs = aws.client("ssm"), aws.client("sns"), aws.client("sqs")
    url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    ssm.put_parameter(Name="/orch/webhook", Value=url, Type="SecureString")
    topic = sns.create_topic(Name="deploys")["TopicArn"]
    queue = sqs.create_queue(QueueName="deploys")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    fleet_yml = tmp_path / "fleet.yml"
    fleet_yml.write_text("load_balancer: haproxy\nnotifications:\n"
                         "  - webhook: {secret: 'ssm:/orch/webhook'}\n"
                         f"  - sns: {topic}\n    events: [started, succeeded, halted]\n")
    fleet = fleet_factory(2)
    fleet.env.update({**aws_env(aws), "ORCHESTRATOR_FLEET_FILE": str(fleet_yml),
                      "ORCHESTRATOR_FLEET_SOURCE": "heartbeats"})
    hooks = fleet.boxes_dir.parent / "hooks"
    hooks.mkdir()
    ran = tmp_path / "post-rollout.log"
    hook = hooks / "post-rollout"
    hook.write_text(f'#!/bin/sh\necho "$ORCHESTRATOR_ROLLOUT_ID $ORCHESTRATOR_OUTCOME" >> {ran}\n')
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR)
    notifiers = [subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "notify",
                                   "--interval", "0.2"], env=fleet.env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
    keys = Keys(product_redis.prefix)
    try:
        wait_for(lambda: product_redis.client.hlen(keys.notifiers()) == 2, "two notifiers", 30)
        fleet.write(f"{fleet.images.repo}:v1")
        run = fleet.cli("rollout", fleet.box_type, "--reason", "v1", "--json")
        assert run.returncode == 0, run.stderr
        rid = json.loads(run.stdout.splitlines()[-1])["summary"]["rollout"]
        wait_for(lambda: product_redis.client.hgetall(keys.notified(rid)) ==
                 {"started": "done", "succeeded": "done"}, "both events handled", 30)
    finally:
        for proc in notifiers:
            proc.terminate()
        outs = [proc.communicate(timeout=30) for proc in notifiers]
    assert all(p.returncode == 0 for p in notifiers), outs
    mine = [b for b in receiver.bodies if b["rollout"] == rid]
    assert sorted(b["event"] for b in mine) == ["started", "succeeded"], receiver.bodies
    assert all(b["text"].startswith(f"{fleet.box_type}: rollout {rid}") for b in mine)
    queued = [b for b in sqs_bodies(sqs, queue) if b["rollout"] == rid]
    assert sorted(b["event"] for b in queued) == ["started", "succeeded"], queued
    assert ran.read_text().splitlines() == [f"{rid} succeeded"]
    assert product_redis.client.hlen(keys.notifiers()) == 0  # both said goodbye


def test_an_attached_rollout_notifies_its_own_events_however_long_its_stream(
    fleet_factory: Callable[..., Fleet], product_redis: ProductRedis, receiver: Receiver,
    tmp_path: Path,
) -> None:
    """No notifier runs: the CLI that runs the rollout sends its started and succeeded, even
    when the type's stream holds more than a read's worth of other rollouts' entries before
    them (a poll from a day back used to read only the oldest 1,000, and send nothing)."""
    secret = tmp_path / "webhook"
    secret.write_text(f"http://127.0.0.1:{receiver.server_address[1]}/hook\n")
    fleet_yml = tmp_path / "fleet.yml"
    fleet_yml.write_text("load_balancer: haproxy\nnotifications:\n"
                         f"  - webhook: {{secret: 'file:{secret}'}}\n")
    fleet = fleet_factory(1)
    fleet.env.update({"ORCHESTRATOR_FLEET_FILE": str(fleet_yml),
                      "ORCHESTRATOR_FLEET_SOURCE": "heartbeats"})
    keys = Keys(product_redis.prefix)
    pipe = product_redis.client.pipeline(transaction=False)
    for i in range(2500):  # earlier rollouts' steps, in the last day
        pipe.xadd(keys.events(fleet.box_type), {"rollout": "web-old", "box": f"b{i}",
                                               "step": "deploy.swap", "phase": "end"})
    pipe.execute()
    assert product_redis.client.hlen(keys.notifiers()) == 0
    fleet.write(f"{fleet.images.repo}:v1")
    run = fleet.cli("rollout", fleet.box_type, "--reason", "v1", "--json")
    assert run.returncode == 0, run.stderr
    rid = json.loads(run.stdout.splitlines()[-1])["summary"]["rollout"]
    assert product_redis.client.hgetall(keys.notified(rid)) == {
        "started": "done", "succeeded": "done"}
    mine = [b for b in receiver.bodies if b["rollout"] == rid]
    assert sorted(b["event"] for b in mine) == ["started", "succeeded"], receiver.bodies


def test_a_running_notifier_follows_a_new_box_types_stream_from_its_first_rollout(
    product_redis: ProductRedis,
) -> None:
    """The full scan for streams runs every 30 s; a type's first lifecycle start names it
    at once (a new type's first rollout was announced up to 30 s late)."""
    from orchestrator.engine.events import Events
    from orchestrator.notifier import Deliver, Notifier
    from schemas.fleet import FleetSettings

    keys = Keys(product_redis.prefix)
    client = product_redis.client
    notifier = Notifier(client, keys, FleetSettings(), Deliver(str, lambda: None),  # type: ignore[arg-type]
                        hooks=lambda ev, r: None)
    assert "newtype" not in notifier.box_types()  # the scan is done: the next in 30 s
    events = Events(client, keys)  # type: ignore[arg-type]
    events.emit("newtype", rollout="newtype-r1", box="b1", step="deploy.pull", phase="start")
    assert "newtype" not in notifier.box_types()  # a step alone names no type: no lifecycle
    events.emit("newtype", rollout="newtype-r1", step="rollout", phase="start", reason="r")
    assert "newtype" in notifier.box_types()
    assert client.smembers(keys.event_types()) == {"newtype"}
