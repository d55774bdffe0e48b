"""What the benchmark scripts share (they run as scripts: ``bench/`` is on their path)."""

from __future__ import annotations

__all__ = ["percentile"]


def percentile(samples: list[float], fraction: float) -> float:
    """The sample at ``fraction`` (0..1) of the sorted samples (nearest rank)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]
