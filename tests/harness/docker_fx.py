"""Fixtures: docker_fx (placeholder until written)."""
