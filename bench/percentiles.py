"""Percentiles the benchmarks report, interpolated linearly between samples."""

from __future__ import annotations


def pct(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0–100) of ``values``."""
    xs = sorted(values)
    k = (len(xs) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)
