"""Fixtures: haproxy_fx (placeholder until written)."""
