"""TrafficLoop's own guarantees: loopback only, bounded in count and time, failures classified."""

from __future__ import annotations

import time

import pytest

from devstack.net import assert_loopback
from devstack.traffic import REFUSED, TrafficLoop
from tests.harness.common import free_port


@pytest.mark.parametrize("url", [
    "http://10.0.0.1/", "http://example.com/", "https://127.0.0.1/", "http://[::2]:80/",
])
def test_only_loopback_urls(url: str) -> None:
    with pytest.raises(ValueError, match="only sent to http:// on loopback"):
        TrafficLoop(url)


def test_loopback_forms() -> None:
    assert assert_loopback("http://localhost:8080/x?y=1") == ("localhost", 8080, "/x?y=1")
    assert assert_loopback("http://127.0.0.12") == ("127.0.0.12", 80, "/")
    assert assert_loopback("http://[::1]:81/") == ("::1", 81, "/")


def test_stops_by_itself_at_max_requests_and_classifies_refused() -> None:
    # Nothing listens on this port: every request is refused, at once.
    loop = TrafficLoop(f"http://127.0.0.1:{free_port()}/", threads=3, rate_per_thread=500,
                       max_requests=25, max_seconds=10)
    with loop:
        loop.wait_total(25, timeout=10)
    stats = loop.stats
    assert stats.total == 25 and stats.ok == 0
    assert stats.failures == {REFUSED: 25}
    assert len(stats.samples) == 20 and "ConnectionRefusedError" in stats.samples[0]


def test_stops_by_itself_at_max_seconds_and_caps_the_rate() -> None:
    loop = TrafficLoop(f"http://127.0.0.1:{free_port()}/", threads=2, rate_per_thread=20,
                       max_seconds=0.5)
    started = time.monotonic()
    loop.start()
    loop.wait_total(10_000, timeout=5)  # returns when the loop ends by itself
    took = time.monotonic() - started
    stats = loop.stop()
    assert 0.4 < took < 2.0
    # 2 threads x 20/s x 0.5 s = 20, plus the first request of each thread.
    assert 10 <= stats.total <= 24, stats.summary()
