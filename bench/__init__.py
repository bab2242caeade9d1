"""Benchmarks: `python -m bench NAME [--json]`; each prints one JSON object as its last line."""
