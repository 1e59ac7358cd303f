"""`orchestrator validate` on malformed input: exit 2, the field path, a fix, no traceback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestrator.cli import main

OK_APP = """
apps:
  web:
    image: registry.example.com/web:1
    containers:
      web: {ports: ['8080:80']}
"""


def app(container: str = "ports: ['8080:80']", extra: str = "", image: str = "web:1") -> str:
    return f"""
apps:
  web:
    image: {image}
{extra}
    containers:
      web: {{{container}}}
"""


# (id, file text, field path expected in the output, a fragment of the message)
MALFORMED: list[tuple[str, str, str, str]] = [
    ("unknown top key", OK_APP + "servces: [rsyslog]\n", "servces", "unknown key"),
    ("unknown container key", app("prots: ['80:80']"), "apps.web.containers.web.prots",
     "unknown key"),
    ("missing image", "apps:\n  web:\n    containers:\n      web: {}\n", "apps.web.image",
     "required key is missing"),
    ("missing apps", "services: [rsyslog]\n", "apps", "required key is missing"),
    ("no containers", "apps:\n  web:\n    image: web\n    containers: {}\n",
     "apps.web.containers", "at least 1"),
    ("unknown depends", app(extra="    depends: [db]"), "apps.web.depends[0]", "unknown app 'db'"),
    ("self dependency", app(extra="    depends: [web]"), "apps.web.depends[0]",
     "depends on itself"),
    ("cycle", """
apps:
  a: {image: a, depends: [b], containers: {a: {}}}
  b: {image: b, depends: [c], containers: {b: {}}}
  c: {image: c, depends: [a], containers: {c: {}}}
""", "apps", "a depends on b depends on c depends on a"),
    ("host port twice", """
apps:
  a: {image: a, containers: {a: {ports: ['8080:80']}}}
  b: {image: b, containers: {b: {ports: {8080: 81}}}}
""", "apps.b.containers.b.ports[0]", "already published by apps.a.containers.a.ports[0]"),
    ("port out of range", app("ports: ['70000:80']"), "apps.web.containers.web.ports[0]",
     "out of range"),
    ("port zero", app("ports: [0]"), "apps.web.containers.web.ports[0]", "out of range"),
    ("port not a number", app("ports: ['http:80']"), "apps.web.containers.web.ports[0]",
     "not a port number"),
    ("port bad protocol", app("ports: ['80:80/sctp']"), "apps.web.containers.web.ports[0]",
     "not tcp or udp"),
    ("port range", app("ports: ['8000-8010:80']"), "apps.web.containers.web.ports[0]",
     "not supported"),
    ("mapping port out of range", app("ports: {80: 99999}"), "apps.web.containers.web.ports[0]",
     "out of range"),
    ("image uppercase", app(image="Registry/Web"), "apps.web.image", "not a valid image"),
    ("image with space", app(image="'web app:1'"), "apps.web.image", "not a valid image"),
    ("image bad digest", app(image="web@sha256:xyz"), "apps.web.image", "not a valid image"),
    ("relative log path", app("logs: [var/log/web]"), "apps.web.containers.web.logs.web[0]",
     "absolute path"),
    ("bad app name", OK_APP.replace("  web:\n    image", "  'web app':\n    image"),
     "apps", "can't be a Docker name"),
    ("bad container name", app().replace("      web:", "      '-web':"), "apps.web.containers",
     "can't be a Docker name"),
    ("env and envs", app("env: {A: '1'}, envs: ['B=2']"), "apps.web.containers.web",
     "not both"),
    ("envs without =", app("envs: [JUSTAKEY]"), "apps.web.containers.web", "'KEY=value'"),
    ("bad secret scheme", app("env: {DB: {secret: 'vault:/db'}}"),
     "apps.web.containers.web.env.DB.secret", "ssm:/param/name"),
    ("env value a list", app("env: {DB: [1, 2]}"), "apps.web.containers.web.env.DB",
     "must be a string"),
    ("volume without target", app("volumes: [/data]"), "apps.web.containers.web.volumes",
     "SOURCE:/container/path"),
    ("health with two kinds", app("health: {http: /h, tcp: 80}"),
     "apps.web.containers.web.health", "exactly one of"),
    ("health path relative", app("health: {http: health}"), "apps.web.containers.web.health.http",
     "must start with '/'"),
    ("health too long for the step", app("health: {tcp: 80, retries: 1000, interval: 10}"),
     "apps.web.containers.web.health", "does not fit in the step deadline"),
    ("restart not a bool", app("restart_on_failure: sometimes"),
     "apps.web.containers.web.restart_on_failure", "valid boolean"),
    ("apps is a list", "apps: [web]\n", "apps", "mapping"),
    ("top level a list", "- apps\n", "", "top level must be a mapping"),
    ("yaml syntax", "apps:\n  web: {image: web\n", "", "YAML syntax error at line"),
    ("duplicate key", OK_APP + "apps: {}\n", "", "duplicate key 'apps'"),
    ("empty file", "", "", "the file is empty"),
    ("only comments", "# nothing here\n\n", "", "the file is empty"),
]


@pytest.mark.parametrize(("what", "text", "path", "fragment"), MALFORMED,
                         ids=[m[0] for m in MALFORMED])
def test_malformed_input_is_exit_2_with_path_and_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], what: str, text: str, path: str,
    fragment: str
) -> None:
    f = tmp_path / "web.yml"
    f.write_text(text)
    code = main(["validate", str(f)])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert "Traceback" not in out + err
    assert f"{f}" in err
    assert f": {path}: " in err if path else "ERROR (InvalidFile)" in err, err
    assert fragment in err, err
    assert "nothing was changed" in err


def test_at_least_25_malformed_cases() -> None:
    assert len(MALFORMED) >= 25


def test_binary_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "web.yml"
    f.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    assert main(["validate", str(f)]) == 2
    assert "not a text file" in capsys.readouterr().err


def test_missing_file_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "nope.yml")]) == 2
    assert "cannot read the file" in capsys.readouterr().err


def test_unquoted_sexagesimal_port_stays_a_port(tmp_path: Path) -> None:
    # YAML 1.1 reads `- 22:22` as 1342; our loader keeps it as the port pair it looks like.
    f = tmp_path / "web.yml"
    f.write_text(app("ports: [22:22]"))
    from orchestrator.config import load_box

    assert load_box(f).spec.apps["web"].containers["web"].ports[0].host_port == 22


def test_yaml_error_names_line_and_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "web.yml"
    f.write_text("apps:\n  web:\n    image: [unclosed\n")
    assert main(["validate", str(f)]) == 2
    assert "line 4, column 1" in capsys.readouterr().err


def test_service_missing_from_fleet_catalog(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "fleet.yml").write_text("services:\n  rsyslog: {image: rsyslog:1}\n")
    f = tmp_path / "web.yml"
    f.write_text("services: [rsyslog, statsd]\n" + OK_APP)
    assert main(["validate", str(f)]) == 2
    err = capsys.readouterr().err
    assert "web.yml:1: services[1]: service 'statsd' is not in the fleet catalog (rsyslog)" in err


def test_every_error_of_a_file_is_listed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "web.yml"
    f.write_text(app("ports: ['70000:80'], logs: [rel], bogus: 1", image="Bad Image"))
    assert main(["validate", str(f)]) == 2
    err = capsys.readouterr().err
    assert "4 problems" in err
    assert err.count(str(f)) == 4


def test_good_file_prints_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "web.yml"
    f.write_text("""
