"""The box's limits on host paths: the pure rule, links resolved on the box, validate's warnings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.errors import HostPathDenied
from schemas.boxfile import BoxSpec
from schemas.hostpaths import PathUse, judge, spec_paths
from schemas.release import Release
from worker.limits import check_path, check_release, own_paths, release_problems
from worker.settings import WorkerSettings

# (path, allow-list, own, allowed?, a fragment of the rule)
CASES: list[tuple[str, list[str], dict[str, str], bool, str]] = [
    ("/", [], {}, False, "it is / (the host's root)"),
    ("/etc", [], {}, False, "it is /etc"),
    ("/etc/ssl", [], {}, False, "it is under /etc"),
    ("/etc/ssl/../passwd", [], {}, False, "under /etc"),
    ("//etc", [], {}, False, "it is /etc"),
    ("/root/.ssh", [], {}, False, "under /root"),
    ("/boot", [], {}, False, "/boot"),
    ("/proc/1/root", [], {}, False, "under /proc"),
    ("/sys/fs", [], {}, False, "under /sys"),
    ("/dev/sda", [], {}, False, "under /dev"),
    ("/var/run/docker.sock", [], {}, False, "the Docker socket"),
    ("/run/docker.sock", [], {}, False, "the Docker socket"),
    ("/run", [], {}, False, "contains /run/docker.sock"),
    ("/var", [], {}, False, "contains /var/run/docker.sock"),
    ("/etcetera", [], {}, True, ""),
    ("/srv/data", [], {}, True, ""),
    ("/data/zookeeper", [], {}, True, ""),
    ("/tmp/x/../y", [], {}, True, ""),
    # an allowed sub-path wins over its denied parent, and only below itself
    ("/etc/ssl/certs", ["/etc/ssl"], {}, True, "allowed by /etc/ssl"),
    ("/etc/ssl", ["/etc/ssl/"], {}, True, "allowed by /etc/ssl"),
    ("/etc", ["/etc/ssl"], {}, False, "it is /etc"),
    ("/etc/passwd", ["/etc/ssl"], {}, False, "under /etc"),
    ("/etc/passwd", ["/etc"], {}, True, "allowed by /etc"),
    # an allow above a deny does not open it
    ("/etc", ["/"], {}, False, "it is /etc"),
    ("/var/run/docker.sock", ["/var"], {}, False, "Docker socket"),
    ("/var/run/docker.sock", ["/var/run/docker.sock"], {}, True, "allowed"),
    # a mount that contains a denied path is not opened by allowing itself
    ("/run", ["/run"], {}, False, "contains /run/docker.sock"),
    # the worker's own files: never, whatever the allow-list says
    ("/etc/orchestrator/worker.env", ["/etc"], {"/etc/orchestrator": "own"}, False, "own"),
    ("/etc/orchestrator/worker.env", ["/etc/orchestrator/worker.env"],
     {"/etc/orchestrator/worker.env": "own"}, False, "never open"),
    ("/var/lib", [], {"/var/lib/orchestrator": "the state dir"}, False,
     "/var/lib/orchestrator is the state dir"),
    ("/var/lib/orchestrator/releases", ["/var/lib"], {"/var/lib/orchestrator": "x"}, False, "x"),
    ("/var/lib/other", [], {"/var/lib/orchestrator": "x"}, True, ""),
]


@pytest.mark.parametrize(("path", "allow", "own", "allowed", "rule"), CASES,
                         ids=[f"{c[0]}|{','.join(c[1])}" for c in CASES])
def test_rule(path: str, allow: list[str], own: dict[str, str], allowed: bool, rule: str) -> None:
    verdict = judge(path, allow=allow, own=own)
    assert verdict.allowed is allowed, str(verdict)
    assert rule in verdict.rule
    if not allowed:
        assert verdict.path in str(verdict) and "refused" in str(verdict)


BOX = """
apps:
  web:
    image: web:1
    containers:
      web:
        volumes: ["/etc/ssl:/ssl:ro", "cache:/cache", "/srv/data:/data"]
        env:
          PLAIN: x
          DB: {secret: "file:/srv/secrets/web.env#DB"}
          TOKEN: {secret: "ssm:/web/token"}
