"""Curves and middle-order shares over images: `strength_curve` (normalised, with a 95 % bootstrap band over images,
which covers images, pairs and contexts), the middle share of a curve and its intervals, the difference of two models'
shares on the same images (`ShareDifference`), and how far mean |I|'s bias can move a share (`share_bias_bound`)."""
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import pandas as pd

from moga_lab.analysis.bootstrap import bootstrap_images
from moga_lab.analysis.tables import per_image_table, resolve_statistic, statistic_column

__all__ = ['strength_curve', 'middle_order_share', 'flat_middle_share', 'middle_share_of', 'middle_share_interval',
           'ShareDifference', 'middle_share_difference', 'share_bias_bound']


def _curve_of(statistic: str):
    """Means over images [..., orders] of the statistic's column -> the curve: the root for ``rms`` (the mean of the
    unbiased I2 first, then the root), the means themselves for ``mean-abs`` and ``naive``."""
    if statistic == 'rms':
        return lambda x: np.sqrt(np.clip(x, 0, None))
    return lambda x: x


def strength_curve(frame: pd.DataFrame, statistic: str = 'mean-abs', num_bootstrap: int = 1000,
                   seed: int = 0) -> pd.DataFrame:
    """The strength curve per model, normalised by its mean over the orders evaluated, with a 95 % bootstrap interval
    over images (which covers the sampling of images, pairs and contexts).

    Args:
        frame: the per-image table of `interaction_strength` (several models allowed).
        statistic: 'mean-abs' (default): J_m = mean over images and pairs of |I_m| with the Monte-Carlo noise
            removed, the paper's estimand (bias within ``J_abs_bias_bound``). 'rms': sqrt(mean over images of I2),
            the root-mean-square of I_m (unbiased square; ``debiased`` is its older name). 'naive': the authors'
            mean |Î_m| as computed (biased upward by the noise floor; ``noise_floor_norm`` says by how much).
        num_bootstrap: bootstrap resamples of the images.
        seed: seed of the bootstrap.

    Returns:
        Columns model, ratio, order, statistic, J, J_norm, ci_low, ci_high, noise_floor_norm, num_images.
    """
    statistic, column = statistic_column(frame, statistic)
    curve_of = _curve_of(statistic)
    out = []
    for model, sub in frame.groupby('model', sort=False):
        table = sub.pivot_table(index='image_id', columns='ratio', values=column, aggfunc='mean').sort_index(axis=1)
        orders = sub.groupby('ratio')['order'].first().reindex(table.columns)
        values = table.to_numpy()                                   # [images, orders]
        strength = curve_of(values.mean(0))
        norm = strength / strength.mean()

        def normalised(idx, values=values):
            boot = curve_of(values[idx].mean(1))                    # [B, orders]
            return boot / boot.mean(1, keepdims=True)
        low, high, _ = bootstrap_images(normalised, len(values), num_bootstrap, seed)
        if statistic == 'naive' and 'noise_floor' in sub.columns:
            floor = sub.pivot_table(index='image_id', columns='ratio', values='noise_floor').sort_index(axis=1)
            floor = floor.to_numpy().mean(0) / strength.mean()
        else:
            floor = np.full(len(strength), np.nan)
        for k, ratio in enumerate(table.columns):
            out.append(dict(model=model, ratio=float(ratio), order=int(orders.iloc[k]), statistic=statistic,
                            J=float(strength[k]), J_norm=float(norm[k]), ci_low=float(low[k]),
                            ci_high=float(high[k]), noise_floor_norm=float(floor[k]), num_images=len(values)))
    return pd.DataFrame(out)


def middle_order_share(curve: pd.DataFrame, low: float = 0.2, high: float = 0.6) -> Dict[str, float]:
    """Share of the (normalised) strength in the middle orders low*n .. high*n, per model.

    Args:
        curve: a curve of `strength_curve`.
        low: lower end of the band, as a fraction of n.
        high: upper end of the band.

    Returns:
        ``{model: share}``; read it against `flat_middle_share`.
    """
    shares = {}
    for model, sub in curve.groupby('model', sort=False):
        band = sub[(sub.ratio >= low) & (sub.ratio <= high)]
        shares[model] = float(band.J_norm.sum() / sub.J_norm.sum())
    return shares


def middle_share_of(ratios: Sequence[float], statistic: str, low: float, high: float) -> Callable:
    """Means over images [..., orders] of that column -> the middle share of the curve they make (as
    `strength_curve` makes it: the root of the mean I2 for ``rms``).

    Args:
        ratios: the order ratios of the columns.
        statistic: a statistic of `STATISTICS`.
        low: the band's lower order ratio.
        high: the band's upper order ratio.
    """
    band = np.asarray((np.asarray(ratios) >= low) & (np.asarray(ratios) <= high))
    curve_of = _curve_of(resolve_statistic(statistic))

    def share(means):
        curves = curve_of(means)
        return curves[..., band].sum(-1) / curves.sum(-1)
    return share


