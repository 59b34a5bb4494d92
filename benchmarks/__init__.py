"""Benchmarks of jaxirl against its PyTorch peers (transformers) and the machine's matmul peak.

Not part of the test suite: run ``python -m benchmarks.run_all`` (see BENCHMARKS.md).
Each ``bench_*`` module has a ``run(...) -> list[dict]`` function and a command line.
"""
