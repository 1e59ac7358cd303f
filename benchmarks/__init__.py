"""Benchmarks: real services started as processes, ratios against baselines run alongside."""
