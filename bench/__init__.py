"""The benchmark harness (run as `python bench/run_bench.py`); not part of the kdns package."""
