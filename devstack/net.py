"""Loopback only: free ports, simulated boxes' addresses, and a small HTTP client for probes."""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import random
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

LOCALHOST = "127.0.0.1"


def free_port(host: str = LOCALHOST) -> int:
    """A port nothing listens on now (the kernel's pick; another process may take it later)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_free_on(hosts: Sequence[str], span: tuple[int, int] | None = None,
                 tries: int = 50) -> int:
    """A port free on every one of `hosts` (each simulated box publishes it on its address):
    the kernel's pick on the first, or a random one in [low, high) when `span` is given (to
    stay outside the ephemeral range, where outgoing connections take ports)."""
    rng = random.SystemRandom()
    for _ in range(tries):
        port = rng.randrange(*span) if span else free_port(hosts[0])
        checked = hosts if span else hosts[1:]  # the kernel's pick is free on the first
        try:
            for host in checked:
                with socket.socket() as s:
                    s.bind((host, port))
        except OSError:
            continue
        return port
    raise OSError(f"no port free on all of {list(hosts)}")


def pair_free_on(hosts: Sequence[str], tries: int = 50) -> int:
    """A port p with p and p + 1 free on every one of `hosts`: a start-first app's two port
    sets (`ports:` and `alternate_ports:`)."""
    for _ in range(tries):
        port = port_free_on(hosts)
        with contextlib.suppress(OSError):  # port + 1 taken somewhere: another pick
            return port_free_on(hosts, span=(port + 1, port + 2), tries=1) - 1
    raise OSError(f"no two adjacent ports free on all of {list(hosts)}")


def subnet() -> str:
    """A random 127.x.y prefix: boxes bind 127.x.y.11, .12, ... so that runs side by side on
    one machine (all of 127/8 is loopback, no set-up) never fight over an address and port."""
    return f"127.{random.randint(1, 250)}.{random.randint(1, 250)}"


def box_addresses(count: int, prefix: str | None = None) -> list[str]:
    """`count` addresses for simulated boxes, .11 upwards on `prefix` (a random one if None)."""
    net = prefix or subnet()
    return [f"{net}.{11 + i}" for i in range(count)]


def assert_loopback(url: str) -> tuple[str, int, str]:
    """(host, port, path) of an http:// URL on a loopback address; anything else is refused."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    loopback = host == "localhost"
    if not loopback:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
    if parts.scheme != "http" or not loopback:
        raise ValueError(f"traffic is only sent to http:// on loopback addresses, not {url!r}")
    return host, parts.port or 80, (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    text: str


def http(url: str, *, method: str = "GET", auth: tuple[str, str] | None = None,
         headers: Mapping[str, str] | None = None, timeout: float = 2.0) -> Reply:
    """One request; an HTTP error status is a reply too (only a network error raises)."""
    assert_loopback(url)
    request = urllib.request.Request(url, method=method, headers=dict(headers or {}))
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return Reply(response.status, dict(response.headers),
                         response.read().decode(errors="replace"))
    except urllib.error.HTTPError as exc:
        with exc:
            return Reply(exc.code, dict(exc.headers), exc.read().decode(errors="replace"))