def middle_share_interval(frame: pd.DataFrame, statistic: str = 'mean-abs', low: float = 0.2, high: float = 0.6,
                          num_bootstrap: int = 2000, seed: int = 0) -> pd.DataFrame:
    """`middle_order_share` per model with a 95 % bootstrap interval over images (resampling the images of the
    per-image table, as `strength_curve` does).

    Args:
        frame: the per-image table of `interaction_strength`.
        statistic: 'mean-abs', 'rms' or 'naive' (see `strength_curve`).
        low: lower end of the band, as a fraction of n.
        high: upper end of the band.
        num_bootstrap: bootstrap resamples.
        seed: seed of the bootstrap.

    Returns:
        Columns model, share, ci_low, ci_high, num_images.
    """
    rows = []
    for model in frame.model.unique():
        table = per_image_table(frame, model, statistic)
        share = middle_share_of(table.columns, statistic, low, high)
        values = table.to_numpy()
        lo, hi, _ = bootstrap_images(lambda idx: share(values[idx].mean(1)), len(values), num_bootstrap, seed)
        rows.append(dict(model=model, share=float(share(values.mean(0))), ci_low=float(lo), ci_high=float(hi),
                         num_images=len(values)))
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class ShareDifference:
    """share(a) - share(b) on the images both models were measured on, with a paired 95 % bootstrap interval.

    Attributes:
        difference: the estimate.
        ci_low: the interval's lower end.
        ci_high: its upper end.
        num_images: the common images.
        draws: the bootstrap draws of the difference.
    """
    difference: float
    ci_low: float
    ci_high: float
    num_images: int
    draws: Optional[np.ndarray] = None


def middle_share_difference(frame: pd.DataFrame, model_a: str, model_b: str, statistic: str = 'mean-abs',
                            low: float = 0.2, high: float = 0.6, num_bootstrap: int = 2000,
                            seed: int = 0) -> ShareDifference:
    """share(model_a) - share(model_b) on the images both were measured on, with a paired 95 % bootstrap interval
    (the same resampled images for both models, so image-to-image variation cancels).

    Args:
        frame: the per-image table holding both models.
        model_a: the first model's name.
        model_b: the second model's name (subtracted).
        statistic: which strength the shares are of ('mean-abs', 'rms' or 'naive').
        low: the band's lower order ratio.
        high: the band's upper order ratio.
        num_bootstrap: paired resamples of the common images.
        seed: the resampling seed.

    Returns:
        A `ShareDifference` (over the images of one checkpoint each: across training seeds and with every source of
        error, see `moga_lab.analysis.seeds.middle_share_difference_over_seeds`).
    """
    tables = [per_image_table(frame, m, statistic) for m in (model_a, model_b)]
    common = tables[0].index.intersection(tables[1].index)
    if len(common) == 0:
        raise ValueError(f'{model_a} and {model_b} share no images in the table')
    a, b = (t.loc[common].to_numpy() for t in tables)
    share = middle_share_of(tables[0].columns, statistic, low, high)
    lo, hi, draws = bootstrap_images(lambda idx: share(a[idx].mean(1)) - share(b[idx].mean(1)), len(common),
                                     num_bootstrap, seed)
    return ShareDifference(float(share(a.mean(0)) - share(b.mean(0))), float(lo), float(hi), len(common), draws)


def share_bias_bound(frame: pd.DataFrame, model: str, low: float = 0.2, high: float = 0.6) -> float:
    """The most the bias of mean |I| can move the middle share of one checkpoint's mean-|I| curve (``model``'s rows of
    ``frame``).

    Each order's strength J_m may be off by up to B_m, the mean over images of its bias bound
    (`moga_lab.analysis.strength.ABS_BIAS_FACTOR` x the mean estimated se over pairs, read from the table's
    ``noise_floor``); the share moves most when the band's orders are all off one way and the others the other way.
    The RMS's square is unbiased: its share has no such term.

    Args:
        frame: a per-image table of `interaction_strength` (one checkpoint of ``model``).
        model: the model's name.
        low: the band's lower order ratio.
        high: its upper one.

    Returns:
        The largest |bias| of the share, a number >= 0.
    """
    from moga_lab.analysis.strength import ABS_BIAS_FACTOR, NOISE_FLOOR_FACTOR
    sub = frame[frame.model == model]
    if 'noise_floor' not in sub.columns:
        raise ValueError('the interaction table has no noise_floor column (the mean se over pairs); accepted: a table '
                         'of interaction_strength, which has it')
    curve = sub.groupby('ratio').J_abs.mean().sort_index()
    bound = (sub.groupby('ratio').noise_floor.mean() / NOISE_FLOOR_FACTOR * ABS_BIAS_FACTOR).reindex(curve.index)
    ratios = curve.index.to_numpy()
    band = (ratios >= low) & (ratios <= high)
    c, b = curve.to_numpy(), bound.to_numpy()
    share = c[band].sum() / c.sum()
    up_in, up_out = (c[band] + b[band]).sum(), np.clip(c[~band] - b[~band], 0, None).sum()
    down_in, down_out = np.clip(c[band] - b[band], 0, None).sum(), (c[~band] + b[~band]).sum()
    return float(max(up_in / (up_in + up_out) - share, share - down_in / (down_in + down_out)))


def flat_middle_share(curve: pd.DataFrame, low: float = 0.2, high: float = 0.6) -> float:
    """The middle share a flat curve (no preferred order) gets on the orders sampled in ``curve``: the value to read
    `middle_order_share` against (it depends on which orders were sampled, not only on the band).

    Args:
        curve: a curve of `strength_curve`.
        low: lower end of the band, as a fraction of n.
        high: upper end of the band.

    Returns:
        The share of a flat curve.
    """
    return next(iter(middle_order_share(curve.assign(J_norm=1.0), low, high).values()))