apps:
  gcweb: {image: gcweb, depends: [mongos], containers: {gcweb: {ports: {8000: 8000}}}}
  mongos: {image: mongos, containers: {mongos: {ports: ['27017:27017', '53:53/udp']}}}
""")
    assert main(["validate", str(f)]) == 0
    out = capsys.readouterr().out
    assert out.strip() == (
        f"{f}: ok: apps mongos -> gcweb; 2 containers; ports 8000, 27017, 53/udp"
    )


def test_schema_prints_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "apps" in schema["properties"]
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize("kind", ["dangling", "loop", "folder"])
@pytest.mark.parametrize("where", ["beside", "above"])
def test_a_fleet_yml_there_but_unreadable_is_an_error_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, where: str
) -> None:
    # It was skipped as if absent: a rollout without its registries, services and budgets.
    from orchestrator.config import fleet_for
    from orchestrator.errors import InvalidFile
    from orchestrator.settings import CoordinatorSettings

    boxes = tmp_path / "boxes"
    boxes.mkdir()
    (boxes / "web.yml").write_text(OK_APP)
    fleet = (boxes if where == "beside" else tmp_path) / "fleet.yml"
    said = {
        "dangling": f"cannot read the file: a symbolic link to '{tmp_path / 'gone.yml'}', "
        "which does not exist",
        "loop": "cannot read the file: Too many levels of symbolic links",
        "folder": "this is a directory; give a YAML file",
    }[kind]
    if kind == "dangling":
        fleet.symlink_to(tmp_path / "gone.yml")
    elif kind == "loop":
        fleet.symlink_to("fleet.yml")  # itself
    else:
        fleet.mkdir()
    assert main(["validate", str(boxes / "web.yml")]) == 2
    assert f"ERROR (InvalidFile): {fleet}: {said}\n" in capsys.readouterr().err
    with pytest.raises(InvalidFile, match=re.escape(said)) as caught:
        fleet_for(CoordinatorSettings(boxes_dir=boxes))
    assert caught.value.path == str(fleet)


def test_no_fleet_yml_at_all_stays_optional(tmp_path: Path) -> None:
    from orchestrator.config import fleet_for
    from orchestrator.settings import CoordinatorSettings

    boxes = tmp_path / "boxes"
    boxes.mkdir()
    (boxes / "web.yml").write_text(OK_APP)
    assert main(["validate", str(boxes / "web.yml")]) == 0
    assert fleet_for(CoordinatorSettings(boxes_dir=boxes)) is None
