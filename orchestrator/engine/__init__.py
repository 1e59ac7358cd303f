"""The engine both sides run: Redis state, the rollout engine, Celery wiring, the AWS boundary.

Box workers (`worker/`) import only this package and `orchestrator.errors`; the coordinator's
own code (CLI, coordinator, provisioning, watch) stays outside it. tests/unit/test_structure.py
holds the rule.
"""
