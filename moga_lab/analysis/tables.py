"""Reading a per-image interaction table (`moga_lab.analysis.estimate.interaction_strength`'s, or a published
study's): the statistic a curve aggregates and the column it needs (`statistic_column`, which refuses a table without
it in one line), which design made it, whether a cached table may be resumed with a design (`check_design`), and the
budget and Monte-Carlo precision behind it, in words for reports."""
from typing import Tuple

import numpy as np
import pandas as pd

from moga_lab.analysis.estimate import FIXED_DESIGN, SHARED_DESIGN, InteractionSettings, design_name

__all__ = ['STATISTICS', 'STATISTIC_TEXT', 'resolve_statistic', 'statistic_column', 'per_image_table', 'design_of',
           'check_design', 'image_set_precision', 'describe_contexts', 'describe_precision']


STATISTICS = {'mean-abs': 'J_abs', 'rms': 'I2', 'naive': 'J'}
"""`strength_curve`'s statistic -> the per-image column it aggregates. ``mean-abs`` is the paper's estimand (mean |I_m|
over images and pairs) with the Monte-Carlo noise removed, the default; ``rms`` the root-mean-square of I_m (its
square unbiased); ``naive`` the authors' mean |Î_m| as computed, noise included."""

STATISTIC_TEXT = {
    'mean-abs': "mean |I_m| over images and pairs, the paper's estimand, with the Monte-Carlo noise removed "
                '(mean of sqrt(max(Î² - se², 0)); its bias is within 1.05 estimated se per pair)',
    'rms': 'root-mean-square of I_m over images and pairs with the Monte-Carlo noise removed (sqrt of the mean '
           'of Î² - se²; unbiased square)',
    'naive': "the authors' mean |Î_m| over images and pairs (biased upward by up to the noise floor)",
}
"""The statistics in words, for reports and captions."""


def resolve_statistic(name: str) -> str:
    """A strength statistic's name, checked; a ValueError names the accepted ones.

    Args:
        name: a statistic of `STATISTICS`.
    """
    if name == 'debiased':
        raise ValueError("statistic 'debiased' is the RMS's name before moga_lab 1.0; accepted: rms (the same), "
                         'mean-abs, naive')
    if name not in STATISTICS:
        raise ValueError(f'statistic={name!r} is not supported; accepted: {", ".join(STATISTICS)}')
    return name


def statistic_column(frame: pd.DataFrame, statistic: str) -> Tuple[str, str]:
    """``(statistic, column)``: the canonical statistic and the per-image column it aggregates, or a ValueError naming
    the column a table lacks.

    Args:
        frame: a per-image table.
        statistic: a statistic of `STATISTICS`.
    """
    statistic = resolve_statistic(statistic)
    column = STATISTICS[statistic]
    if column not in frame.columns:
        raise ValueError(f'the interaction table has no {column!r} column for statistic {statistic!r}; accepted: a '
                         'table of interaction_strength (recompute it), or a statistic whose column it has')
    return statistic, column


def per_image_table(frame: pd.DataFrame, model: str, statistic: str) -> pd.DataFrame:
    """One model's [images x order ratios] of the per-image column ``statistic`` aggregates (J_abs, I2 or J).

    Args:
        frame: a per-image table of `interaction_strength`.
        model: the model's name in the ``model`` column.
        statistic: a statistic of `STATISTICS`.
    """
    _, column = statistic_column(frame, statistic)
    sub = frame[frame.model == model]
    return sub.pivot_table(index='image_id', columns='ratio', values=column, aggfunc='mean').sort_index(axis=1)


def design_of(frame: pd.DataFrame) -> str:
    """Which design made a per-image table (its ``design`` column): one of
    `moga_lab.analysis.estimate.DESIGNS`; a ValueError for a table without one (written before moga_lab 1.0).

    Args:
        frame: a per-image table of `interaction_strength`.
    """
    if 'design' not in frame.columns:
        raise ValueError('the interaction table has no design column (written before moga_lab 1.0); accepted: a '
                         'table of interaction_strength (recompute it)')
    return str(frame['design'].iloc[0]) if len(frame) else FIXED_DESIGN


