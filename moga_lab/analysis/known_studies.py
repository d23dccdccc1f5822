"""Simulated studies whose answer is known: per-image interaction strengths of two models on several training seeds,
with stated variance components, for checking that an interval over seeds and images covers and that a power
calculation is right (``tests/test_uncertainty.py``, ``benchmarks/verdict_coverage.py``).

Each (model, seed, image, order) value is

    x = c[model, order] * exp(alpha[model, seed, order] + beta[image, order] + delta[model, image, order]
                              + gamma[model, seed, image, order]) * (1 + noise[model, seed, image, order]),

alpha the training seed's effect on the curve's shape (a shift along a middle-order profile plus a per-order part),
beta the image's (shared by every model and seed: the image with its pairs and contexts), delta how the image acts
on each model (shared by the model's seeds: what makes a difference between models depend on the images drawn),
gamma the seed x image interaction, and the noise the Monte-Carlo error (mean 0, partly shared by the models, which
see the same contexts). The population curve of a seed is c exp(alpha) E exp(beta + delta + gamma), known in closed
form for normal effects, so the true middle-share difference (the mean over seeds of the two models' shares) is a
Monte-Carlo integral over alpha alone (`true_share_difference`).
"""
from dataclasses import dataclass
from functools import lru_cache
from typing import Tuple, Union

import numpy as np
import pandas as pd

from moga_lab.analysis.coalitions import ORDER_RATIOS

__all__ = ['StudyModel', 'simulate_arrays', 'simulate_study', 'true_share_difference', 'STUDY_CASES']


@dataclass(frozen=True)
class StudyModel:
    """The variance components of a simulated study of two models (a and b) on the 13 order ratios (log scale).

    Attributes:
        bump: how far model a's curve rises over b's in the middle orders.
        seed_sd: s.d. of a seed's shift along the middle-order profile.
        seed_order_sd: s.d. of a seed's per-order effect.
        image_sd: s.d. of an image's shift along the profile (shared by models and seeds).
        image_order_sd: s.d. of an image's per-order effect.
        model_image_sd: s.d. of a (model, image)'s shift along the profile and per order (shared by the seeds).
        interaction_sd: s.d. of the (model, seed, image, order) effect.
        noise_sd: s.d. of the Monte-Carlo noise, relative to the value.
        noise_shared: correlation of the noise between models and seeds on the same image (same pairs and contexts).
    """
    bump: float = 0.1
    seed_sd: float = 0.05
    seed_order_sd: float = 0.03
    image_sd: float = 0.4
    image_order_sd: float = 0.3
    model_image_sd: float = 0.15
    interaction_sd: float = 0.2
    noise_sd: float = 0.2
    noise_shared: float = 0.5


STUDY_CASES = {
    'images dominate': StudyModel(),
    'seeds dominate': StudyModel(seed_sd=0.12, model_image_sd=0.05, interaction_sd=0.1),
    'balanced': StudyModel(seed_sd=0.07, model_image_sd=0.1),
}
"""Three studies spanning the published ones' components: the image term above, near, and below the seed term."""


def _profile() -> np.ndarray:
    r = np.asarray(ORDER_RATIOS)
    return np.exp(-((r - 0.4) / 0.2) ** 2)                       # peaks in the middle orders


def _base(model: StudyModel) -> Tuple[np.ndarray, np.ndarray]:
    r = np.asarray(ORDER_RATIOS)
    base = 1.0 + 0.5 * (1 - r) + 0.8 * r ** 4                    # falls from the low orders, rises at the end
    return base * np.exp(model.bump * _profile()), base


def _share(curves: np.ndarray, low: float, high: float) -> np.ndarray:
    r = np.asarray(ORDER_RATIOS)
    band = (r >= low) & (r <= high)
    return curves[..., band].sum(-1) / curves.sum(-1)


