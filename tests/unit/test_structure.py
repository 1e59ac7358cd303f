"""The structure rules, read from the source: who imports whom, sizes, one error tree."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("schemas", "orchestrator", "worker")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80


def modules(package: str) -> Iterator[tuple[str, Path, ast.Module]]:
    for path in sorted((ROOT / package).rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        yield name, path, ast.parse(path.read_text(), filename=str(path))


def imports(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """Every module imported anywhere in the file, at the top or inside a function."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def ours(name: str) -> bool:
    return name.split(".")[0] in PRODUCT


def under(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def violations(package: str, allowed: tuple[str, ...], denied: tuple[str, ...] = ()) -> list[str]:
    out = []
    for _, path, tree in modules(package):
        for line, name in imports(tree):
            if under(name, *denied) or (ours(name) and not under(name, *allowed)):
                out.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return out


def test_the_worker_uses_only_the_engine_and_the_error_tree() -> None:
    allowed = ("worker", "schemas", "orchestrator.engine", "orchestrator.errors")
    assert violations("worker", allowed) == []


def test_the_engine_imports_no_coordinator_code() -> None:
    allowed = ("schemas", "orchestrator.engine", "orchestrator.errors")
    assert violations("orchestrator/engine", allowed, denied=("docker", "worker")) == []


def test_the_coordinator_never_imports_box_side_code() -> None:
    allowed = ("schemas", "orchestrator")
    assert violations("orchestrator", allowed, denied=("docker", "worker")) == []


def test_schemas_do_no_io_and_import_nothing_of_ours() -> None:
    denied = ("redis", "celery", "kombu", "docker", "boto3", "botocore", "requests")
    denied += ("urllib.request", "socket", "subprocess")
    assert violations("schemas", ("schemas",), denied=denied) == []


def test_every_aws_client_is_made_at_the_one_boundary() -> None:
    # orchestrator/engine/aws.py makes every boto3 client, with one bounded botocore Config.
    makers = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for package in PRODUCT
        for mod, path, tree in modules(package)
        if mod != "orchestrator.engine.aws"
        for line, name in imports(tree)
        if under(name, "boto3", "botocore.config", "botocore.session")
    ]
    assert makers == []


def test_the_rule_is_not_vacuous() -> None:
    # The engine is really used by the worker, and the reader sees imports inside functions.
    seen = {name for _, _, tree in modules("worker") for _, name in imports(tree)}
    assert any(under(n, "orchestrator.engine") for n in seen)
    tree = ast.parse("def f():\n    from worker.x import y\n")
    assert list(imports(tree)) == [(2, "worker.x.y")]


# A line of Python that imports the worker package: `import worker`, `from worker.x import y`.
WORKER_IMPORT = re.compile(r"^\s*(import\s+worker\b|from\s+worker(\.\w+)*\s+import\b)", re.M)


def string_constants(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """Every string literal (docstrings and f-string parts too), with its line."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def test_no_string_in_the_coordinator_holds_python_that_imports_the_worker() -> None:
    # Code in a string (a script written to a box, say) escapes ruff, mypy and the import rules
    # above; box-side code belongs in worker/, run on the box as one of its commands.
    found = [
        f"{path.relative_to(ROOT)}:{line}"
        for _, path, tree in modules("orchestrator")
        for line, text in string_constants(tree)
        if WORKER_IMPORT.search(text)
    ]
    assert found == []
    script = 'S = """\\\nimport json\nfrom worker.secrets import resolve_env\n"""\n'
    assert [line for line, text in string_constants(ast.parse(script))
            if WORKER_IMPORT.search(text)] == [1]
    assert not WORKER_IMPORT.search("the worker imports only the engine; from worker's side")


def test_no_product_module_is_too_long() -> None:
    long = [
        f"{path.relative_to(ROOT)}: {n} lines"
        for package in PRODUCT
        for _, path, _ in modules(package)
        if (n := path.read_text().count("\n")) > MAX_MODULE_LINES
    ]
    assert long == []


def test_no_product_function_is_too_long() -> None:
    long = []
    for package in PRODUCT:
        for _, path, tree in modules(package):
            for node in ast.walk(tree):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    n = (node.end_lineno or node.lineno) - node.lineno + 1
                    if n > MAX_FUNCTION_LINES:
                        long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {n}")
    assert long == []


def test_every_exception_class_lives_in_the_error_tree() -> None:
    # schemas/ raise ValueError subclasses inside pydantic validators (they become ConfigError
    # at the loading boundary); everything else of ours is in orchestrator/errors.py.
    allowed = {("schemas.depgraph", "DependencyCycle")}
    errors = ast.parse((ROOT / "orchestrator/errors.py").read_text())
    tree_names = {n.name for n in ast.walk(errors) if isinstance(n, ast.ClassDef)}
    stray = []
    for package in PRODUCT:
        for mod, path, tree in modules(package):
            if mod == "orchestrator.errors":
                continue
            for node in ast.walk(tree):
                if not isinstance(node, ast.ClassDef) or (mod, node.name) in allowed:
                    continue
                bases = {getattr(b, "id", getattr(b, "attr", "")) for b in node.bases}
                if bases & (tree_names | {"Exception", "RuntimeError", "ValueError"}):
                    stray.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert stray == []
