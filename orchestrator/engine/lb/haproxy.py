"""HAProxy adapter: drain, maint and ready through the runtime API's unix socket."""

from __future__ import annotations

import csv
import socket
from dataclasses import dataclass

from orchestrator.engine.lb.base import MemberState, poll_state
from orchestrator.errors import ConfigError, LoadBalancerError, ServiceUnavailable
from schemas.onbox import HAPROXY_NAME_RE

# The runtime API is a local socket answering in well under a millisecond: poll it often. At
# the 0.2 s that suits cloud APIs, a drain that found a request in flight cost 0.2 s of the
# box's time out of service (benchmarks/peer.py, one box in three under traffic).
POLL_INTERVAL = 0.02

# srv_admin_state bits (HAProxy's SRV_ADMF_*): any of them keeps the server out of balancing.
ADMIN_FLAGS = {
    0x01: "MAINT",  # forced by the runtime API
    0x02: "IMAINT",  # inherited from a tracked server
    0x04: "CMAINT",  # `disabled` in the configuration
    0x08: "DRAIN",  # forced by the runtime API
    0x10: "IDRAIN",  # inherited from a tracked server
    0x20: "RMAINT",  # DNS resolution failed
    0x40: "HMAINT",  # address changed by the CLI
}
ADMIN_MAINT = 0x01
ADMIN_DRAIN = 0x08
OP_STATES = {0: "stopped", 1: "starting", 2: "running", 3: "stopping"}
OP_RUNNING = 2

# The CLI splits commands on ';' and words on blanks: the one rule `validate` also checks.
_SAFE_NAME = HAPROXY_NAME_RE


@dataclass(frozen=True)
class ServerStatus:
    """One server's row from `show servers state` joined with its `show stat` counters."""

    op_state: int
    admin_state: int
    status: str  # `show stat` status: UP, DOWN, MAINT, DRAIN, "UP 1/2", ...
    scur: int  # current sessions
    qcur: int  # requests queued for this server

    def describe(self) -> str:
        flags = [label for bit, label in ADMIN_FLAGS.items() if self.admin_state & bit]
        op = OP_STATES.get(self.op_state, str(self.op_state))
        return f"{self.status} (op={op}, admin={'|'.join(flags) or 'none'}, scur={self.scur})"


