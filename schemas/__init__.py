"""Pydantic models of box.yml, fleet settings and the coordinator-worker contract; no I/O."""