"""


def test_spec_paths_names_every_host_path_with_its_field() -> None:
    import yaml

    spec = BoxSpec.model_validate(yaml.safe_load(BOX))
    assert spec_paths(spec.apps) == [
        PathUse("apps.web.containers.web.volumes[0]", "/etc/ssl", "volume"),
        PathUse("apps.web.containers.web.volumes[2]", "/srv/data", "volume"),
        PathUse("apps.web.containers.web.env.DB", "/srv/secrets/web.env", "file secret"),
    ]


def settings(tmp: Path, **kw: object) -> WorkerSettings:
    return WorkerSettings(state_dir=str(tmp / "state"), **kw)  # type: ignore[arg-type]


def use(path: Path | str, kind: str = "volume") -> PathUse:
    return PathUse("apps.web.containers.web.volumes[0]", str(path), kind)


def test_a_link_to_etc_is_refused_by_where_it_leads(tmp_path: Path) -> None:
    link = tmp_path / "innocent"
    link.symlink_to("/etc")
    problem = check_path(use(link), settings(tmp_path))
    assert f"{link} (a link to /etc) refused" in problem
    assert "it is /etc" in problem
    # a link inside a link: the sub-path of /etc is refused as well
    assert "under /etc" in check_path(use(link / "ssl"), settings(tmp_path))


def test_a_link_to_the_workers_state_is_refused(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "box.json").write_text("{}")
    link = tmp_path / "data"
    link.symlink_to(tmp_path / "state")
    problem = check_path(use(link), settings(tmp_path))
    assert "ORCHESTRATOR_STATE_DIR" in problem and "never open to a release" in problem


def test_a_protected_file_reached_through_a_linked_entry(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "keys.pem").write_text("k")
    (tmp_path / "alias").symlink_to(real)
    # the setting names the linked spelling; the release asks for the real one
    s = settings(tmp_path, protected_paths=[str(tmp_path / "alias" / "keys.pem")])
    assert "ORCHESTRATOR_PROTECTED_PATHS" in check_path(use(real / "keys.pem"), s)


def test_an_ordinary_path_and_a_link_to_it_are_allowed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "alias").symlink_to(data)
    assert check_path(use(data), settings(tmp_path)) == ""
    assert check_path(use(tmp_path / "alias"), settings(tmp_path)) == ""


def test_allow_list_opens_a_linked_sub_path_of_etc(tmp_path: Path) -> None:
    link = tmp_path / "ssl"
    link.symlink_to("/etc/ssl")
    assert check_path(use(link), settings(tmp_path)) != ""
    assert check_path(use(link), settings(tmp_path, allowed_host_paths=["/etc/ssl"])) == ""


def test_own_paths_name_the_settings_file_state_dir_and_socket(tmp_path: Path) -> None:
    own = own_paths(settings(tmp_path, haproxy_socket=str(tmp_path / "haproxy.sock")))
    for path in ("/etc/orchestrator", "/etc/orchestrator/worker.env", str(tmp_path / "state"),
                 str(tmp_path / "haproxy.sock")):
        assert path in own
    assert own[str(tmp_path / "haproxy.sock")].endswith("(ORCHESTRATOR_HAPROXY_SOCKET)")


def _release(box: str) -> Release:
    import yaml

    from orchestrator.engine.releases import make_release

    spec = BoxSpec.model_validate(yaml.safe_load(box))
    return make_release("web", spec, {"web": "web@sha256:" + "a" * 64}, None, reason="t")


def test_release_refused_naming_field_rule_and_path(tmp_path: Path) -> None:
    release = _release(BOX)
    problems = release_problems(release, settings(tmp_path))
    assert problems == [
        "apps.web.containers.web.volumes[0]: volume /etc/ssl refused: it is under /etc "
        "(the host's configuration), denied by default; ORCHESTRATOR_ALLOWED_HOST_PATHS on "
        "the box opens a path"
    ]
    with pytest.raises(HostPathDenied, match=r"release r.*volumes\[0\]: volume /etc/ssl"):
        check_release(release, settings(tmp_path))
    check_release(release, settings(tmp_path, allowed_host_paths=["/etc/ssl"]))


def test_a_file_secret_of_the_workers_env_file_is_refused(tmp_path: Path) -> None:
    env_file = tmp_path / "worker.env"
    env_file.write_text("ORCHESTRATOR_BROKER_URL=redis://:pw@h/0\n")
    release = _release(
        "apps:\n  web:\n    image: web:1\n    containers:\n      web:\n        env:\n"
        f"          X: {{secret: 'file:{env_file}#ORCHESTRATOR_BROKER_URL'}}\n"
    )
    s = settings(tmp_path, protected_paths=[str(env_file)], allowed_host_paths=[str(tmp_path)])
    (problem,) = release_problems(release, s)
    assert problem.startswith(f"apps.web.containers.web.env.X: file secret {env_file} refused")
    assert "pw" not in problem


def test_validate_warns_with_file_and_field_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    box = tmp_path / "web.yml"
    box.write_text(BOX + "        # and the Docker socket\n")
    text = box.read_text().replace(
        '"/srv/data:/data"]', '"/srv/data:/data", "/var/run/docker.sock:/s"]'
    )
    box.write_text(text)
    (tmp_path / "fleet.yml").write_text(
        "services:\n  agent:\n    image: agent:1\n    volumes: ['/:/host:ro']\n"
        "registries:\n  - {registry: r.example.com, username: u,"
        " password: {secret: 'file:/root/pw'}}\n"
    )
    box.write_text(box.read_text().replace("apps:", "services: [agent]\napps:"))
    assert main(["validate", str(box)]) == 0
    out, err = capsys.readouterr()
    assert f"{box}: ok" in out
    warnings = [line for line in err.splitlines() if line.startswith("WARNING: ")]
    assert len(warnings) == 4, err
    assert any(f"{box}: apps.web.containers.web.volumes[0]: volume host path /etc/ssl" in w
               for w in warnings)
    assert any("volumes[3]" in w and "/var/run/docker.sock" in w for w in warnings)
    fleet = tmp_path / "fleet.yml"
    assert any(f"{fleet}: services.agent.volumes[0]: volume host path / is refused" in w
               for w in warnings)
    assert any(f"{fleet}: registries[0].password: file secret host path /root/pw" in w
               for w in warnings)


def test_validate_is_quiet_for_allowed_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    box = tmp_path / "web.yml"
    box.write_text(BOX.replace("/etc/ssl", "/srv/ssl"))
    assert main(["validate", str(box)]) == 0
    assert "WARNING" not in capsys.readouterr().err


def test_realpath_is_what_the_box_checks() -> None:
    # the box sees /var/run/docker.sock wherever it really is (often /run/docker.sock)
    assert check_path(use("/var/run/docker.sock"), WorkerSettings()) != ""
    assert os.path.realpath("/etc") == "/etc"
