"""Fixtures: aws_fx (placeholder until written)."""
