"""Small images FROM scratch with a static busybox (no image can be pulled from the internet)."""

from __future__ import annotations

import contextlib
import shutil
import struct
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import docker
import docker.errors

from devstack.process import MissingTool

BUSYBOX = Path("/bin/busybox")  # Debian's busybox-static
APP_PORT = 8080  # busybox httpd inside the web image
HEALTH_PATH = "/health"

WEB_DOCKERFILE = f"""\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV PATH=/bin
COPY www /www
LABEL {{labels}}
EXPOSE {APP_PORT}
CMD ["busybox", "httpd", "-f", "-p", "{APP_PORT}", "-h", "/www"]
"""


def is_static_elf(path: Path) -> bool:
    """True when the ELF has no PT_INTERP header: it runs in an image FROM scratch."""
    data = path.read_bytes()
    if data[:5] != b"\x7fELF\x02":  # 64-bit ELF only; that is what Debian ships here
        return False
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    types = (struct.unpack_from("<I", data, phoff + i * phentsize)[0] for i in range(phnum))
    return 3 not in types  # PT_INTERP = 3


def check_busybox() -> None:
    if not (BUSYBOX.is_file() and is_static_elf(BUSYBOX)):
        raise MissingTool(f"{BUSYBOX} must be Debian's statically linked busybox "
                          "(apt-get install busybox-static)")


def build_image(client: docker.DockerClient, tag: str, dockerfile: str,
                files: Mapping[str, bytes | str | Path], labels: Mapping[str, str],
                replace: bool = False) -> Any:
    """Build with the legacy builder (what docker-py uses); the engine caches it across runs,
    so the same inputs give the same image id (test sessions side by side share it). With
    `replace`, when the tag moves (the cache was pruned), the image it leaves untagged is
    removed, unless something still uses it."""
    with tempfile.TemporaryDirectory(prefix="devstack-build-") as ctx:
        root = Path(ctx)
        (root / "Dockerfile").write_text(dockerfile)
        for name, content in files.items():
            target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, Path):
                shutil.copy2(content, target)
            else:
                target.write_bytes(content.encode() if isinstance(content, str) else content)
        try:
            before = client.images.get(tag).id
        except docker.errors.ImageNotFound:
            before = None
        image, _logs = client.images.build(path=ctx, tag=tag, rm=True, forcerm=True,
                                           labels=dict(labels))
    if replace and before and before != image.id:
        with contextlib.suppress(docker.errors.APIError):
            old = client.images.get(before)
            if not old.tags and not old.attrs.get("RepoDigests"):
                client.images.remove(before)
    return image


def build_web_image(client: docker.DockerClient, tag: str, body: str,
                    labels: Mapping[str, str], *, health: bool = True,
                    extra_labels: Mapping[str, str] | None = None, replace: bool = False) -> Any:
    """busybox httpd (2 MB): GET / answers `body`; GET /health answers ok, or 404 when
    `health` is false (an image that runs but never gets healthy). `labels` (what clean-up
    looks for) and `extra_labels` are written into the Dockerfile; `labels` are also the
    build's own."""
    check_busybox()
    files: dict[str, bytes | str | Path] = {"busybox": BUSYBOX, "www/index.html": body}
    if health:
        files["www/health"] = "ok\n"
    line = " ".join(f"{k}={v}" for k, v in {**labels, **(extra_labels or {})}.items())
    return build_image(client, tag, WEB_DOCKERFILE.format(labels=line), files, labels, replace)


WEB_BOX_YML = """\
apps:
  web:
    elb: web
    lb_kind: haproxy
    image: {image}
    containers:
      web:
        ports: ["{port}:{app_port}"]{command}
        health: {{http: /health, interval: 0.1, timeout: 1, retries: {retries}}}
"""


def web_box_yml(image: str, port: int, retries: int = 15, command: str | None = None) -> str:
    """boxes/<type>.yml for the web image: app `web` in HAProxy backend `web`, published on
    `port` of each box's own address, healthy once GET /health answers. `command`: the
    container's, as YAML (a flow list), instead of the image's."""
    line = f"\n        command: {command}" if command else ""
    return WEB_BOX_YML.format(image=image, port=port, app_port=APP_PORT, retries=retries,
                              command=line)


CGI_PATH = "/cgi-bin/app"
# busybox httpd passes a CGI's own status line through; ash's $RANDOM picks the failures.
CGI_SCRIPT = """\
#!/bin/sh
if [ {fail_one_in} -gt 0 ] && [ $((RANDOM % {fail_one_in})) -eq 0 ]; then
  printf 'HTTP/1.0 500 Internal Server Error\\r\\nContent-Type: text/plain\\r\\n\\r\\nboom\\n'
else
  printf 'Content-Type: text/plain\\r\\n\\r\\n{body}\\n'
fi
"""


def build_flaky_image(client: docker.DockerClient, tag: str, body: str, fail_one_in: int,
                      labels: Mapping[str, str]) -> Any:
    """The web image plus GET /cgi-bin/app, answering 500 on one request in `fail_one_in`
    (0: never) while GET /health always answers ok: healthy by its check, failing users."""
    check_busybox()
    files: dict[str, bytes | str | Path] = {
        "busybox": BUSYBOX, "www/index.html": f"{body}\n", "www/health": "ok\n",
        "www/cgi-bin/app": CGI_SCRIPT.format(fail_one_in=fail_one_in, body=body),
    }
    line = " ".join(f"{k}={v}" for k, v in labels.items())
    chmod = 'RUN ["/bin/busybox", "chmod", "755", "/www/cgi-bin/app"]\n'
    dockerfile = WEB_DOCKERFILE.format(labels=line).replace("COPY www /www\n",
                                                            "COPY www /www\n" + chmod)
    return build_image(client, tag, dockerfile, files, labels)
