"""The image game of Deng et al. and the multi-order interaction strength curve of a classifier.

Players are the n = g x g patches of an image. v(S) is the ground-truth class's log-odds
log p / (1 - p) = logit_y - logsumexp(other logits) on the image whose patches outside S are replaced by the
baseline (0 in normalised input space = the dataset's mean colour). ``value='logit'`` and ``value='log-p'``
(log-softmax) are offered too.

Defaults, for 224 px ImageNet (the authors'): 14 x 14 grid, 50 pairs per image with j among the neighbours
of i within Chebyshev distance 2, 50 contexts per pair and order, 13 order ratios.

Defaults for 28-32 px inputs (:data:`SMALL_IMAGE_DEFAULTS`): a 7 x 7 grid of 4 x 4 px patches (8 x 8 for
32 px), 20 pairs and 24 contexts. Why: Deng et al. used a 16 x 16 grid (2 x 2 px patches), 200 pairs and
100 contexts on CIFAR-10, i.e. ~10^6 forward passes per image -- hours per image on a 2-core CPU. A 4 x 4 px
patch of a 28 px garment is about the share of the object that a 16 x 16 px patch is of a 224 px ImageNet
object, n = 49 keeps the orders 0.05 n .. 0.95 n distinct (2, 4, 9, ... 44), and 20 x 24 x 13 x 4 = 25k
coalitions (fewer after sharing) take about a minute per image for MogaNet-XT. The standard error reported
with every number says whether that budget is enough for the comparison at hand.
"""
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from .interaction import multi_order_interaction, order_grid, sample_contexts

__all__ = ['ImageGame', 'sample_pairs', 'interaction_strength', 'strength_curve', 'InteractionSettings',
           'ORDER_RATIOS', 'IMAGENET_DEFAULTS', 'SMALL_IMAGE_DEFAULTS', 'VALUES']

ORDER_RATIOS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
VALUES = ('log-odds', 'logit', 'log-p')


@dataclass
class InteractionSettings:
    grid: int = 7
    num_pairs: int = 20
    num_contexts: int = 24
    neighbour_radius: int = 2
    ratios: Sequence[float] = ORDER_RATIOS
    value: str = 'log-odds'
    batch_size: int = 256
    bf16: bool = False
    seed: int = 0


IMAGENET_DEFAULTS = InteractionSettings(grid=14, num_pairs=50, num_contexts=50)
SMALL_IMAGE_DEFAULTS = InteractionSettings(grid=7, num_pairs=20, num_contexts=24)


def default_settings(image_size: int) -> InteractionSettings:
    if image_size <= 64:
        return InteractionSettings(**{**SMALL_IMAGE_DEFAULTS.__dict__, 'grid': 8 if image_size % 8 == 0 else 7})
    return InteractionSettings(**IMAGENET_DEFAULTS.__dict__)


