"""Docker names, image references, ports and secret references: parsing with clear errors."""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter

# Docker's own rule for container names; app and container names become part of ours.
# `\Z`, not `$`: `$` also matches before a trailing newline, and "web\n" is no Docker name.
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}\Z")
# Environment variable names as POSIX shells accept them.
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
_INT = TypeAdapter(int)

# distribution/reference grammar, simplified: [host[:port]/]path[:tag][@digest]
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_HOST = rf"(?:{_LABEL}(?:\.{_LABEL})*(?::[0-9]+)?)"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
# ASCII only: `\w` would let a unicode tag through that the registry then refuses.
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[a-z0-9]+(?:[-_+.][a-z0-9]+)*:[0-9a-fA-F]{32,}"
# The lengths Docker checks for the digests it knows (a short one is refused at pull time).
DIGEST_HEX = {"sha256": 64, "sha384": 96, "sha512": 128}
IMAGE_RE = re.compile(
    rf"^(?:(?P<host>{_HOST})/)?(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?\Z"
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
    digest = m.group("digest")
    if digest:
        algo, _, hexpart = digest.partition(":")
        want = DIGEST_HEX.get(algo)
        if want is None or len(hexpart) != want or hexpart != hexpart.lower():
            raise ValueError(
                f"digest {digest!r} in {text!r} is not one Docker accepts; write "
                "'sha256:' and 64 lowercase hex digits (as `docker images --digests` shows)"
            )
    if len(m.group("path")) > 255:
        raise ValueError(f"repository of {text[:40]!r}... is longer than 255 characters")
    host, path = m.group("host"), m.group("path")
    if host and (why := _port_problem(host)):
        raise ValueError(f"{text[:80]!r} is not a valid image reference: {why}")
    # Like Docker: the first part is a registry only if it looks like a host.
    if host and not ("." in host or ":" in host or host == "localhost"):
        if not re.fullmatch(_COMPONENT, host):  # a path component: Docker refuses `Team/app`
            raise ValueError(
                f"{text!r} is not a valid image reference: {host!r} is not a registry host "
                "(no '.' or ':'), so it is part of the repository, which Docker wants "
                "lowercase: write e.g. 'team/app:1.2'"
            )
        path, host = f"{host}/{path}", None
    return ImageRef(host, path, m.group("tag"), m.group("digest"))


REGISTRY_HOST_RE = re.compile(rf"{_HOST}\Z")


def _port_problem(host: str) -> str:
    """Why host[:port]'s port is no TCP port ('' when it is, or there is none); the grammar
    takes any digits, Docker and the registry client do not."""
    _, colon, digits = host.rpartition(":")
    if not colon:
        return ""
    # Length first: int() of thousands of digits is refused (or slow) before any comparison.
    if len(digits) > 5 or not 1 <= int(digits) <= 65535:
        shown = digits if len(digits) <= 12 else digits[:12] + "..."
        return f"registry port {shown} is out of range; ports are 1-65535"
    return ""


def check_registry_host(host: str) -> str:
    """A registry as image references name it: host[:port], no scheme, no path."""
    if not REGISTRY_HOST_RE.match(host):
        # The host alone: without a scheme, a path, or user info (which may hold a password).
        bare = host.split("://", 1)[-1].split("/", 1)[0].rsplit("@", 1)[-1]
        hint = f"; write {bare!r}" if bare and REGISTRY_HOST_RE.match(bare) else ""
        raise ValueError(
            f"registry {host!r} is not a registry host as image references name it "
            f"(host[:port], no scheme, user or path){hint}"
        )
    if why := _port_problem(host):
        raise ValueError(f"registry {host[:80]!r}: {why}")
    return host


VOLUME_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*\Z")  # the engine's rule
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def has_control(text: str) -> bool:
    """A C0 control character or DEL: a NUL, tab or newline no path, socket or value takes."""
    return _CONTROL.search(text) is not None


_OCTAL = re.compile(r"[-+]?0[0-7_]+\Z")


def octal_misread(item: object) -> str:
    """Why the int YAML read from `item`'s text is not the number written ('' if it is):
    YAML 1.1 reads a leading-zero `0120` as the octal number 80."""
    text = getattr(item, "source_text", None)  # orchestrator/yamlevents.py keeps it
    if isinstance(item, int) and isinstance(text, str) and _OCTAL.match(text):
        return (f"{text} is read by YAML as the octal number {item}: write {item} if that is "
                "what you mean, else the number without its leading zero")
    return ""


def parse_port_number(value: object, what: str) -> int:
    if why := octal_misread(value):
        raise ValueError(f"{what} {why}")
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


def _as_written(key: object) -> str:
    return getattr(key, "source_text", None) or repr(key)  # 0x1F40 as such, '8000' quoted


def one_key_each(mapping: object, read: Callable[[Any], object], what: str) -> None:
    """Refuse two keys that mean the same once read (`8000` and `'08000'` as ports): YAML
    keeps them apart, the model would keep the last one silently."""
    if not isinstance(mapping, dict):
        return
    seen: dict[object, object] = {}
    for key in mapping:
        try:
            meaning = read(key)
        except ValueError:
            continue  # the field's own rules refuse it, with their message
        if meaning in seen:
            first, again = (_as_written(k) for k in (seen[meaning], key))
            raise ValueError(f"keys {first} and {again} are both {what} {meaning}; write it once")
        seen[meaning] = key


def int_keys_once(value: object) -> object:
    """Before a {port: ...} mapping pydantic reads: it makes 8000 of '8000', '08000', '8_000'."""
    one_key_each(value, _INT.validate_python, "port")
    return value


def env_lines_once(value: object) -> object:
    """`envs: ['A=1', 'A=2']` would become {A: '2'} silently: each name once."""
    items = value if isinstance(value, list) else []
    first: dict[str, int] = {}
    for i, line in enumerate(items):
        name = line.partition("=")[0] if isinstance(line, str) else None
        if name in first:
            j = first[name]
            # The lines are not shown: a value may be a password.
            raise ValueError(f"envs[{j}] and envs[{i}] both set {name}; write each name once")
        if name is not None:
            first[name] = i
    return value


def parse_port_spec(value: object) -> dict[str, object]:
    """'8080:80', 9090, '127.0.0.1:8080:80/udp' -> the fields of a PortMapping."""
    if isinstance(value, dict):
        return value
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(
            f"port {value!r} must be a number or a string like '8080:80' or '127.0.0.1:8080:80/udp'"
        )
    if why := octal_misread(value):
        raise ValueError(f"port {why}")
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
        check_ipv4(host_ip, str(value))
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


# Linux's limits (NAME_MAX, PATH_MAX): the engine makes a longer mount point or host directory
# only to fail with "file name too long" when the container starts, at the box's turn.
_NAME_MAX, _PATH_MAX = 255, 4095


def too_long(path: str) -> str | None:
    """Why Linux would refuse `path` for its length, or None."""
    if len(path.encode()) > _PATH_MAX:
        return f"longer than Linux's {_PATH_MAX} bytes for a path"
    if any(len(part.encode()) > _NAME_MAX for part in path.split("/")):
        return f"a part is longer than Linux's {_NAME_MAX} bytes for a file name"
    return None


def clipped(text: str, limit: int = 120) -> str:
    """`text` as an error shows it: a path of thousands of bytes is cut, and says so."""
    return text if len(text) <= limit else f"{text[:limit]}..."


def check_container_path(path: str, what: str) -> None:
    """An absolute path in the container, with nothing the engine or a shell would trip on."""
    if not path.startswith("/"):
        raise ValueError(
            f"{what} {path!r} must be an absolute path in the container, e.g. '/{path}'"
        )
    if has_control(path):
        raise ValueError(f"{what} {path!r} has a control character; remove it")
    if ".." in path.split("/"):
        raise ValueError(f"{what} {path!r} has a '..' part; write the path it means")
    if why := too_long(path):
        raise ValueError(f"{what} {clipped(repr(path))}: {why}")
    if ":" in path:  # the engine would refuse the bind at the box's turn, not here
        raise ValueError(
            f"{what} {path!r} has a ':', which a Docker bind (host:container:mode) can't carry; "
            "use a path without one"
        )
    if not path.strip("/"):
        raise ValueError(f"{what} {path!r} is the root directory; name a directory under it")


def check_volume_source(source: str, item: str) -> None:
    """An absolute host path or a volume name: the engine reads anything else (`./data`,
    `~/data`) as a volume name it refuses, at the box's turn."""
    if source.startswith("/"):
        if has_control(source):
            raise ValueError(f"volume {item!r}: host path has a control character; remove it")
        if why := too_long(source):
            raise ValueError(f"volume {clipped(repr(item))}: the host path: {why}")
    elif not VOLUME_NAME_RE.match(source):
        raise ValueError(
            f"volume {item!r}: {source!r} is neither an absolute host path nor a volume name "
            "(letters, digits, '_', '.', '-'); write the full path, e.g. '/srv/app/data'"
        )
    elif len(source.encode()) > _NAME_MAX:
        raise ValueError(f"volume {clipped(repr(item))}: a volume name longer than {_NAME_MAX} "
                         "bytes (the engine keeps a volume in a directory of its name); shorten it")


def argv(v: object) -> object:
    """A command as a string (split as a shell would) or a list; no NUL anywhere."""
    out = shlex.split(v) if isinstance(v, str) else v
    if isinstance(out, list) and any(isinstance(a, str) and "\x00" in a for a in out):
        raise ValueError("a command can't hold a NUL character")
    return out


MIN_HEALTHY_RE = re.compile(r"([0-9]{1,6}|(100|[1-9]?[0-9])%)\Z")


def shown(value: object, limit: int = 80) -> str:
    """`value` quoted for a message, cut to `limit` characters (100k of it helps no one)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters quoted)"


def parse_min_healthy(value: object) -> object:
    """A count (`2`, as YAML reads it or quoted) or a percentage (`50%`), as text."""
    if isinstance(value, int) and not isinstance(value, bool):
        if why := octal_misread(value):
            raise ValueError(f"min_healthy {why}")
        value = str(value)
    if not isinstance(value, str) or not MIN_HEALTHY_RE.match(value):
        raise ValueError(f"min_healthy {shown(value, 40)} is neither a count (0-999999) nor a "
                         "percentage (0%-100%); write e.g. 2 or 50%")
    return value


def check_ipv4(address: str, where: str) -> None:
    """An IPv4 address the engine can bind: four numbers 0-255 (not `999.999.999.999`)."""
    try:
        ipaddress.IPv4Address(address)
    except ValueError:
        raise ValueError(
            f"host address {address!r} in {where!r} is not an IPv4 address; "
            "write e.g. '127.0.0.1:8080:80'"
        ) from None


SECRET_SCHEMES = ("ssm:", "file:")
_REF_FORMS = (
    "write 'ssm:/param/name' (an SSM parameter: store a value there as a SecureString) or "
    "'file:/srv/secrets/app.env#KEY' (absolute path; '#KEY' picks one line of an env file)"
)


def check_secret_ref(ref: str) -> str:
    """A reference a box resolves: 'ssm:/name' or 'file:/abs/path[#KEY]'. A bad one is
    described, never shown: what was written may be the secret itself (a password, a webhook
    URL) instead of a reference to it."""
    why = _ref_problem(ref)
    if why:
        raise ValueError(f"secret reference {why} (its text is not shown: it may be the secret); "
                         + _REF_FORMS)
    return ref


def _ref_problem(ref: str) -> str:
    """What kind of wrong `ref` is ('' if none), in words that never quote it."""
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in ref):
        return "has a blank or control character"
    if ref.startswith("ssm:/") and len(ref) > 5:
        return ""
    path = ref[5:].split("#", 1)[0]
    if ref.startswith("file:/") and path.startswith("/") and len(path) > 1 and ref[-1] != "#":
        return ""
    if "://" in ref:
        return "is a URL, a value rather than a reference to one"
    if ref.startswith("ssm:"):
        return "names no SSM parameter after 'ssm:/'"
    if ref.startswith("file:"):
        return "names no absolute path after 'file:' (or an empty '#KEY')"
    return "has no ssm: or file: scheme: a value, or a kind of reference boxes can't read"
