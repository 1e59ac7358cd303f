"""Fixtures: redis_fx (placeholder until written)."""
