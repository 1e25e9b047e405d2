"""Kernel benchmarks: the harness, timing and roofline (timing.py) and the registered cases (cases.py)."""
