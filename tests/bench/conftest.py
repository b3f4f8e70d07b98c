"""tests/bench holds a benchmark script, run by hand (see docs/benchmark.md); pytest must not import it."""

collect_ignore = ["bench.py"]