def simulate_arrays(model: StudyModel, num_seeds: int = 5, num_images: int = 32, images: str = 'shared',
                    rng: Union[None, int, np.random.Generator] = None) -> Tuple[np.ndarray, np.ndarray]:
    """One simulated study as arrays: per-image values of a and of b, [seeds, images, orders] each (seed k of a and
    of b on the same images; with ``images='shared'`` every seed on the same images, in the same order).

    Args:
        model: the variance components.
        num_seeds: training seeds per model.
        num_images: images per seed.
        images: ``shared`` (every model and seed on the same images, pairs and contexts) or ``fresh`` (each seed on
            images of its own; both models of a seed share them).
        rng: a numpy Generator or seed.
    """
    if images not in ('shared', 'fresh'):
        raise ValueError(f'images {images!r} is not accepted; accepted: shared, fresh')
    rng = np.random.default_rng(rng)
    profile, O, S, n = _profile(), len(ORDER_RATIOS), num_seeds, num_images
    draws = 1 if images == 'shared' else S                       # image sets

    def along(sd, shape):                                         # shift along the profile + per-order part
        return sd * (rng.standard_normal(shape + (1,)) * profile + rng.standard_normal(shape + (O,)) * 0.75)
    beta = (model.image_sd * rng.standard_normal((draws, n, 1)) * profile
            + model.image_order_sd * rng.standard_normal((draws, n, O)))
    shared_noise = rng.standard_normal((draws, n, O))
    out = []
    for curve in _base(model):
        delta = along(model.model_image_sd, (draws, n))
        alpha = (model.seed_sd * rng.standard_normal((S, 1, 1)) * profile
                 + model.seed_order_sd * rng.standard_normal((S, 1, O)))
        gamma = model.interaction_sd * rng.standard_normal((S, n, O))
        noise = (np.sqrt(model.noise_shared) * shared_noise
                 + np.sqrt(1 - model.noise_shared) * rng.standard_normal((S, n, O)))
        out.append(curve * np.exp(alpha + beta + delta + gamma) * (1 + model.noise_sd * noise))
    return out[0], out[1]


def simulate_study(model: StudyModel, num_seeds: int = 5, num_images: int = 32, images: str = 'shared',
                   rng: Union[None, int, np.random.Generator] = None) -> pd.DataFrame:
    """One simulated study as a table like a published ``interaction_seeds.csv`` (``model`` a / b, ``seed``,
    ``image_id``, ``ratio``, ``order``, ``J_abs``, ``design``); see `simulate_arrays`.

    Args:
        model: the variance components.
        num_seeds: training seeds per model.
        num_images: images per seed.
        images: ``shared`` or ``fresh`` (see `simulate_arrays`).
        rng: a numpy Generator or seed.
    """
    a, b = simulate_arrays(model, num_seeds, num_images, images, rng)
    S, n, O = a.shape
    frames = []
    for name, values in (('a', a), ('b', b)):
        for seed in range(S):
            ids = np.arange(n) + (0 if images == 'shared' else seed * n)
            frames.append(pd.DataFrame(dict(model=name, seed=seed, image_id=np.repeat(ids, O),
                                            ratio=np.tile(ORDER_RATIOS, n), order=np.tile(np.arange(O), n),
                                            J_abs=values[seed].reshape(-1), design='fixed')))
    return pd.concat(frames, ignore_index=True)


@lru_cache(maxsize=32)
def true_share_difference(model: StudyModel, low: float = 0.2, high: float = 0.6, draws: int = 400_000) -> float:
    """The estimand: E over training seeds of share(a's population curve) - share(b's), the population being every
    image (with its pairs and contexts). Monte-Carlo over the seed effects (error about 1e-5).

    Args:
        model: the variance components.
        low: the band's lower order ratio.
        high: its upper one.
        draws: seed draws per model.
    """
    rng = np.random.default_rng(12345)
    profile, O = _profile(), len(ORDER_RATIOS)
    # E exp(beta + delta + gamma) per order, all normal: exp(variance / 2); the noise has mean 0
    var = ((model.image_sd * profile) ** 2 + model.image_order_sd ** 2
           + model.model_image_sd ** 2 * (profile ** 2 + 0.75 ** 2) + model.interaction_sd ** 2)
    scale = np.exp(0.5 * var)

    def mean_share(curve):
        alpha = (model.seed_sd * rng.standard_normal((draws, 1)) * profile
                 + model.seed_order_sd * rng.standard_normal((draws, O)))
        return float(_share(curve * scale * np.exp(alpha), low, high).mean())
    return float(np.subtract(*(mean_share(c) for c in _base(model))))