class ImageGame:
    """v(S) for one image: ``game(masks)`` maps bool [B, g*g] -> float [B] (float64 on CPU).

    image: normalised [C, H, W]; patch (r, c) covers rows floor(r H / g) .. and columns likewise, so H and W
    need not be multiples of g.
    """

    def __init__(self, model: nn.Module, image: torch.Tensor, label: int, grid: int, baseline: float = 0.0,
                 value: str = 'log-odds', bf16: bool = False):
        if value not in VALUES:
            raise ValueError(f'value={value!r} is not supported; accepted: {", ".join(VALUES)}')
        if image.ndim != 3:
            raise ValueError(f'image must be [C, H, W]; got shape {tuple(image.shape)}')
        C, H, W = image.shape
        if not 1 <= grid <= min(H, W):
            raise ValueError(f'grid={grid} is not valid for a {H}x{W} image; accepted: 1..{min(H, W)}')
        self.model, self.label, self.grid, self.value, self.bf16 = model, int(label), grid, value, bf16
        device = next(model.parameters()).device if any(True for _ in model.parameters()) else image.device
        self.image = image.to(device)
        self.baseline = torch.full_like(self.image, float(baseline)) if not torch.is_tensor(baseline) \
            else baseline.to(device).expand_as(self.image)
        rows = (torch.arange(H) * grid // H)
        cols = (torch.arange(W) * grid // W)
        self.patch_of_pixel = (rows[:, None] * grid + cols[None, :]).to(device)  # [H, W] -> player index
        self.n_players = grid * grid

    def inputs(self, masks: torch.Tensor) -> torch.Tensor:
        """[B, n] bool -> [B, C, H, W] masked images (channels_last)."""
        keep = masks.to(self.image.device)[:, self.patch_of_pixel].unsqueeze(1)  # [B, 1, H, W]
        x = torch.where(keep, self.image.unsqueeze(0), self.baseline.unsqueeze(0))
        return x.contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def __call__(self, masks: torch.Tensor) -> torch.Tensor:
        x = self.inputs(masks)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.model(x)
        return logits_to_value(logits.float(), self.label, self.value)


def logits_to_value(logits: torch.Tensor, label: int, value: str = 'log-odds') -> torch.Tensor:
    if value == 'logit':
        return logits[:, label]
    if value == 'log-p':
        return logits.log_softmax(-1)[:, label]
    others = torch.cat([logits[:, :label], logits[:, label + 1:]], dim=1)
    return logits[:, label] - others.logsumexp(-1)  # log p / (1 - p), stable


def sample_pairs(grid: int, num_pairs: int, radius: int = 2, generator: Optional[torch.Generator] = None):
    """[num_pairs, 2] player pairs: i uniform on the grid, j uniform among i's neighbours within Chebyshev
    distance ``radius`` (j != i), as the authors do."""
    i = torch.randint(grid * grid, (num_pairs,), generator=generator)
    offsets = [(dr, dc) for dr in range(-radius, radius + 1) for dc in range(-radius, radius + 1) if (dr, dc) != (0, 0)]
    pairs = []
    for p in i.tolist():
        r, c = divmod(p, grid)
        neighbours = [(r + dr) * grid + (c + dc) for dr, dc in offsets if 0 <= r + dr < grid and 0 <= c + dc < grid]
        k = int(torch.randint(len(neighbours), (1,), generator=generator))
        pairs.append((p, neighbours[k]))
    return torch.tensor(pairs, dtype=torch.long)


def _image_generator(seed: int, image_id: int) -> torch.Generator:
    # pairs and contexts depend only on (seed, image id): every model sees the same draws
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(image_id))


def interaction_strength(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                         settings: Optional[InteractionSettings] = None, model_name: str = 'model',
                         image_ids: Optional[Sequence[int]] = None, baseline: float = 0.0,
                         progress: Optional[Callable[[int], None]] = None) -> pd.DataFrame:
    """Per-image multi-order interaction strength of ``model`` (any classifier nn.Module, eval mode).

    images: normalised [N, C, H, W]; labels: [N] (the ground-truth classes). Returns one row per image and
    order: model, image_id, label, order (m), ratio (m / (n-2)), J (mean |I_m(i,j)| over the pairs),
    J_se (Monte-Carlo standard error of J, from the per-pair standard errors), n_players, num_pairs,
    num_contexts. Aggregate with :func:`strength_curve`.
    """
    s = settings or default_settings(images.shape[-1])
    if len(images) != len(labels):
        raise ValueError(f'{len(images)} images but {len(labels)} labels')
    image_ids = list(range(len(images))) if image_ids is None else list(image_ids)
    was_training = model.training
    model.eval()
    rows = []
    try:
        for image, label, image_id in zip(images, labels, image_ids):
            game = ImageGame(model, image, int(label), s.grid, baseline=baseline, value=s.value, bf16=s.bf16)
            n = game.n_players
            orders = order_grid(n, s.ratios)
            g = _image_generator(s.seed, image_id)
            pairs = sample_pairs(s.grid, s.num_pairs, s.neighbour_radius, generator=g)
            contexts = sample_contexts(n, pairs, orders, s.num_contexts, generator=g)
            mean, se = multi_order_interaction(game, n, pairs, orders, s.num_contexts, contexts=contexts,
                                               batch_size=s.batch_size, progress=progress)
            strength = mean.abs().mean(1)                                   # [O]
            # |.| is 1-Lipschitz: the SE of the mean over pairs bounds that of mean |I|
            strength_se = (se.nan_to_num(0.0) ** 2).sum(1).sqrt() / len(pairs)
            for o, (m, r) in enumerate(zip(orders, s.ratios)):
                rows.append(dict(model=model_name, image_id=int(image_id), label=int(label), order=int(m),
                                 ratio=float(r), J=float(strength[o]), J_se=float(strength_se[o]), n_players=n,
                                 num_pairs=len(pairs), num_contexts=s.num_contexts))
    finally:
        model.train(was_training)
    return pd.DataFrame(rows)


def strength_curve(frame: pd.DataFrame, num_bootstrap: int = 1000, seed: int = 0) -> pd.DataFrame:
    """The paper's curve per model: J_m = mean over images (and pairs) of |I_m|, normalised by its mean over
    the orders evaluated; a 95 % bootstrap interval over images. Columns: model, ratio, order, J, J_norm,
    ci_low, ci_high, num_images."""
    out = []
    rng = np.random.default_rng(seed)
    for model, sub in frame.groupby('model', sort=False):
        table = sub.pivot_table(index='image_id', columns='ratio', values='J', aggfunc='mean').sort_index(axis=1)
        orders = sub.groupby('ratio')['order'].first().reindex(table.columns)
        values = table.to_numpy()                                   # [images, orders]
        mean = values.mean(0)
        norm = mean / mean.mean()
        idx = rng.integers(0, len(values), size=(num_bootstrap, len(values)))
        boot = values[idx].mean(1)                                  # [B, orders]
        boot = boot / boot.mean(1, keepdims=True)
        low, high = np.percentile(boot, [2.5, 97.5], axis=0)
        for k, ratio in enumerate(table.columns):
            out.append(dict(model=model, ratio=float(ratio), order=int(orders.iloc[k]), J=float(mean[k]),
                            J_norm=float(norm[k]), ci_low=float(low[k]), ci_high=float(high[k]),
                            num_images=len(values)))
    return pd.DataFrame(out)


def middle_order_share(curve: pd.DataFrame, low: float = 0.2, high: float = 0.6) -> Dict[str, float]:
    """Share of the (normalised) strength in the middle orders low*n .. high*n, per model."""
    shares = {}
    for model, sub in curve.groupby('model', sort=False):
        band = sub[(sub.ratio >= low) & (sub.ratio <= high)]
        shares[model] = float(band.J_norm.sum() / sub.J_norm.sum())
    return shares


def flat_middle_share(curve: pd.DataFrame, low: float = 0.2, high: float = 0.6) -> float:
    """The middle share a flat curve (no preferred order) gets on the orders sampled in ``curve``: the value to
    read :func:`middle_order_share` against (it depends on which orders were sampled, not only on the band)."""
    return next(iter(middle_order_share(curve.assign(J_norm=1.0), low, high).values()))
