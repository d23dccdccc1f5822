"""The one bootstrap every interval over images uses: scipy's percentile bootstrap (`scipy.stats.bootstrap`) of
image *indices*, so that a statistic of several images' rows at once (a normalised curve, a middle share, a paired
difference of two models' shares on the same images) is resampled jointly, with its draws kept for tests built on
them (the claims' p-values)."""
from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ['BootstrapResult', 'bootstrap_images']


@dataclass(frozen=True)
class BootstrapResult:
    """A percentile interval and its draws (unpacks as ``low, high, draws``).

    Args:
        low: the 2.5 % percentile of the draws (shape of one statistic).
        high: the 97.5 % percentile.
        draws: [num_resamples, ...] the statistic on each resample.
    """
    low: np.ndarray
    high: np.ndarray
    draws: np.ndarray

    def __iter__(self):
        return iter((self.low, self.high, self.draws))


def bootstrap_images(statistic: Callable[[np.ndarray], np.ndarray], num_images: int, num_resamples: int = 1000,
                     seed: int = 0) -> BootstrapResult:
    """95 % percentile bootstrap over ``num_images`` images.

    Args:
        statistic: int indices [B, num_images] (each row a resample of the images, with replacement) -> the
            statistic of each resample, [B] or [B, K].
        num_images: how many images the statistic's rows index.
        num_resamples: bootstrap resamples.
        seed: the resampling seed.

    Returns:
        A `BootstrapResult`. Coverage is the percentile bootstrap's: close to 95 % for smooth statistics of 30 or
        more images, lower for a handful.

    Example:
        ```python
        values = np.random.rand(32, 13)                                  # [images, orders]
        band = bootstrap_images(lambda idx: values[idx].mean(1), 32)     # an interval per order
        ```
    """
    from scipy.stats import bootstrap
    if num_images < 1:
        raise ValueError(f'num_images={num_images}: a bootstrap needs at least one image')
    if num_images == 1:  # every resample is the one image: no spread to show (scipy refuses a single observation)
        draws = np.asarray(statistic(np.zeros((num_resamples, 1), dtype=np.int64)), dtype=float)
        return BootstrapResult(draws[0], draws[0], draws)

    def over_resamples(idx, axis=-1):
        rows = np.atleast_2d(idx)
        out = np.asarray(statistic(rows), dtype=float)
        out = np.moveaxis(out, 0, -1)                         # scipy wants the resamples last
        return out[..., 0] if np.ndim(idx) == 1 else out
    res = bootstrap((np.arange(num_images),), over_resamples, vectorized=True, n_resamples=num_resamples,
                    method='percentile', random_state=np.random.default_rng(seed))
    draws = np.moveaxis(np.asarray(res.bootstrap_distribution), -1, 0)
    return BootstrapResult(np.asarray(res.confidence_interval.low), np.asarray(res.confidence_interval.high), draws)
