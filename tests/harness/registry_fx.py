"""Fixtures: registry_fx (placeholder until written)."""
