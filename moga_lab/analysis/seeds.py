"""Middle-order shares across training seeds, with intervals that carry the seeds, the images and the pairs and
contexts drawn per image (`moga_lab.analysis.uncertainty`).

An interval over images (`moga_lab.analysis.curves.middle_share_interval` / `middle_share_difference`) says how sure
the share of *one checkpoint* is; another training seed of the same architecture lands elsewhere. The functions here
take the per-image table of `interaction_strength` with a ``seed`` column (one set of curves per (model, seed)) and
estimate a difference between two models over the population of training seeds and of images. Every share claim of
the package (the claims registry, the studies' tables) is computed here, by one rule: the registry's ``pairing``
(``seed``: seed k of a with seed k of b; ``none``: the seeds as independent groups) and ``alternative``.
"""
from dataclasses import dataclass
from typing import Dict, Sequence, Tuple

import numpy as np
import pandas as pd

from moga_lab.analysis.curves import ShareDifference, middle_share_difference, middle_share_interval, middle_share_of
from moga_lab.analysis.tables import per_image_table
from moga_lab.analysis.uncertainty import SeedImageInterval, jackknife_pseudo_values, seeds_by_images

__all__ = ['PAIRINGS', 'AcrossSeeds', 'middle_share_by_seed', 'middle_share_difference_over_seeds', 'image_layout',
           'share_difference_arrays']

PAIRINGS = ('seed', 'none')
"""How two models' training seeds are compared: ``seed`` pairs seed k of one with seed k of the other (a one-sample
test on the per-seed differences); ``none`` takes them as independent groups (Welch's seed terms)."""


@dataclass(frozen=True)
class AcrossSeeds:
    """A middle-share difference across training seeds.

    Attributes:
        interval: the estimate with its interval over seeds and images (`SeedImageInterval`).
        per_seed: ``{seed: ShareDifference}`` for the seeds both models have (a paired bootstrap over that seed's
            images).
        pairing: one of `PAIRINGS`.
        seeds_a: model a's seeds.
        seeds_b: model b's seeds.
    """
    interval: SeedImageInterval
    per_seed: Dict[int, ShareDifference]
    pairing: str
    seeds_a: Tuple[int, ...]
    seeds_b: Tuple[int, ...]

    @property
    def difference(self) -> float:
        return self.interval.estimate


def _check_seeded(frame: pd.DataFrame) -> None:
    if 'seed' not in frame.columns:
        raise ValueError(f'the per-image table needs a seed column (one set of curves per model and seed); it has '
                         f'{list(frame.columns)}')


