"""Redis Sentinel on loopback: a master, its replicas and three sentinels, as local processes."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import redis

from devstack.net import LOCALHOST, free_port
from devstack.process import Service, find_binary, wait_for
from devstack.redis import RedisServer
from devstack.tls import Certs, TlsRedis

MASTER_NAME = "mymaster"
# The master sends its first full sync at once (Redis waits 5 s by default for more replicas).
_SYNC_NOW = ["--repl-diskless-sync-delay", "0"]


@dataclass(frozen=True)
class SentinelTls:
    """Every server and sentinel on TLS only (certificates from `certs`' CA), replication and
    the sentinels' links too; the servers' `users` (name -> ACL rules) as TlsRedis's, `admin`
    for replication and the sentinels; the sentinels ask `sentinel_password` (requirepass)."""

    certs: Certs
    users: Mapping[str, Sequence[str]]
    admin_password: str = field(repr=False)
    sentinel_password: str = field(repr=False)

    def conf(self) -> list[str]:
        c = self.certs
        return [f"tls-cert-file {c.cert}", f"tls-key-file {c.key}", f"tls-ca-cert-file {c.ca}",
                "tls-auth-clients no", "tls-replication yes",
                f"requirepass {self.sentinel_password}",
                f"sentinel sentinel-pass {self.sentinel_password}",
                f"sentinel auth-user {MASTER_NAME} admin",
                f"sentinel auth-pass {MASTER_NAME} {self.admin_password}"]

    def server(self, workdir: Path, name: str, args: Sequence[str]) -> RedisServer:
        # Any server may become a replica after a failover: each knows how to sync.
        extra = [*args, "--tls-replication", "yes", "--masteruser", "admin",
                 "--masterauth", self.admin_password]
        return TlsRedis(workdir, self.certs, self.users, admin_password=self.admin_password,
                        name=name, extra=extra)


class SentinelNode(Service):
    """`redis-server FILE --sentinel` watching `master_name`. Sentinel rewrites FILE (its id,
    epochs, the replicas it found): a fresh file per node, kept across restart()."""

    stop_stage = 2

    def __init__(self, workdir: Path, name: str, master_port: int, *, quorum: int = 2,
                 down_after_ms: int = 1000, failover_timeout_ms: int = 3000,
                 tls: SentinelTls | None = None) -> None:
        super().__init__(workdir, name)
        self.tls = tls
        self.port = free_port()
        self.master_port = master_port
        self.quorum, self.down_after_ms = quorum, down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.conf = self.workdir / f"{name}.conf"

    def prepare(self) -> None:
        if self.conf.exists():
            return  # what sentinel learned (epochs, the current master) survives a restart
        port = [f"port {self.port}"] if self.tls is None else [
            "port 0", f"tls-port {self.port}", *self.tls.conf()]
        self.conf.write_text("\n".join([
            *port,
            f"bind {LOCALHOST}",
            f"dir {self.workdir}",
            f"sentinel monitor {MASTER_NAME} {LOCALHOST} {self.master_port} {self.quorum}",
            f"sentinel down-after-milliseconds {MASTER_NAME} {self.down_after_ms}",
            f"sentinel failover-timeout {MASTER_NAME} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {MASTER_NAME} 1",
            "",
        ]))

    def argv(self) -> list[str]:
        return [find_binary("redis-server"), str(self.conf), "--sentinel"]

    def client(self) -> redis.Redis[str]:
        tls: dict[str, Any] = {} if self.tls is None else {
            "ssl": True, "ssl_ca_certs": str(self.tls.certs.ca),
            "password": self.tls.sentinel_password}
        return redis.Redis(LOCALHOST, self.port, socket_timeout=0.5, decode_responses=True,
                           **tls)

    def ready(self) -> bool:
        with self.client() as c:
            return bool(c.ping())

    @property
    def url(self) -> str:
        return f"{LOCALHOST}:{self.port}"


class SentinelStack:
    """A master, `replicas` replicas (durable, like RedisServer) and three sentinels (quorum
    2). `url(db)` is the one URL form both the broker and the state take; `master()` is the
    RedisServer sentinels name now, `kill_master()` a crash; `promotion_seconds` after it."""

    def __init__(self, workdir: Path, *, replicas: int = 1, sentinels: int = 3,
                 down_after_ms: int = 1000, tls: SentinelTls | None = None) -> None:
        self.workdir = Path(workdir)
        self.tls = tls
        self.servers = [self._server("redis-master", _SYNC_NOW)]
        first = self.servers[0].port
        self.servers += [
            self._server(f"redis-replica{i}", [*_SYNC_NOW, "--replicaof", LOCALHOST, str(first)])
            for i in range(1, replicas + 1)
        ]
        self.sentinels = [SentinelNode(self.workdir, f"sentinel{i}", first,
                                       down_after_ms=down_after_ms, tls=tls)
                          for i in range(1, sentinels + 1)]

    def _server(self, name: str, args: Sequence[str]) -> RedisServer:
        if self.tls is None:
            return RedisServer(self.workdir, name, args=args)
        return self.tls.server(self.workdir, name, args)

    def url(self, db: int = 0, password: str = "", user: str = "") -> str:
        """sentinel://, or with TLS sentinels:// and the sentinels' password (the CA is the
        client's ORCHESTRATOR_REDIS_CA setting)."""
        auth = f"{quote(user, safe='')}:{quote(password, safe='')}@" if password else ""
        hosts = ",".join(s.url for s in self.sentinels)
        if self.tls is None:
            return f"sentinel://{auth}{hosts}/{db}?master_name={MASTER_NAME}"
        return (f"sentinels://{auth}{hosts}/{db}?master_name={MASTER_NAME}"
                f"&sentinel_password={quote(self.tls.sentinel_password, safe='')}")

    def start(self, timeout: float = 30.0) -> Self:
        try:
            for server in self.servers:
                server.start(timeout)
            wait_for(self._replicas_linked, "every replica's link to the master up", timeout)
            for node in self.sentinels:
                node.start(timeout)
            wait_for(self._sentinels_agree, "the sentinels to know each other and the replicas",
                     timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for service in [*self.sentinels, *self.servers]:
            service.stop()

    def master_port(self) -> int | None:
        """The master's port as the first sentinel that answers says it."""
        for node in self.sentinels:
            if not node.running:
                continue
            try:
                with node.client() as c:
                    addr = c.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
            except redis.RedisError:
                continue
            if addr:
                return int(addr[1])
        return None

    def master(self) -> RedisServer:
        port = self.master_port()
        return next(s for s in self.servers if s.port == port)

    def kill_master(self, timeout: float = 30.0) -> tuple[RedisServer, float]:
        """kill -9 the master; wait until the sentinels name a replica instead. (the killed
        server, seconds from the kill to the sentinels' switch: the promotion time)."""
        old = self.master()
        killed = time.monotonic()
        old.kill9()
        wait_for(lambda: self.master_port() not in (None, old.port), "a replica promoted",
                 timeout, interval=0.01)
        return old, time.monotonic() - killed

    def wait_settled(self, timeout: float = 30.0) -> RedisServer:
        """After a restart of the old master: every sentinel names one master and every other
        server is its replica, in sync; that master. Usually the restarted server became a
        replica; a sentinel that saw it reboot before the switch can fail over back to it,
        the one server it can reach (seen about once in ten runs with down-after 1 s)."""
        return wait_for(self._settled, "one master the sentinels agree on, its replicas in sync",
                        timeout)

    def _settled(self) -> RedisServer:
        named: set[int | None] = set()
        for node in (n for n in self.sentinels if n.running):
            with node.client() as c:
                addr = c.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
            named.add(int(addr[1]) if addr else None)
        if len(named) != 1 or None in named:
            raise _Unsettled(f"sentinels name masters on ports {sorted(map(str, named))}")
        master = next(s for s in self.servers if s.port in named)
        views = {s.name: _replication(s) for s in self.servers if s is not master}
        if any(v != ("slave", master.port, "up") for v in views.values()):
            raise _Unsettled(f"master {master.name}; others (role, master port, link): {views}")
        return master

    def _replicas_linked(self) -> bool:
        return all(_linked(s) for s in self.servers[1:])

    def _sentinels_agree(self) -> bool:
        for node in self.sentinels:
            with node.client() as c:
                master: dict[str, Any] = c.execute_command("SENTINEL", "MASTER", MASTER_NAME)
            if int(master.get("num-other-sentinels", 0)) < len(self.sentinels) - 1:
                return False
            if int(master.get("num-slaves", 0)) < len(self.servers) - 1:
                return False
        return True

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class _Unsettled(Exception):
    """What is not settled yet: wait_for names the last one when it times out."""


def _replication(server: RedisServer) -> tuple[str, int | None, str | None]:
    with server.client(socket_timeout=0.5) as c:
        info = c.info("replication")
    port, link = info.get("master_port"), info.get("master_link_status")
    return info.get("role", "?"), None if port is None else int(port), link


def _linked(server: RedisServer) -> bool:
    role, _, link = _replication(server)
    return role == "slave" and link == "up"
