"""Adjusting a family of tests: Holm's step-down p-values (family-wise error under any dependence), Benjamini-Hochberg
(false discovery rate, scipy's), and Bonferroni's level for intervals that hold for the whole family at once."""
from typing import Sequence

import numpy as np

__all__ = ['holm', 'benjamini_hochberg', 'family_level', 'ADJUSTMENTS']


def holm(p: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error rate, any dependence). Written here because scipy has
    only Benjamini-Hochberg (``scipy.stats.false_discovery_control``) and statsmodels is not a dependency.

    Args:
        p: the family's p-values.
    """
    values = np.asarray(p, dtype=float)
    order = np.argsort(values)
    m = len(values)
    adjusted = np.empty(m)
    running = 0.0
    for rank, k in enumerate(order):
        running = max(running, min(1.0, (m - rank) * values[k]))
        adjusted[k] = running
    return adjusted


def benjamini_hochberg(p: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (false discovery rate; scipy's implementation).

    Args:
        p: the family's p-values.
    """
    from scipy.stats import false_discovery_control
    return false_discovery_control(np.asarray(p, dtype=float), method='bh')


ADJUSTMENTS = {'holm': holm, 'bh': benjamini_hochberg}
"""The adjustments a claims registry can name."""


def family_level(alpha: float, size: int) -> float:
    """The confidence level of simultaneous intervals over a family of ``size`` claims (Bonferroni: 1 - alpha / m).
    Every claim whose simultaneous interval excludes 0 is decided by Holm too (Holm rejects all that Bonferroni
    does), so a "not decided" claim's simultaneous interval says how large its effect can be.

    Args:
        alpha: the family-wise error rate.
        size: claims in the family (>= 1).
    """
    return 1 - alpha / max(int(size), 1)