def check_design(frame: pd.DataFrame, settings: InteractionSettings, where: str) -> None:
    """Raise ValueError when the per-image results in ``frame`` (read back from ``where`` to resume) were computed
    with another design than ``settings``: grid, pairs, contexts, precision target or orders. Resuming across a
    change of design would mix two designs in one curve.

    Args:
        frame: a per-image table of `interaction_strength`.
        settings: the design of the run that would resume.
        where: the file or folder the table came from (named in the error).
    """
    if frame.empty:
        return
    found = []
    for column, value in dict(n_players=settings.grid ** 2, num_pairs=settings.num_pairs,
                              num_contexts=settings.num_contexts).items():
        if column in frame.columns and (frame[column] != value).any():
            found.append(f'{column} {sorted(frame[column].unique().tolist())} (this run: {value})')
    targets = frame['target_ci'] if 'target_ci' in frame.columns else pd.Series([float('nan')])
    cached = sorted({None if t != t else round(float(t), 6) for t in targets}, key=str)
    target = None if settings.target_ci is None else round(float(settings.target_ci), 6)
    if cached != [target]:
        found.append(f'target_ci {cached} (this run: {target})')
    designs = sorted(set(frame.design)) if 'design' in frame.columns else ['none (moga_lab < 1.0)']
    if designs != [design_name(settings)]:
        found.append(f'design {designs} (this run: {design_name(settings)})')
    if 'baseline' in frame.columns and set(frame.baseline) != {settings.baseline}:
        found.append(f'baseline {sorted(set(frame.baseline))} (this run: {settings.baseline})')
    if 'J_abs' not in frame.columns:
        found.append('no mean-|I| column (written by moga_lab < 1.0)')
    ratios = sorted({round(float(r), 6) for r in frame.ratio})
    if ratios != sorted({round(float(r), 6) for r in settings.ratios}):
        found.append(f'order ratios {ratios} (this run: {sorted(settings.ratios)})')
    if found:
        raise ValueError(f'{where} holds interaction results of another design: {"; ".join(found)}; accepted: the '
                         'same design as those results, or another output folder (or delete them)')


def image_set_precision(frame: pd.DataFrame, z: float = 1.959963984540054) -> pd.DataFrame:
    """The Monte-Carlo precision of the debiased curve over the images of ``frame``, per model and order.

    Strength = sqrt(mean I2), its 95 % interval from sqrt(sum I2_se²) / N, and the half-width as a fraction of the
    strength: what ``target_ci`` over an image set promises, measured rather than assumed.

    Args:
        frame: a per-image table of `interaction_strength`.
        z: the normal quantile of the interval (1.96 for 95 %).

    Returns:
        One row per model and order with the strength, its interval and the relative half-width.
    """
    g = frame.groupby(['model', 'ratio'], sort=False)
    out = pd.DataFrame(dict(I2=g.I2.mean(), I2_se=g.I2_se.apply(lambda x: float(np.sqrt((x ** 2).sum())) / len(x)),
                            num_images=g.image_id.nunique())).reset_index()
    out['strength'] = np.sqrt(out.I2.clip(lower=0))
    low, high = np.sqrt((out.I2 - z * out.I2_se).clip(lower=0)), np.sqrt((out.I2 + z * out.I2_se).clip(lower=0))
    out['half_width_rel'] = (high - low) / 2 / out.strength.where(out.strength > 0)
    return out[['model', 'ratio', 'strength', 'half_width_rel', 'num_images']]


def describe_contexts(frame: pd.DataFrame) -> str:
    """The Monte-Carlo budget behind an interaction table, in words (for reports and captions).

    Args:
        frame: a per-image table of `interaction_strength`.

    Returns:
        E.g. "24 contexts per pair and order, 25,000 forward passes per image", or the precision mode's target and
        the contexts it took.
    """
    forwards = frame.drop_duplicates(['model', 'image_id'])['forwards'].mean() if 'forwards' in frame else None
    paid = f', {forwards:,.0f} forward passes per image' if forwards is not None else ''
    target = frame['target_ci'].iloc[0] if 'target_ci' in frame else float('nan')
    if target == target:  # not NaN: the precision mode
        met = frame.converged.mean() if 'converged' in frame else float('nan')
        return (f"a pilot that planned the contexts for each image's 95 % interval at every order to be within "
                f"{100 * target:.3g} % of its value, then fresh contexts for the estimate (met by {100 * met:.0f} % "
                f"of image-orders; mean {frame.contexts.mean():.0f} contexts per pair and order{paid})")
    if 'design' in frame.columns and frame.design.iloc[0] == SHARED_DESIGN:
        return (f'the shared design: {frame.contexts.mean():.0f} contexts per pair and order on average, each drawn '
                f'context serving every pair that could use it ({int(frame.num_pairs.iloc[0])} pairs per image){paid}')
    return f'{int(frame.num_contexts.iloc[0])} contexts per pair and order{paid}'


def describe_precision(frame: pd.DataFrame) -> str:
    """The Monte-Carlo precision each model's curve reached over the images of ``frame`` (`image_set_precision`:
    the largest 95 % half-width over the orders, relative to the strength), in words for reports.

    Args:
        frame: a per-image table of `interaction_strength`.

    Returns:
        E.g. "Monte-Carlo precision of each curve over its 32 images (given the images and pairs): 95 % half-width at
        most 4.1 % (moganet_xtiny), 5.0 % (convnext_atto) of the strength at any order".
    """
    reached = image_set_precision(frame).groupby('model', sort=False).half_width_rel.max()
    return (f'Monte-Carlo precision of each curve over its {frame.image_id.nunique()} images (given the images and '
            'pairs): 95 % half-width at most ' + ', '.join(f'{100 * rel:.1f} % ({name})' for name, rel in reached.items())
            + ' of the strength at any order')
