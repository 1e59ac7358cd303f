"""Docker names, image references, ports and secret references: parsing with clear errors."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Docker's own rule for container names; app and container names become part of ours.
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")
# Environment variable names as POSIX shells accept them.
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# distribution/reference grammar, simplified: [host[:port]/]path[:tag][@digest]
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_HOST = rf"(?:{_LABEL}(?:\.{_LABEL})*(?::[0-9]+)?)"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
IMAGE_RE = re.compile(
    rf"^(?:(?P<host>{_HOST})/)?(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$"
)


@dataclass(frozen=True)
class ImageRef:
    """A parsed image reference; `registry` is None for Docker Hub-style names."""

    registry: str | None
    repository: str
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}" if self.registry else self.repository

    def with_digest(self, digest: str) -> str:
        return f"{self.name}@{digest}"

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def parse_image(text: str) -> ImageRef:
    """Parse `registry:5000/team/app:tag@sha256:...`; raise ValueError saying what to write."""
    m = IMAGE_RE.match(text)
    if not m:
        raise ValueError(
            f"{text!r} is not a valid image reference; write e.g. "
            "'registry.example.com:5000/team/app:1.2' or 'app@sha256:<64 hex>' "
            "(lowercase repository, no spaces)"
        )
    host, path = m.group("host"), m.group("path")
    # Like Docker: the first part is a registry only if it looks like a host.
    if host and not ("." in host or ":" in host or host == "localhost"):
        path, host = f"{host.lower()}/{path}", None
    return ImageRef(host, path, m.group("tag"), m.group("digest"))


def parse_port_number(value: object, what: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{what} {value!r} is not a port number; write a number from 1 to 65535")
    try:
        port = int(str(value))
    except ValueError:
        raise ValueError(
            f"{what} {value!r} is not a port number; write a number from 1 to 65535"
        ) from None
    if not 1 <= port <= 65535:
        raise ValueError(f"{what} {port} is out of range; ports are 1-65535")
    return port


def parse_port_spec(value: object) -> dict[str, object]:
    """'8080:80', 9090, '127.0.0.1:8080:80/udp' -> the fields of a PortMapping."""
    if isinstance(value, dict):
        return value
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(
            f"port {value!r} must be a number or a string like '8080:80' or '127.0.0.1:8080:80/udp'"
        )
    text = str(value).strip()
    protocol = "tcp"
    if "/" in text:
        text, protocol = text.rsplit("/", 1)
        if protocol not in ("tcp", "udp"):
            raise ValueError(
                f"port protocol {protocol!r} is not tcp or udp; write e.g. '53:53/udp'"
            )
    if "-" in text:
        raise ValueError(f"port range {value!r} is not supported; list each port on its own")
    parts = text.split(":")
    host_ip: str | None = None
    if len(parts) == 1:
        host = container = parts[0]
    elif len(parts) == 2:
        host, container = parts
    elif len(parts) == 3:
        host_ip, host, container = parts
        if not re.fullmatch(r"\d{1,3}(?:\.\d{1,3}){3}", host_ip):
            raise ValueError(f"host address {host_ip!r} in {value!r} is not an IPv4 address")
    else:
        raise ValueError(
            f"port {value!r} has too many ':'; write 'HOST:CONTAINER' or 'IP:HOST:CONTAINER'"
        )
    return {
        "host_ip": host_ip,
        "host_port": parse_port_number(host, "host port"),
        "container_port": parse_port_number(container, "container port"),
        "protocol": protocol,
    }


SECRET_SCHEMES = ("ssm:", "file:")


def check_secret_ref(ref: str) -> str:
    if ref.startswith("ssm:/") and len(ref) > 5:
        return ref
    if ref.startswith("file:/"):
        path = ref[5:].split("#", 1)[0]
        if path.startswith("/") and len(path) > 1 and not ref.endswith("#"):
            return ref
    raise ValueError(
        f"secret reference {ref!r} is not understood; write 'ssm:/param/name' or "
        "'file:/srv/secrets/app.env#KEY' (absolute path; '#KEY' picks one line of an env file)"
    )