def middle_share_by_seed(frame: pd.DataFrame, low: float = 0.2, high: float = 0.6,
                         statistic: str = 'mean-abs') -> pd.DataFrame:
    """The middle share of each (model, seed)'s curve with its 95 % bootstrap interval over images.

    Args:
        frame: per-image rows of `interaction_strength` with ``model``, ``seed`` and ``image_id`` columns.
        low: lower end of the band, as a fraction of n.
        high: upper end of the band.
        statistic: 'mean-abs', 'rms' or 'naive'.

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


def image_layout(frame: pd.DataFrame, models: Sequence[str]) -> str:
    """``crossed`` when every seed of ``models`` is on the same images, ``nested`` when no image is on two seeds;
    a ValueError names any other layout (some images shared, some not), which no interval here models.

    Args:
        frame: per-image rows with ``model``, ``seed`` and ``image_id``.
        models: the models compared.
    """
    sets: Dict[int, set] = {}
    for (model, seed), sub in frame[frame.model.isin(list(models))].groupby(['model', 'seed']):
        sets.setdefault(int(seed), set()).update(sub.image_id)
    if len(sets) < 2 or all(s == next(iter(sets.values())) for s in sets.values()):
        return 'crossed'
    counts = pd.Series([i for s in sets.values() for i in s]).value_counts()
    if counts.max() == 1:
        return 'nested'
    raise ValueError('the seeds share some images and not others; accepted: every seed on the same images (crossed) '
                     'or each seed on images of its own (nested)')


def share_difference_arrays(a: np.ndarray, b: np.ndarray, ratios: Sequence[float], statistic: str = 'mean-abs',
                            low: float = 0.2, high: float = 0.6, pairing: str = 'seed', layout: str = 'crossed',
                            alternative: str = 'two-sided') -> SeedImageInterval:
    """The array core of `middle_share_difference_over_seeds`: per-image values [seeds, images, orders] of each model
    (seed k of ``a`` paired with seed k of ``b`` when ``pairing='seed'``; the images in the same order in every seed
    when ``layout='crossed'``).

    Args:
        a: model a's per-image values of the statistic's column, [S_a, n, O].
        b: model b's, [S_b, n, O].
        ratios: the order ratios of the last axis.
        statistic: 'mean-abs', 'rms' or 'naive'.
        low: the band's lower order ratio.
        high: its upper one.
        pairing: one of `PAIRINGS`.
        layout: 'crossed' or 'nested'.
        alternative: 'two-sided', 'greater' or 'less'.
    """
    if pairing not in PAIRINGS:
        raise ValueError(f'pairing {pairing!r} is not accepted; accepted: {", ".join(PAIRINGS)}')
    share = middle_share_of(ratios, statistic, low, high)
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    share_a, share_b = share(a.mean(1)), share(b.mean(1))                      # [S]
    psi_a, psi_b = jackknife_pseudo_values(share, a), jackknife_pseudo_values(share, b)   # [S, n]
    if pairing == 'seed':
        if len(a) != len(b):
            raise ValueError(f'pairing by seed needs as many seeds of each model; got {len(a)} and {len(b)}')
        one = len(a) == 1
        return seeds_by_images(share_a - share_b, psi_a - psi_b if layout == 'crossed' or one else None,
                               'images' if one else layout, alternative)
    nested = layout == 'nested'
    return seeds_by_images(share_a, None if nested else psi_a, layout, alternative,
                           minus=(share_b, None if nested else psi_b))


def middle_share_difference_over_seeds(frame: pd.DataFrame, model_a: str, model_b: str, low: float = 0.2,
                                       high: float = 0.6, statistic: str = 'mean-abs', pairing: str = 'seed',
                                       alternative: str = 'two-sided', per_seed_intervals: bool = True) -> AcrossSeeds:
    """share(model_a) - share(model_b) across training seeds, with an interval over seeds, images, pairs and contexts.

    Estimand: the mean over training seeds of the difference of the two models' middle shares, each share that of
    the curve over the population of images (with pairs and contexts drawn as the design draws them); not on the
    images of the table. ``pairing='seed'`` takes the per-seed differences on each seed's images; ``'none'`` the
    difference of the two models' mean shares. The images are shared by every seed (crossed: the image term is
    estimated from the jackknife over images) or drawn per seed (nested); see
    `moga_lab.analysis.uncertainty.seeds_by_images`.

    Args:
        frame: per-image rows with ``model``, ``seed`` and ``image_id`` columns.
        model_a: the first model's name.
        model_b: the second model's name (subtracted).
        low: lower end of the band, as a fraction of n.
        high: upper end of the band.
        statistic: 'mean-abs', 'rms' or 'naive'.
        pairing: one of `PAIRINGS`.
        alternative: 'two-sided', 'greater' or 'less'.
        per_seed_intervals: also bootstrap each seed's difference over its images (``per_seed``).

    Returns:
        An `AcrossSeeds`.

    Raises:
        ValueError: a model without curves, an unknown pairing, too few seeds, or images laid out otherwise.
    """
    _check_seeded(frame)
    if pairing not in PAIRINGS:
        raise ValueError(f'pairing {pairing!r} is not accepted; accepted: {", ".join(PAIRINGS)}')
    frame = frame[frame.model.isin([model_a, model_b])]
    seeds = {m: sorted(int(s) for s in frame[frame.model == m].seed.unique()) for m in (model_a, model_b)}
    for m, found in seeds.items():
        if not found:
            raise ValueError(f'no curves of {m} in the table')
    layout = image_layout(frame, [model_a, model_b])
    if pairing == 'seed':
        seeds = {m: sorted(set(seeds[model_a]) & set(seeds[model_b])) for m in seeds}
        if not seeds[model_a]:
            raise ValueError(f'{model_a} and {model_b} have no training seed in common to pair')
    tables = {(m, s): per_image_table(frame[frame.seed == s], m, statistic) for m in seeds for s in seeds[m]}
    ratios = next(iter(tables.values())).columns
    if layout == 'crossed':
        images = sorted(set.intersection(*(set(t.index) for t in tables.values())))
        if len(images) < 2:
            raise ValueError(f'{model_a} and {model_b} share {len(images)} image(s) over their seeds; need 2 or more')
        tables = {k: t.loc[images] for k, t in tables.items()}
    elif pairing == 'seed':   # nested: each seed's two models on that seed's common images
        for s in seeds[model_a]:
            common = tables[(model_a, s)].index.intersection(tables[(model_b, s)].index)
            tables[(model_a, s)], tables[(model_b, s)] = tables[(model_a, s)].loc[common], tables[(model_b, s)].loc[common]
    if len({len(t) for t in tables.values()}) > 1:
        raise ValueError('the seeds hold curves of different numbers of images; accepted: the same number per seed')
    a, b = (np.stack([tables[(m, s)].to_numpy() for s in seeds[m]]) for m in (model_a, model_b))
    result = share_difference_arrays(a, b, ratios, statistic, low, high, pairing, layout, alternative)
    per_seed = ({s: middle_share_difference(frame[frame.seed == s], model_a, model_b, statistic, low, high)
                 for s in sorted(set(seeds[model_a]) & set(seeds[model_b]))} if per_seed_intervals else {})
    return AcrossSeeds(result, per_seed, pairing, tuple(seeds[model_a]), tuple(seeds[model_b]))
