"""Statistics across training seeds: Welch's interval, and the middle-order share of a model's curves on each seed's
checkpoint.

An interval over images (`moga_lab.analysis.games.middle_share_interval` / `middle_share_difference`) says how sure
the share of *one checkpoint* is; a second training seed of the same architecture can land elsewhere. The functions
here take the per-image table of `interaction_strength` with a ``seed`` column (one set of curves per (model, seed),
all on the same images, pairs and design) and say whether a difference between two architectures holds on every
seed's checkpoint and across seeds.
"""
from typing import Dict, Sequence, Tuple

import numpy as np
import pandas as pd

from moga_lab.analysis.games import middle_share_difference, middle_share_interval

__all__ = ['welch', 'welch_half_width', 'seeds_for_half_width', 'middle_share_by_seed',
           'middle_share_difference_over_seeds']


def welch(a: Sequence[float], b: Sequence[float]) -> Tuple[float, float, float]:
    """mean(a) - mean(b) with its 95 % Welch interval (unequal variances, Welch-Satterthwaite degrees of freedom).

    Args:
        a: values of one group (e.g. test top-1 of each seed).
        b: values of the other group.

    Returns:
        ``(difference, ci_low, ci_high)``; the interval is NaN when a group has a single value (no spread to
        estimate), and collapses to the difference when both groups are constant.
    """
    from scipy import stats
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = float(np.mean(a) - np.mean(b))
    if len(a) < 2 or len(b) < 2:
        return diff, float('nan'), float('nan')
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    se = np.sqrt(va + vb)
    if se == 0:
        return diff, diff, diff
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    t = stats.t.ppf(0.975, df)
    return diff, float(diff - t * se), float(diff + t * se)


def welch_half_width(sd: float, seeds: int) -> float:
    """The expected half-width of `welch`'s 95 % interval for two groups of ``seeds`` values each with the same
    standard deviation ``sd`` (then Welch's degrees of freedom are 2 (seeds - 1)): t * sd * sqrt(2 / seeds).

    Args:
        sd: the seed-to-seed standard deviation of the quantity (e.g. a row's middle share).
        seeds: values (training seeds) per group, >= 2.
    """
    from scipy import stats
    if seeds < 2:
        raise ValueError(f'seeds={seeds} is not accepted; accepted: an integer >= 2 (one value has no spread)')
    return float(stats.t.ppf(0.975, 2 * (seeds - 1)) * sd * np.sqrt(2 / seeds))


def seeds_for_half_width(sd: float, half_width: float, most: int = 1000) -> int:
    """The fewest training seeds per group for which `welch_half_width` is at most ``half_width``: the planning
    question "how many seeds would decide a difference of this size at this seed spread" (a difference larger than
    the half-width is then decided, on average).

    Args:
        sd: the seed-to-seed standard deviation.
        half_width: the wanted half-width of the 95 % interval, > 0.
        most: the answer's cap (returned when even that many are not enough).
    """
    if not half_width > 0:
        raise ValueError(f'half_width={half_width} is not accepted; accepted: a number > 0')
    for seeds in range(2, most + 1):
        if welch_half_width(sd, seeds) <= half_width:
            return seeds
    return most


def _check_seeded(frame: pd.DataFrame) -> None:
    if 'seed' not in frame.columns:
        raise ValueError(f'the per-image table needs a seed column (one set of curves per model and seed); it has '
                         f'{list(frame.columns)}')


def middle_share_by_seed(frame: pd.DataFrame, low: float = 0.2, high: float = 0.6,
                         statistic: str = 'debiased') -> pd.DataFrame:
    """The middle share of each (model, seed)'s curve with its 95 % bootstrap interval over images.

    Args:
        frame: per-image rows of `interaction_strength` with ``model``, ``seed`` and ``image_id`` columns.
        low: lower end of the band, as a fraction of n.
        high: upper end of the band.
        statistic: 'debiased' or 'naive'.

    Returns:
        Columns model, seed, share, ci_low, ci_high, num_images; one row per (model, seed), in table order.
    """
    _check_seeded(frame)
    parts = [middle_share_interval(sub, statistic, low, high).assign(seed=int(seed))
             for seed, sub in frame.groupby('seed', sort=True)]
    table = pd.concat(parts, ignore_index=True)
    order = {m: k for k, m in enumerate(dict.fromkeys(frame.model))}
    table = table.sort_values(['model', 'seed'], key=lambda c: c.map(order) if c.name == 'model' else c)
    return table[['model', 'seed', 'share', 'ci_low', 'ci_high', 'num_images']].reset_index(drop=True)


def middle_share_difference_over_seeds(frame: pd.DataFrame, model_a: str, model_b: str, low: float = 0.2,
                                       high: float = 0.6, statistic: str = 'debiased') -> Dict[str, object]:
    """share(model_a) - share(model_b) on each seed's checkpoints and across seeds.

    Per seed: the two models' checkpoints of that seed number, paired over their common images (the bootstrap of
    `middle_share_difference`). Across seeds: the mean over each model's seeds of its share, Welch's 95 % interval
    over the seeds (it covers training-seed variation on these images, not the choice of images).

    Args:
        frame: per-image rows with ``model``, ``seed`` and ``image_id`` columns.
        model_a: the first model's name.
        model_b: the second model's name (subtracted).
        low: lower end of the band, as a fraction of n.
        high: upper end of the band.
        statistic: 'debiased' or 'naive'.

    Returns:
        ``dict(per_seed={seed: dict(difference, ci_low, ci_high, num_images)}, difference, ci_low, ci_high,
        seeds_a, seeds_b)``: ``per_seed`` holds the seeds both models have; the interval is NaN when a model has
        curves of a single seed.
    """
    _check_seeded(frame)
    shares = middle_share_by_seed(frame[frame.model.isin([model_a, model_b])], low, high, statistic)
    a, b = (shares[shares.model == m] for m in (model_a, model_b))
    if a.empty or b.empty:
        raise ValueError(f'no curves of {model_a if a.empty else model_b} in the table')
    per_seed = {}
    for seed in sorted(set(a.seed) & set(b.seed)):
        sub = frame[frame.seed == seed]
        per_seed[int(seed)] = middle_share_difference(sub, model_a, model_b, statistic, low, high)
    diff, ci_low, ci_high = welch(a.share, b.share)
    return dict(per_seed=per_seed, difference=diff, ci_low=ci_low, ci_high=ci_high, seeds_a=sorted(a.seed),
                seeds_b=sorted(b.seed))
