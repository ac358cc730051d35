"""Benchmark suite: the product's sync against a sequential baseline, on the bundled emulator.

Run it with ``python -m benchmarks.run [--quick] [--only B1,B2] [--out FILE]``.
"""
