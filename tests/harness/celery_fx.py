"""Fixtures: celery_fx (placeholder until written)."""
