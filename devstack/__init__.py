"""The dev stack: real services as processes on loopback, for the demo, benchmarks and tests."""
