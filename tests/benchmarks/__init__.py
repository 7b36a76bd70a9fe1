"""Performance benchmarks of dev-agent (not collected by pytest; run with `python -m tests.benchmarks`)."""