class HAProxyLB:
    """One backend of a running HAProxy; a member is a server name (by default the box id)."""

    def __init__(
        self,
        socket_path: str,
        backend: str,
        server: str | None = None,
        *,
        io_timeout: float = 5.0,
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        for label, value in (("backend", backend), ("server", server)):
            if value is not None and not _SAFE_NAME.match(value):
                raise ConfigError(
                    f"haproxy {label} name {value!r} has characters HAProxy's CLI "
                    "would split on: use letters, digits and _.:@-"
                )
        self.socket_path = socket_path
        self.backend = backend
        # A box whose HAProxy server is not named after its box id names it here.
        self.server = server
        self.name = f"haproxy backend {backend}"
        self._io_timeout = io_timeout
        self._poll_interval = poll_interval

    def leave(self, member: str) -> None:
        srv = self._server(member)
        status = self._status(srv)
        # `state drain` on a server in maint would take it out of maint and restart its
        # checks: a server already out (or on its way out) is left as it is.
        if status.admin_state & (ADMIN_MAINT | ADMIN_DRAIN):
            return
        self._set_state(srv, "drain")

    def wait_drained(self, member: str, timeout: float) -> None:
        srv = self._server(member)

        def drained(state: MemberState) -> bool:
            return state.sessions == 0 and not state.in_service

        def probe() -> MemberState:
            status = self._status(srv)
            if not status.admin_state & (ADMIN_MAINT | ADMIN_DRAIN):
                # Waiting would end when traffic happens to pause, not when it stops.
                raise LoadBalancerError(
                    f"{self.name}: {srv} is not draining (state: {status.describe()}); "
                    "call leave first"
                )
            return self._member_state(srv, status, sessions=status.scur + status.qcur)

        poll_state(self.name, srv, "drained", probe, drained, timeout, self._poll_interval)
        # Maint stops health checks, so the swap's gap is not seen as a failure and the
        # server is not put back UP by a check before the caller joins it.
        self._set_state(srv, "maint")

    def join(self, member: str) -> None:
        self._set_state(self._server(member), "ready")

    def wait_in_service(self, member: str, timeout: float) -> None:
        srv = self._server(member)
        poll_state(
            self.name,
            srv,
            "in service",
            lambda: self.state(srv),
            lambda s: s.in_service,
            timeout,
            self._poll_interval,
        )

    def members(self) -> list[MemberState]:
        out = []
        for row in self._server_rows():
            op, admin = int(row["srv_op_state"]), int(row["srv_admin_state"])
            serving = op == OP_RUNNING and admin == 0
            port = int(row["srv_port"]) if row.get("srv_port", "").isdigit() else None
            raw = f"op {op} admin {admin}"
            out.append(MemberState(row["srv_name"], serving, raw, port=port))
        return out

    def state(self, member: str) -> MemberState:
        srv = self._server(member)
        return self._member_state(srv, self._status(srv))

    def member_port(self, member: str) -> int | None:
        """The port HAProxy sends `member`'s new requests to now."""
        row = self._row(self._server(member))
        return int(row["srv_port"]) if row.get("srv_port", "").isdigit() else None

    def move(self, member: str, port: int, check_port: int | None = None) -> None:
        """New requests go to `port` at once; those in flight finish where they are. The
        server keeps its state (never DRAIN or MAINT): it stays in service throughout."""
        srv = self._server(member)
        addr = self._row(srv)["srv_addr"]
        reply = self._command(f"set server {self.backend}/{srv} addr {addr} port {port}")
        if "changed" not in reply and "No need" not in reply:
            raise LoadBalancerError(f"{self.name}: move {srv} to {port} refused: {reply.strip()}")
        if check_port:
            # A configured check port is not moved with the address: without this the check
            # keeps probing the old containers and marks the server DOWN once they stop.
            reply = self._command(f"set server {self.backend}/{srv} check-port {check_port}")
            if reply.strip():
                raise LoadBalancerError(f"{self.name}: check-port {srv} refused: {reply.strip()}")

    def check_port(self, member: str) -> int | None:
        """The health check's own port, when one is configured (else it follows the server)."""
        raw = self._row(self._server(member)).get("srv_check_port", "0")
        return int(raw) if raw.isdigit() and int(raw) else None

    def wait_moved(self, member: str, old_port: int, timeout: float) -> None:
        """Block until no session is still on `old_port` (`scur` counts both ports, `show
        sess all` names each session's own destination); LoadBalancerError at the deadline."""
        srv = self._server(member)
        addr = f"{self._row(srv)['srv_addr']}:{old_port}"

        def probe() -> MemberState:
            n = self.sessions_at(srv, addr)
            return MemberState(srv, True, f"{n} session(s) still on {addr}", sessions=n)

        poll_state(self.name, srv, "off its old port", probe, lambda s: s.sessions == 0,
                   timeout, self._poll_interval)

    def sessions_at(self, srv: str, addr: str) -> int:
        """Sessions of server `srv` whose connection goes to `addr` (ip:port)."""
        wanted = f"server={srv} "
        count = 0
        for line in self._command("show sess all").splitlines():
            line = line.strip()
            if line.startswith(wanted) and line.endswith(f" addr={addr}"):
                count += 1
        return count

    def server_stats(self) -> list[dict[str, str]]:
        """Every server row of the backend's `show stat` (counters: hrsp_5xx, eresp, …)."""
        reply = self._command(f"show stat {self.backend} 4 -1")
        if not reply.startswith("# "):
            raise LoadBalancerError(f"{self.name}: show stat failed: {reply.strip()}")
        rows = csv.DictReader(reply[2:].splitlines())
        return [r for r in rows if r.get("pxname") == self.backend]

    # -- the runtime API --------------------------------------------------------------------

    def _server(self, member: str) -> str:
        srv = self.server or member
        if not _SAFE_NAME.match(srv):
            raise LoadBalancerError(f"{self.name}: server name {srv!r} is not a valid name")
        return srv

    def _member_state(
        self, srv: str, status: ServerStatus, sessions: int | None = None
    ) -> MemberState:
        return MemberState(
            member=srv,
            in_service=status.op_state == OP_RUNNING and status.admin_state == 0,
            raw=status.describe(),
            sessions=status.scur if sessions is None else sessions,
        )

    def _set_state(self, srv: str, state: str) -> None:
        reply = self._command(f"set server {self.backend}/{srv} state {state}")
        if reply.strip():
            raise LoadBalancerError(f"{self.name}: set {srv} {state} refused: {reply.strip()}")

    def _status(self, srv: str) -> ServerStatus:
        admin = self._servers_state(srv)
        counters = self._stat_row(srv)
        return ServerStatus(
            op_state=admin[0],
            admin_state=admin[1],
            status=counters.get("status", ""),
            scur=_int(counters.get("scur")),
            qcur=_int(counters.get("qcur")),
        )

    def _server_rows(self) -> list[dict[str, str]]:
        reply = self._command(f"show servers state {self.backend}")
        lines = reply.splitlines()
        header = next((line for line in lines if line.startswith("# ")), None)
        if header is None:
            raise LoadBalancerError(f"{self.name}: show servers state failed: {reply.strip()}")
        columns = header[2:].split()
        # Skip the format version line and blanks.
        return [
            dict(zip(columns, line.split(), strict=False))
            for line in lines
            if line and not line.startswith("#") and " " in line
        ]

    def _servers_state(self, srv: str) -> tuple[int, int]:
        row = self._row(srv)
        return int(row["srv_op_state"]), int(row["srv_admin_state"])

    def _row(self, srv: str) -> dict[str, str]:
        for row in self._server_rows():
            if row.get("srv_name") == srv:
                return row
        raise LoadBalancerError(f"{self.name}: no server {srv!r} in backend {self.backend}")

    def _stat_row(self, srv: str) -> dict[str, str]:
        # type 4 = servers only; the proxy filter keeps the reply small on a big config.
        reply = self._command(f"show stat {self.backend} 4 -1")
        if not reply.startswith("# "):
            raise LoadBalancerError(f"{self.name}: show stat failed: {reply.strip()}")
        rows = csv.DictReader(reply[2:].splitlines())
        for row in rows:
            if row.get("pxname") == self.backend and row.get("svname") == srv:
                return row
        raise LoadBalancerError(f"{self.name}: no server {srv!r} in backend {self.backend}")

    def _command(self, command: str) -> str:
        # One command per connection: HAProxy answers and closes, nothing to keep in sync.
        chunks: list[bytes] = []
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self._io_timeout)
                sock.connect(self.socket_path)
                sock.sendall(command.encode() + b"\n")
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        except OSError as exc:
            raise ServiceUnavailable(
                f"{self.name}: runtime API at {self.socket_path} does not answer "
                f"({command.split()[0]} {command.split()[1]}): {exc}"
            ) from exc
        return b"".join(chunks).decode(errors="replace")


def _int(value: str | None) -> int:
    return int(value) if value else 0
