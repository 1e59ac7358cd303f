"""Every AWS operation the code calls is allowed by the IAM policy of the side that calls it.

The worker's side is worker/ and every product module it imports (statically, lazy imports
included): e.g. a rollout's end runs on a worker and resumes the auto scaling group.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import botocore.session
import pytest
from botocore import xform_name

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {"ec2": "ec2", "autoscaling": "autoscaling", "elb": "elasticloadbalancing",
            "elbv2": "elasticloadbalancing", "ssm": "ssm", "cloudwatch": "cloudwatch",
            "iam": "iam", "ecr": "ecr", "sts": "sts", "sns": "sns"}
PACKAGES = ("orchestrator", "worker", "schemas")


def operations() -> dict[str, set[str]]:
    """snake_case operation name -> the IAM actions it may be (one per service having it)."""
    session = botocore.session.get_session()
    ops: dict[str, set[str]] = {}
    for service, prefix in SERVICES.items():
        for op in session.get_service_model(service).operation_names:
            ops.setdefault(xform_name(op), set()).add(f"{prefix}:{op}")
    return ops


def module_path(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.exists():
            return path
    return None


def imported(tree: ast.AST, package: str) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return {n for n in names if n.split(".")[0] in PACKAGES and module_path(n)}


def worker_side() -> list[Path]:
    todo = [".".join(p.relative_to(ROOT).with_suffix("").parts)
            for p in (ROOT / "worker").rglob("*.py")]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        path = module_path(name)
        if name in seen or path is None:
            continue
        seen.add(name)
        todo += imported(ast.parse(path.read_text()), name)
    return sorted({p for n in seen if (p := module_path(n))})


def called(path: Path, ops: dict[str, set[str]]) -> set[str]:
    """Operations called as client methods (x.op(...)) or handed to the call()/pages()
    wrappers of orchestrator/engine/aws.py (as client.op, or by name)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        if isinstance(node.func, ast.Attribute) and node.func.attr in ops:
            out.add(node.func.attr)
        elif isinstance(node.func, ast.Name) and node.func.id in {"call", "pages"}:
            for arg in node.args:
                if isinstance(arg, ast.Attribute) and arg.attr in ops:
                    out.add(arg.attr)
                elif isinstance(arg, ast.Constant) and arg.value in ops:
                    out.add(str(arg.value))
    return out


def allowed(policy: str) -> set[str]:
    doc = json.loads((ROOT / "docs" / "iam" / policy).read_text())
    actions: set[str] = set()
    for statement in doc["Statement"]:
        assert statement["Effect"] == "Allow"
        found = statement["Action"]
        actions |= {found} if isinstance(found, str) else set(found)
    assert not any("*" in a for a in actions), "least privilege: no wildcard actions"
    return actions


@pytest.mark.parametrize("side,policy", [("worker", "worker.json"),
                                         ("coordinator", "coordinator.json")])
def test_every_called_operation_is_in_the_sides_policy(side: str, policy: str) -> None:
    ops = operations()
    files = worker_side() if side == "worker" else sorted((ROOT / "orchestrator").rglob("*.py"))
    needed = {op: path for path in files for op in called(path, ops)}
    assert needed, "the scan found no AWS call: it is broken"
    actions = allowed(policy)
    missing = {f"{op} ({needed[op].relative_to(ROOT)})": sorted(ops[op])
               for op in needed if not ops[op] & actions}
    assert not missing, f"{policy} lacks: {missing}"


def test_the_worker_policy_cannot_change_the_fleet() -> None:
    """A box's role reads and moves its own membership; it creates and deletes nothing."""
    for action in allowed("worker.json"):
        verb = action.split(":")[1]
        assert not verb.startswith(("Create", "Delete", "Put", "Modify", "Run", "Terminate"))
