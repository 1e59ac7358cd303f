"""Flower as a person sees it: the Tasks page in a real headless Chromium after a rollout."""

from __future__ import annotations

import json
import shutil
import socket
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.flower import Flower
from devstack.net import http
from tests.harness.common import need, need_binary, started, wait_for
from tests.harness.rollout_fx import PORT, Fleet

BOX_YML = """\
apps:
  web:
    elb: web
    lb_kind: haproxy
    image: {image}
    containers:
      web:
        command: >-
          sh -c 'mkdir -p /www2 && echo "$DB_PASSWORD" > /www2/index.html
          && echo ok > /www2/health && exec httpd -f -p 8080 -h /www2'
        ports: ["{port}:8080"]
        health: {{http: /health, interval: 0.1, timeout: 1, retries: 40}}
        env:
          DB_PASSWORD: {{secret: "file:{path}#DB_PASSWORD"}}
"""
ROWS_JS = """return Array.from(document.querySelectorAll('table tbody tr'))
  .map(r => Array.from(r.cells).map(c => c.textContent.trim()));"""
STEPS = ("deploy.pull", "deploy.claim", "deploy.leave_lb", "deploy.swap", "deploy.join_lb",
         "deploy.finish")
CHAIN = (*STEPS, "deploy.restore", "deploy.ensure_services")
STATES = ("SUCCESS", "FAILURE", "STARTED", "RECEIVED", "RETRY", "REVOKED")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Debian's chromium through its chromedriver (never Selenium Manager's download)."""
    driver_path = need_binary("chromedriver")
    need_binary("chromium")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        need(False, "selenium is not installed (pip install -e '.[dev]')")
        raise
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1600,1200", f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(arg)
    before = set(Path("/tmp").glob("org.chromium.Chromium.*"))
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "chromium", ignore_errors=True)
        # Each session leaves an empty directory of its own in /tmp (REAL-SERVICES-2).
        for left in set(Path("/tmp").glob("org.chromium.Chromium.*")) - before:
            shutil.rmtree(left, ignore_errors=True)


def test_flower_tasks_page_shows_every_box_and_no_secret(
    fleet_factory: Callable[..., Fleet], broker_url: str, browser: Any, tmp_path: Path,
) -> None:
    from selenium.webdriver.support.ui import Select

    secret = f"s3cr3t-{uuid.uuid4()}"
    env_file = tmp_path / "web.env"
    env_file.write_text(f"DB_PASSWORD={secret}\n")
    password = f"flower-{uuid.uuid4().hex[:12]}"
    with started(Flower(tmp_path, broker_url, user="orch", password=password)) as flower:
        # The product's visibility timeout: with the harness's 12 s (and 10 s a step), a loaded
        # machine may rightly send the rest of a chain as its own message after 2 s.
        fleet = fleet_factory(2, extra_env={"ORCHESTRATOR_VISIBILITY_TIMEOUT": "300"})
        nodes = {w.box_id: f"box-{w.box_id}@{socket.gethostname()}" for w in fleet.workers}
        for node in nodes.values():
            wait_for(lambda n=node: flower.sees_worker(n), f"flower receiving {node}'s events",
                     timeout=60)
        (fleet.boxes_dir / f"{fleet.box_type}.yml").write_text(BOX_YML.format(
            image=f"{fleet.images.repo}:v1", port=PORT, path=env_file))
        run = fleet.cli("rollout", fleet.box_type, "--reason", "flower")
        assert run.returncode == 0, run.stderr
        # The control: the value did reach the containers, so "absent" below can fail.
        assert secret in http(fleet.proxy.url).text

        rows: list[list[str]] = []

        def table() -> list[list[str]] | None:
            # Each row's cells as rendered (a long worker name wraps on screen, not in a cell).
            rows[:] = browser.execute_script(ROWS_JS)
            workers = {r[-1] for r in rows if r}
            return rows if set(nodes.values()) <= workers else None

        def loaded() -> list[list[str]] | None:
            # The page reads the task list once, as a person's reload would.
            browser.get(f"http://orch:{password}@127.0.0.1:{flower.port}/tasks")
            return wait_for(table, "rows", timeout=5) if table() is None else rows

        def complete() -> list[list[str]] | None:
            # Every box's steps, each by its readable name, in a final state.
            table()
            for node in nodes.values():
                mine = {(r[0], r[2]) for r in rows if r and r[-1] == node}
                if not all((step, "SUCCESS") in mine for step in STEPS):
                    return None
            return rows

        try:
            wait_for(loaded, "the Tasks page listing every box's worker", timeout=60)
            # Every row on one page, through the page-length menu a person would use.
            Select(browser.find_element("css selector", "select[name$='_length']")
                   ).select_by_visible_text("100")
            wait_for(complete, "every box's tasks on one page", timeout=30)
        except TimeoutError:
            pytest.fail(f"the Tasks page, as shown: {rows}\n{browser.page_source[:3000]}")
        browser.save_screenshot(str(tmp_path / "flower-tasks.png"))
        for node in nodes.values():
            mine = [r for r in rows if r and r[-1] == node]
            assert all(r[2] in STATES for r in mine), mine
        text = str(browser.find_element("tag name", "body").text)
        source = str(browser.page_source)
        assert secret not in source and secret not in text
        assert password not in source
        assert (tmp_path / "flower-tasks.png").stat().st_size > 10_000
        assert_one_message_a_box(flower, password, nodes.values())


def assert_one_message_a_box(flower: Flower, password: str, nodes: Iterable[str]) -> None:
    """Each box's chain ran in the message of its first step (worker/inline.py): every later
    step is that message's child. Sent by Celery one by one, each is its predecessor's."""
    reply = http(f"http://127.0.0.1:{flower.port}/api/tasks", auth=("orch", password))
    assert reply.status == 200, reply.text[:500]
    tasks = json.loads(reply.text)
    for node in nodes:
        mine = {t["name"]: (uid, t.get("parent_id")) for uid, t in tasks.items()
                if t.get("worker") == node and t.get("name") in CHAIN}
        first, _ = mine["deploy.pull"]
        assert {parent for name, (_, parent) in mine.items() if name != "deploy.pull"} == {
            first}, mine
