"""redis-server in the foreground on a loopback port, with its own data directory."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis

from devstack.net import LOCALHOST, free_port
from devstack.process import Service, find_binary

# As production should run it: an append-only file fsynced every second (no RDB snapshots).
DURABLE = ["--appendonly", "yes", "--appendfsync", "everysec"]
VOLATILE = ["--appendonly", "no"]


class RedisServer(Service):
    """Durable by default (`DURABLE`; `durable=False` keeps nothing); `args` are appended
    (later settings win). `kill9()` and `restart()` come back on the same port with the same
    data directory, so what the append-only file holds survives."""

    stop_stage = 2  # the broker: stopped after its clients

    def __init__(self, workdir: Path, name: str = "redis", *, port: int | None = None,
                 args: Sequence[str] = (), durable: bool = True, detach: bool = False,
                 password: str | None = None) -> None:
        super().__init__(workdir, name, detach=detach)
        self.port = port or free_port()
        self.data_dir = self.workdir / f"{name}-data"
        self.password = password  # AUTH for the default user (the demo runs with one)
        auth = ["--requirepass", password] if password else []
        self.args = [*(DURABLE if durable else VOLATILE), *auth, *args]

    def argv(self) -> list[str]:
        return [find_binary("redis-server"), "--port", str(self.port), "--bind", LOCALHOST,
                "--save", "", "--dir", str(self.data_dir), *self.args]

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        """Without a database: redis://[:password@]127.0.0.1:PORT (add /0, /1, ...)."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{LOCALHOST}:{self.port}"

    def client(self, db: int = 0, **kwargs: Any) -> redis.Redis[Any]:
        return redis.Redis.from_url(f"{self.url}/{db}", **kwargs)

    def ready(self) -> bool:
        with self.client(socket_timeout=0.5) as c:
            return bool(c.ping())

    def commandstats(self) -> Counter[str]:
        """Calls per command since the start (or CONFIG RESETSTAT)."""
        with self.client() as c:
            stats = c.info("commandstats")
        return Counter({k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()})
