"""Power: what a study can decide, and what a study would need to decide a stated difference.

From a claim's `moga_lab.analysis.uncertainty.SeedImageInterval` (fitted on a published study), the variance
components per unit are read back (a seed's, an image's, their interaction's, and any extra term such as the test
set's binomial one), and the standard error and degrees of freedom of another design (S seeds, n images)
follow from the expected mean squares. The test is the t test the claims use; its power at an effect delta is the
noncentral t's probability of passing the critical value at the level the family's correction asks (alpha / m at
Holm's first step, alpha at its last). ``tests/test_power.py`` checks the answer against simulated studies.
"""
import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from moga_lab.analysis.uncertainty import SeedImageInterval, share_weighted_df

__all__ = ['Components', 'components_of', 'planned_se', 'power_of', 'decidable_effect', 'design_for']


@dataclass(frozen=True)
class Components:
    """Variance components of a per-seed difference, per unit.

    Attributes:
        seed: s_a², the variance of a seed's effect (plus, in a nested layout, of its images').
        image: s_b², of an image's (pairs and contexts included).
        interaction: s_c², of the seed x image interaction.
        extra: a term that does not shrink with seeds or images (e.g. the test set's binomial variance), as measured.
        layout: the layout fitted ('crossed', 'nested', 'images' or 'seeds').
        num_seeds: seeds of the fitted study.
        num_images: images of the fitted study.
    """
    seed: float
    image: float
    interaction: float
    extra: float
    layout: str
    num_seeds: int
    num_images: int


def components_of(result: SeedImageInterval) -> Components:
    """The per-unit components behind a fitted interval (method of moments, floored at 0).

    Args:
        result: a claim's interval from `moga_lab.analysis.uncertainty.seeds_by_images`.
    """
    S, n, c = max(result.num_seeds, 1), max(result.num_images, 1), result.components
    m_res = -c.get('interaction', 0.0) * S * n
    m_seed = c.get('seeds', 0.0) * S
    m_image = c.get('images', 0.0) * n
    return Components(seed=max(m_seed - m_res / n, 0.0), image=max(m_image - m_res / S, 0.0),
                      interaction=max(m_res, 0.0) + 0.0, extra=c.get('extra', 0.0), layout=result.layout,
                      num_seeds=result.num_seeds, num_images=n)


def planned_se(components: Components, seeds: int, images: int) -> Tuple[float, float]:
    """``(se, df)`` of the mean difference with ``seeds`` seeds and ``images`` images per seed, from the expected mean
    squares of the fitted layout (a nested study's images are inside its seed term; the extra term as measured).

    Args:
        components: from `components_of`.
        seeds: S.
        images: n.
    """
    c, S, n = components, seeds, images
    terms: List[Tuple[float, float]]
    if c.layout == 'images':   # one seed: the seed term is unknown, the image term scales with n
        terms = [(c.image / n, n - 1)]
    elif c.layout in ('nested', 'seeds'):
        # the fitted seed term holds image variation at the fitted n (nested) or all of it (seeds)
        terms = [(c.seed / S, S - 1)]
    else:
        terms = [((c.seed + c.interaction / n) / S, S - 1), ((c.image + c.interaction / S) / n, n - 1),
                 (-c.interaction / (S * n), (S - 1) * (n - 1))]
    if c.extra:
        terms.append((c.extra, math.inf))
    var = sum(v for v, _ in terms)
    return math.sqrt(max(var, 0.0)), share_weighted_df(terms)


def power_of(effect: float, se: float, df: float, alpha: float, alternative: str = 'two-sided') -> float:
    """The t test's power at ``effect``: P(the test rejects at level ``alpha``), noncentral t.

    Args:
        effect: the true difference.
        se: the estimate's standard error.
        df: degrees of freedom.
        alpha: the level (e.g. alpha / m at Holm's first step).
        alternative: 'two-sided', 'greater' or 'less'.
    """
    from scipy import stats
    if not se > 0:
        return 1.0 if effect else alpha
    nc = effect / se
    t = math.isfinite(df) and df < 200           # (scipy's noncentral t loses its far tails at large df: normal there)
    dist = stats.nct(df, nc) if t else stats.norm(nc)
    central = stats.t(df) if t else stats.norm()
    if alternative == 'greater':
        return float(np.nan_to_num(dist.sf(central.ppf(1 - alpha))))
    if alternative == 'less':
        return float(np.nan_to_num(dist.cdf(central.ppf(alpha))))
    crit = central.ppf(1 - alpha / 2)
    return float(np.nan_to_num(dist.sf(crit)) + np.nan_to_num(dist.cdf(-crit)))  # (a far tail may come back NaN: 0)


def decidable_effect(se: float, df: float, alpha: float, power: float = 0.8, alternative: str = 'two-sided') -> float:
    """The smallest effect (in the declared direction, > 0) the test decides with probability ``power``.

    Args:
        se: the estimate's standard error.
        df: degrees of freedom.
        alpha: the level.
        power: the wanted power.
        alternative: as the claim declares; for 'less' the effect returned is its magnitude.
    """
    from scipy.optimize import brentq
    if not se > 0:
        return 0.0
    side = 'greater' if alternative == 'less' else alternative
    f = lambda x: power_of(x * se, se, df, alpha, side) - power  # noqa: E731
    high = 2.0
    while f(high) < 0:
        high *= 2
    return float(brentq(f, 0.0, high, xtol=1e-6) * se)


def design_for(difference: float, components: Components, alpha: float, power: float = 0.8,
               alternative: str = 'two-sided', seeds: Sequence[int] = tuple(range(2, 41)),
               images: Sequence[int] = (32, 64, 128, 256, 512)) -> Dict[int, Optional[int]]:
    """For each number of images, the fewest seeds that decide ``difference`` with ``power`` at ``alpha``.

    Args:
        difference: the effect to decide.
        components: from `components_of`.
        alpha: the level.
        power: the wanted power.
        alternative: the test's alternative.
        seeds: the seed counts tried.
        images: the image counts tried (per seed).

    Returns:
        ``{images: seeds or None}`` (None: more than ``max(seeds)``).
    """
    out: Dict[int, Optional[int]] = {}
    for n in images:
        out[int(n)] = None
        for S in seeds:
            se, df = planned_se(components, S, n)
            if power_of(abs(difference), se, df, alpha, 'two-sided' if alternative == 'two-sided' else 'greater') >= power:
                out[int(n)] = int(S)
                break
    return out
