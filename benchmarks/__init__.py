"""Orderflow's benchmarks: each prints figures beside a floor measured in the same run.

Run them all with ``make bench`` (``python -m benchmarks``), or one alone with
``python -m benchmarks.<module> [--quick]``; docs/PERFORMANCE.md explains every figure.
Benchmarks report; they never fail on a missed goal (tests assert, benchmarks measure).
"""
