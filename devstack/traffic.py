"""A bounded, rate-capped HTTP request loop (loopback only) counting successes and failures."""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType

from devstack.net import assert_loopback

# Failure kinds, so a test can say which ones it expects.
HTTP_5XX = "http_5xx"
HTTP_OTHER = "http_other"  # a status that is neither 2xx nor 5xx
RESET = "reset"
REFUSED = "refused"
TIMEOUT = "timeout"
OTHER = "other"
MAX_SAMPLES = 20


@dataclass
class TrafficStats:
    """Counts of one loop so far (a copy: it does not change under the reader)."""

    ok: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    bodies: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)  # the first failures, described
    elapsed: float = 0.0

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    @property
    def total(self) -> int:
        return self.ok + self.failed

    def answers(self) -> Counter[str]:
        """Bodies without surrounding white space ("v2" for "v2\\n"): for tables."""
        out: Counter[str] = Counter()
        for body, count in self.bodies.items():
            out[body.strip()] += count
        return out

    def summary(self) -> str:
        return (f"{self.total} requests in {self.elapsed:.1f}s: {self.ok} ok, "
                f"failures {dict(self.failures)}, bodies {dict(self.bodies)}, "
                f"first failures {self.samples[:5]}")


class TrafficLoop:
    """`threads` clients, each at most `rate_per_thread` req/s, until a bound or stop()."""

    def __init__(
        self,
        url: str,
        threads: int = 4,
        rate_per_thread: float = 50.0,
        max_requests: int = 20_000,
        max_seconds: float = 60.0,
        timeout: float = 5.0,
    ) -> None:
        self.host, self.port, self.path = assert_loopback(url)
        if threads < 1 or rate_per_thread <= 0 or max_requests < 1 or max_seconds <= 0:
            raise ValueError("threads, rate, max_requests and max_seconds must be positive")
        self.url = url
        self.threads = threads
        self.rate_per_thread = rate_per_thread
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.timeout = timeout
        self._stats = TrafficStats()
        self._claimed = 0
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self._started_at = 0.0
        self._stopped_at: float | None = None
        self._crash: BaseException | None = None

    # -- control -------------------------------------------------------------------------

    def start(self) -> TrafficLoop:
        if self._workers:
            raise RuntimeError("a TrafficLoop runs once")
        self._started_at = time.monotonic()
        for i in range(self.threads):
            worker = threading.Thread(target=self._run, name=f"traffic-{i}", daemon=True)
            self._workers.append(worker)
            worker.start()
        return self

    def stop(self) -> TrafficStats:
        self._stop.set()
        for worker in self._workers:
            # A request in flight ends within the client timeout.
            worker.join(timeout=self.timeout + 5)
            if worker.is_alive():
                raise RuntimeError(f"traffic thread {worker.name} did not stop")
        with self._lock:
            if self._stopped_at is None:
                self._stopped_at = time.monotonic()
        if self._crash is not None:
            raise RuntimeError("a traffic thread crashed") from self._crash
        return self.stats

    def wait_total(self, count: int, timeout: float = 15.0) -> TrafficStats:
        """Block until `count` requests have completed in all (or the loop ended)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._stats.total < count and not self._finished():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{count} requests not done in {timeout:.1f}s: "
                                       f"{self._stats.summary()}")
                self._lock.wait(remaining)
        return self.stats

    @property
    def stats(self) -> TrafficStats:
        with self._lock:
            end = self._stopped_at if self._stopped_at is not None else time.monotonic()
            return TrafficStats(
                ok=self._stats.ok,
                failures=Counter(self._stats.failures),
                statuses=Counter(self._stats.statuses),
                bodies=Counter(self._stats.bodies),
                samples=list(self._stats.samples),
                elapsed=end - self._started_at if self._started_at else 0.0,
            )

    def __enter__(self) -> TrafficLoop:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the clients ---------------------------------------------------------------------

    def _finished(self) -> bool:
        return all(not w.is_alive() for w in self._workers)

    def _claim(self) -> bool:
        with self._lock:
            if self._claimed >= self.max_requests:
                return False
            self._claimed += 1
            return True

    def _run(self) -> None:
        try:
            interval = 1.0 / self.rate_per_thread
            deadline = self._started_at + self.max_seconds
            next_at = time.monotonic()
            while not self._stop.is_set() and time.monotonic() < deadline and self._claim():
                self._record(*self._request())
                next_at += interval
                # The rate cap; waiting on the event lets stop() end the wait at once.
                delay = next_at - time.monotonic()
                if delay > 0:
                    self._stop.wait(min(delay, max(0.0, deadline - time.monotonic())))
        except BaseException as exc:  # surfaced by stop(), not lost in a thread
            self._crash = exc
        finally:
            with self._lock:
                self._lock.notify_all()

    def _request(self) -> tuple[str | None, int | None, str, str]:
        """(failure kind or None, status, body, description)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            # A fresh connection per request: a client keep-alive race would be a failure
            # of the test client, not of the swap under test.
            conn.request("GET", self.path, headers={"Connection": "close"})
            response = conn.getresponse()
            body = response.read().decode(errors="replace")
        except ConnectionRefusedError as exc:
            return REFUSED, None, "", repr(exc)
        except (ConnectionResetError, BrokenPipeError) as exc:  # incl. RemoteDisconnected
            return RESET, None, "", repr(exc)
        except TimeoutError as exc:
            return TIMEOUT, None, "", repr(exc)
        except (OSError, http.client.HTTPException) as exc:
            return OTHER, None, "", repr(exc)
        finally:
            conn.close()
        status = response.status
        if 200 <= status < 300:
            return None, status, body, ""
        kind = HTTP_5XX if status >= 500 else HTTP_OTHER
        return kind, status, body, f"HTTP {status}: {body[:80]!r}"

    def _record(self, kind: str | None, status: int | None, body: str, what: str) -> None:
        with self._lock:
            if status is not None:
                self._stats.statuses[status] += 1
            if kind is None:
                self._stats.ok += 1
                self._stats.bodies[body[:100]] += 1
            else:
                self._stats.failures[kind] += 1
                if len(self._stats.samples) < MAX_SAMPLES:
                    elapsed = time.monotonic() - self._started_at
                    self._stats.samples.append(f"{elapsed:.2f}s {kind}: {what}")
            self._lock.notify_all()
