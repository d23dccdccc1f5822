"""The image game of Deng et al. and the multi-order interaction strength curve of a classifier.

Players are the n = g x g patches of an image. v(S) is the ground-truth class's log-odds
log p / (1 - p) = logit_y - logsumexp(other logits) on the image whose patches outside S are replaced by the
baseline (0 in normalised input space = the dataset's mean colour). ``value='logit'`` and ``value='log-p'``
(log-softmax) are offered too.

Defaults, for 224 px ImageNet (the authors'): 14 x 14 grid, 50 pairs per image with j among the neighbours
of i within Chebyshev distance 2, 50 contexts per pair and order, 13 order ratios.

Defaults for 28-32 px inputs (`SMALL_IMAGE_DEFAULTS`): a 7 x 7 grid of 4 x 4 px patches (8 x 8 for
32 px), 20 pairs and 24 contexts. Why: Deng et al. used a 16 x 16 grid (2 x 2 px patches), 200 pairs and
100 contexts on CIFAR-10, i.e. ~10^6 forward passes per image -- hours per image on a 2-core CPU. A 4 x 4 px
patch of a 28 px garment is about the share of the object that a 16 x 16 px patch is of a 224 px ImageNet
object, n = 49 keeps the orders 0.05 n .. 0.95 n distinct (2, 4, 9, ... 44), and 20 x 24 x 13 x 4 = 25k
coalitions (fewer after sharing) take seconds per image for MogaNet-XT through its fused model. The intervals
reported with every number say whether that budget is enough; ``target_ci`` replaces the fixed budget by a
precision target.

Each table row holds two strengths (see `moga_lab.analysis.strength`): the authors' naive J = mean |Î| over
pairs, inflated by Monte-Carlo noise by up to its ``noise_floor``, and the debiased root-mean-square J_debiased,
whose square is unbiased. `strength_curve` draws the debiased one unless told otherwise.
"""
import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from moga_lab.models.fuse import NATIVE_BF16, onednn_bf16
from moga_lab.analysis.bootstrap import bootstrap_images
from moga_lab.analysis.coalitions import sample_pairs
from moga_lab.analysis.interaction import order_grid, sample_contexts
from moga_lab.analysis.shared import estimate_shared

if TYPE_CHECKING:  # (the planner imports nothing from here at run time either way)
    from moga_lab.analysis.planner import DesignPlan
from moga_lab.analysis.strength import estimate_strength

__all__ = ['ImageGame', 'sample_pairs', 'interaction_strength', 'strength_curve', 'InteractionSettings',
           'ORDER_RATIOS', 'IMAGENET_DEFAULTS', 'SMALL_IMAGE_DEFAULTS', 'VALUES', 'STATISTICS', 'evaluation_model',
           'middle_order_share', 'flat_middle_share', 'STATISTIC_TEXT', 'describe_contexts',
           'image_set_precision', 'check_design', 'describe_precision', 'per_image_target', 'middle_share_interval',
           'middle_share_difference', 'design_of', 'FIXED_DESIGN', 'TWO_PHASE_DESIGN', 'SEQUENTIAL_DESIGN',
           'BASELINES', 'masking_baseline', 'resolve_statistic', 'STATISTIC_ALIASES', 'per_image_table',
           'middle_share_of', 'share_bias_bound', 'SHARED_DESIGN', 'DESIGNS', 'design_name', 'plan_interaction']

ORDER_RATIOS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
"""The authors' 13 order ratios m / (n - 2)."""
VALUES = ('log-odds', 'logit', 'log-p')
"""What v(S) measures of the true class (``InteractionSettings.value``)."""
STATISTICS = {'mean-abs': 'J_abs', 'rms': 'I2', 'naive': 'J'}
"""`strength_curve`'s statistic -> the per-image column it aggregates. ``mean-abs`` is the paper's estimand (mean |I_m|
over images and pairs) with the Monte-Carlo noise removed, the default; ``rms`` the root-mean-square of I_m (its
square unbiased); ``naive`` the authors' mean |Î_m| as computed, noise included."""
STATISTIC_ALIASES = {'debiased': 'rms'}
"""Older names still accepted: ``debiased`` was the root-mean-square."""
STATISTIC_TEXT = {
    'mean-abs': "mean |I_m| over images and pairs, the paper's estimand, with the Monte-Carlo noise removed "
                '(mean of sqrt(max(Î² - se², 0)); its bias is within 1.05 estimated se per pair)',
    'rms': 'root-mean-square of I_m over images and pairs with the Monte-Carlo noise removed (sqrt of the mean '
           'of Î² - se²; unbiased square)',
    'naive': "the authors' mean |Î_m| over images and pairs (biased upward by up to the noise floor)",
}
"""The statistics in words, for reports and captions."""
STATISTIC_TEXT['debiased'] = STATISTIC_TEXT['rms']
BASELINES = ('zero', 'pixel-mean', 'black', 'blur')
"""What masked patches show (`masking_baseline`): ``zero`` = 0 after normalisation, the data set's mean colour (the
authors', the default); ``pixel-mean`` = each pixel's mean over the training images (Deng et al.); ``black`` = pixel
value 0; ``blur`` = a Gaussian-blurred copy of the image."""


def resolve_statistic(name: str) -> str:
    """The canonical name of a strength statistic (``debiased`` -> ``rms``); ValueError naming the accepted ones.

    Args:
        name: a statistic of `STATISTICS` or an alias of `STATISTIC_ALIASES`.
    """
    canonical = STATISTIC_ALIASES.get(name, name)
    if canonical not in STATISTICS:
        raise ValueError(f'statistic={name!r} is not supported; accepted: {", ".join(STATISTICS)} '
                         f'(debiased = rms, its older name)')
    return canonical


FIXED_DESIGN = 'fixed'
"""A per-image table's ``design``: the fixed design (K contexts per pair and order)."""
TWO_PHASE_DESIGN = 'two-phase'
"""The precision mode: a pilot that plans, fresh draws that estimate (unbiased)."""
SHARED_DESIGN = 'shared'
"""The shared-evaluation design (`moga_lab.analysis.shared`): one drawn context serves every pair that can use it."""
DESIGNS = (FIXED_DESIGN, SHARED_DESIGN, TWO_PHASE_DESIGN)
"""The designs `InteractionSettings.design` accepts."""
SEQUENTIAL_DESIGN = 'sequential'
"""The precision mode before moga_lab 1.0: sequential stopping that pooled the deciding draws (biased up); tables
of it are recognised and refused for resuming."""


@dataclass
class InteractionSettings:
    """How one image's strength curve is estimated: the game, the authors' design, and the precision mode.

    Attributes:
        grid: the image is cut into grid x grid patches, the players (n = grid²).
        num_pairs: player pairs (i, j) per image.
        num_contexts: contexts per pair and order in the fixed-budget mode, and the design whose cost
            ``max_forwards`` defaults to in the precision mode.
        neighbour_radius: j is drawn among i's neighbours within this Chebyshev distance (the authors': 2).
        ratios: orders as fractions of n - 2 (the authors' 13 ratios by default).
        value: v(S): 'log-odds' of the true class (default), 'logit' or 'log-p'.
        batch_size: masked images per forward pass.
        bf16: bf16 autocast for the trunk (``forward_features``; the head stays fp32): 2.2x faster on AMX but it
            moves v(S) by ~0.04 in log-odds; compare the exact orders (m = 0, n - 2) with and without it on one image
            before relying on it. On a CPU without native bfloat16 (e.g. AVX2 only) it is emulated and slower than
            float32 (a warning says so).
        seed: seed of the pairs and contexts.
        target_ci: the precision mode, e.g. 0.05: a pilot plans the contexts each pair needs for every order's 95 %
            interval of the debiased strength to be within 5 % of its value, then fresh contexts give the (unbiased)
            estimate (see `moga_lab.analysis.strength.estimate_strength`); None = the fixed budget.
        max_forwards: cap on distinct masked forward passes per image in the precision mode; None = 4 x orders x
            pairs x num_contexts, the fixed design's cost.
        initial_contexts: contexts per pair and order of the precision mode's pilot.
        min_contexts: the fewest contexts per pair and order of the precision mode's estimate.
        ci_floor: orders whose I2 is below this fraction of the mean I2 over the orders are held to that floor's
            absolute precision.
        baseline: what masked patches show, one of `BASELINES` (default ``zero``, the authors'; see
            `masking_baseline`).
        fuse: evaluate through the model's ``for_inference()`` copy when it has one (MogaNet; same values to 1e-4).
        compile: ``torch.compile`` the evaluated model (batches are padded to ``batch_size`` so it compiles once).
        design: one of `DESIGNS`: ``fixed`` (the authors': ``num_contexts`` of its own per pair and order),
            ``shared`` (`moga_lab.analysis.shared`: one drawn context serves every pair that can use it, up to
            ``share`` pairs; ``num_contexts`` per pair, or ``contexts_per_order``), ``two-phase`` (the precision mode;
            also chosen by giving ``target_ci``).
        share: the shared design's pairs per group sharing draws (None: all the image's pairs in one group).
        contexts_per_order: the shared design's contexts per pair at each order (a plan of
            `moga_lab.analysis.planner.plan_shared`); None = ``num_contexts`` at every order.

    Example:
        ```python
        fixed = InteractionSettings(grid=7, num_pairs=20, num_contexts=24)          # 28 px defaults
        precise = InteractionSettings(grid=14, num_pairs=50, target_ci=0.05, max_forwards=27_500, bf16=True)
        ```
    """
    grid: int = 7
    num_pairs: int = 20
    num_contexts: int = 24
    neighbour_radius: int = 2
    ratios: Sequence[float] = ORDER_RATIOS
    value: str = 'log-odds'
    batch_size: int = 256
    bf16: bool = False
    seed: int = 0
    target_ci: Optional[float] = None
    max_forwards: Optional[int] = None
    initial_contexts: int = 8
    min_contexts: int = 8
    ci_floor: float = 0.25
    baseline: str = 'zero'
    fuse: bool = True
    compile: bool = False
    design: str = 'fixed'
    share: Optional[int] = None
    contexts_per_order: Optional[Tuple[int, ...]] = None


def design_name(settings: InteractionSettings) -> str:
    """The design ``settings`` ask for, checked: ``two-phase`` whenever a ``target_ci`` is given; a ValueError
    names an unknown design, a target with the shared design, or a plan of the wrong length.

    Args:
        settings: the interaction settings.
    """
    if settings.design not in DESIGNS:
        raise ValueError(f'design {settings.design!r} is not accepted; accepted: {", ".join(DESIGNS)}')
    if settings.target_ci is not None:
        if settings.design == SHARED_DESIGN:
            raise ValueError('target_ci is the two-phase design\'s precision target; the shared design takes a plan '
                             '(contexts_per_order) or num_contexts: accepted: one of them')
        return TWO_PHASE_DESIGN
    if settings.design == TWO_PHASE_DESIGN:
        raise ValueError('the two-phase design needs target_ci (its precision target, e.g. 0.05)')
    if settings.contexts_per_order is not None and len(settings.contexts_per_order) != len(settings.ratios):
        raise ValueError(f'contexts_per_order has {len(settings.contexts_per_order)} entries for {len(settings.ratios)} '
                         'orders; accepted: one per order ratio')
    if settings.share is not None and settings.share < 1:
        raise ValueError(f'share={settings.share} is not accepted; accepted: an integer >= 1, or None (every pair)')
    return settings.design


# batch 64 at 224 px: 1.0-1.5x faster than 256 (benchmarks/interaction_speed.py --batch-size 64 256; docs/interaction.md)
IMAGENET_DEFAULTS = InteractionSettings(grid=14, num_pairs=50, num_contexts=50, batch_size=64)
"""The authors' design at 224 px (used above 64 px)."""
SMALL_IMAGE_DEFAULTS = InteractionSettings(grid=7, num_pairs=20, num_contexts=24)
"""The design for 28-32 px inputs (see the module docstring for why)."""


def masking_baseline(name: str, image: torch.Tensor, grid: int, mean: Sequence[float] = (0.0,),
                     std: Sequence[float] = (1.0,), pixel_mean: Optional[torch.Tensor] = None) -> torch.Tensor:
    """What the masked patches of ``image`` show, in normalised input space ([C, H, W], like ``image``).

    Args:
        name: one of `BASELINES`: ``zero`` (0, the data set's mean colour: the authors'), ``pixel-mean`` (each pixel's
            mean over the training images, Deng et al.; pass ``pixel_mean``), ``black`` (pixel value 0, i.e.
            -mean / std per channel), ``blur`` (the image blurred by a Gaussian of sigma = one patch's side: the
            patch's local average, with no edge of its own).
        image: the normalised image [C, H, W].
        grid: patches per side (sets the blur's sigma).
        mean: the normalisation's per-channel mean (``black``).
        std: the normalisation's per-channel std (``black``).
        pixel_mean: the mean training image, normalised [C, H, W] (``pixel-mean``; see
            `moga_lab.loaders.pixel_mean_image`).

    Returns:
        The baseline image.

    Raises:
        ValueError: an unknown name, or ``pixel-mean`` without ``pixel_mean``.
    """
    if name not in BASELINES:
        raise ValueError(f'baseline {name!r} is not accepted; accepted: {", ".join(BASELINES)}')
    if name == 'zero':
        return torch.zeros_like(image)
    if name == 'black':
        m = torch.as_tensor(mean, dtype=image.dtype, device=image.device).view(-1, 1, 1)
        s = torch.as_tensor(std, dtype=image.dtype, device=image.device).view(-1, 1, 1)
        return ((0 - m) / s).expand_as(image).clone()
    if name == 'pixel-mean':
        if pixel_mean is None:
            raise ValueError("baseline 'pixel-mean' needs the mean training image (pixel_mean=...; the commands "
                             'compute it with moga_lab.loaders.pixel_mean_image)')
        if tuple(pixel_mean.shape) != tuple(image.shape):
            raise ValueError(f'pixel_mean has shape {tuple(pixel_mean.shape)}; the image {tuple(image.shape)}')
        return pixel_mean.to(image.device, image.dtype).clone()
    from torchvision.transforms.v2.functional import gaussian_blur
    H, W = image.shape[-2:]
    sigma = max(H, W) / grid
    kernel = min(2 * math.ceil(3 * sigma) + 1, 2 * ((min(H, W) - 1) // 2) + 1)  # odd, padding within the image
    return gaussian_blur(image, [kernel, kernel], [sigma, sigma])


def default_settings(image_size: int) -> InteractionSettings:
    if image_size <= 64:
        return InteractionSettings(**{**SMALL_IMAGE_DEFAULTS.__dict__, 'grid': 8 if image_size % 8 == 0 else 7})
    return InteractionSettings(**IMAGENET_DEFAULTS.__dict__)


class ImageGame:
    """v(S) for one image: ``game(masks)`` maps bool [B, grid²] -> float [B] (float64 on CPU).

    Patch (r, c) covers rows floor(r H / grid) .. and columns likewise, so H and W need not be multiples of the grid.
    Patches outside S are set to ``baseline`` in normalised input space.

    Args:
        model: the classifier, in eval mode.
        image: one normalised image [C, H, W].
        label: the class whose value is measured (the ground truth).
        grid: patches per side.
        baseline: the value masked patches take (0 = the dataset's mean colour).
        value: 'log-odds', 'logit' or 'log-p' of ``label``.
        bf16: bf16 autocast for the trunk, head in fp32.
        pad_to: pad every batch to this size (one shape for ``torch.compile``).
    """

    def __init__(self, model: nn.Module, image: torch.Tensor, label: int, grid: int, baseline: float = 0.0,
                 value: str = 'log-odds', bf16: bool = False, pad_to: Optional[int] = None):
        if value not in VALUES:
            raise ValueError(f'value={value!r} is not supported; accepted: {", ".join(VALUES)}')
        if image.ndim != 3:
            raise ValueError(f'image must be [C, H, W]; got shape {tuple(image.shape)}')
        C, H, W = image.shape
        if not 1 <= grid <= min(H, W):
            raise ValueError(f'grid={grid} is not valid for a {H}x{W} image; accepted: 1..{min(H, W)}')
        self.model, self.label, self.grid, self.value, self.bf16 = model, int(label), grid, value, bf16
        if bf16 and image.device.type == 'cpu' and not onednn_bf16():
            warnings.warn(f'bf16=True on a CPU without {NATIVE_BF16}: autocast emulates it here, many times slower '
                          'than float32 and no more precise; '
                          'use bf16=False (leave out --bf16) on this machine', UserWarning, stacklevel=2)
        self.pad_to = pad_to  # a compiled model sees one batch shape only (no recompiles for the last batch)
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
        B = len(masks)
        if self.pad_to and B < self.pad_to:
            masks = torch.cat([masks, masks[:1].expand(self.pad_to - B, -1)])
        x = self.inputs(masks)
        if self.bf16 and hasattr(self.model, 'forward_features') and hasattr(self.model, 'forward_head'):
            # bf16 for the trunk only: logits rounded to bf16 (8-bit mantissa) would be off by ~0.04 at |logit| ~ 10,
            # more than a trained model's typical interaction; the head (pool + norm + linear) is cheap in fp32
            with torch.autocast(x.device.type, dtype=torch.bfloat16):
                features = self.model.forward_features(x)
            with torch.autocast(x.device.type, enabled=False):
                logits = self.model.forward_head(features.float())
        else:
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                logits = self.model(x)
        return logits_to_value(logits[:B].float(), self.label, self.value)


def logits_to_value(logits: torch.Tensor, label: int, value: str = 'log-odds') -> torch.Tensor:
    if value == 'logit':
        return logits[:, label]
    if value == 'log-p':
        return logits.log_softmax(-1)[:, label]
    others = torch.cat([logits[:, :label], logits[:, label + 1:]], dim=1)
    return logits[:, label] - others.logsumexp(-1)  # log p / (1 - p), stable


def _image_generator(seed: int, image_id: int) -> torch.Generator:
    # pairs and contexts depend only on (seed, image id): every model sees the same draws
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(image_id))


def evaluation_model(model: nn.Module, settings: InteractionSettings) -> nn.Module:
    """The module the game runs.

    The model's ``for_inference()`` copy when it has one and ``settings.fuse`` (MogaNet: BatchNorms, layer scales,
    FD and CA folded, oneDNN post-ops; same values to 1e-4), optionally compiled. Build it once and pass it to
    `interaction_strength` for many images: a module this function made is used as it is (no second fold, no
    recompilation).

    Args:
        model: any classifier ``nn.Module``.
        settings: ``fuse`` and ``compile`` are read.

    Returns:
        The module to evaluate, in eval mode.
    """
    if getattr(model, '_moga_lab_evaluation_model', False):
        return model
    fuse = getattr(model, 'for_inference', None) if settings.fuse else None
    if fuse is not None:
        runner = fuse(channels_last=True, compile=settings.compile)
    elif settings.compile:
        runner = torch.compile(model.eval())
    else:
        return model.eval()  # the caller's own module: not marked, so later settings still apply to it
    runner._moga_lab_evaluation_model = True
    return runner


# the per-image columns, in order (see interaction_strength)
STRENGTH_COLUMNS = ('J', 'J_se', 'J_debiased', 'J_debiased_se', 'J_debiased_low', 'J_debiased_high', 'noise_floor',
                    'I2', 'I2_se', 'J_abs', 'J_abs_se', 'J_abs_bias_bound')


def interaction_strength(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                         settings: Optional[InteractionSettings] = None, model_name: str = 'model',
                         image_ids: Optional[Sequence[int]] = None, baseline: Optional[float] = None,
                         progress: Optional[Callable[[int], None]] = None, pixel_mean: Optional[torch.Tensor] = None,
                         mean: Sequence[float] = (0.0,), std: Sequence[float] = (1.0,)) -> pd.DataFrame:
    """Per-image multi-order interaction strength of a classifier, as a tidy table.

    ``model`` is any classifier ``nn.Module`` (evaluated in eval mode, through ``for_inference()`` when it has one).
    Each row is one image and order: model, image_id, label, order (m), ratio (m / (n-2)), then the statistics of
    `moga_lab.analysis.strength.order_statistics`: J (mean over pairs of |Î_m|: the authors' statistic, biased
    upward by up to noise_floor), J_se, J_debiased (root-mean-square of I_m over pairs with the noise removed:
    sqrt(mean(Î² - se²))), J_debiased_se, J_debiased_low / J_debiased_high (95 % interval), noise_floor (mean over
    pairs of se * sqrt(2/pi)), I2 / I2_se (the unbiased mean square the RMS curve aggregates), J_abs / J_abs_se
    (mean over pairs of sqrt(max(Î² - se², 0)): mean |I_m| with the noise removed, the paper's estimand, which the
    default curve aggregates) and J_abs_bias_bound (1.05 x mean se: its bias bound) -- all Monte-Carlo
    uncertainties given the image's pairs; then contexts (mean contexts per pair at this order), converged (the
    order met ``target_ci``), forwards (distinct masked forward passes for this image), n_players, num_pairs,
    num_contexts, target_ci, baseline.

    Args:
        model: the classifier.
        images: normalised [N, C, H, W].
        labels: [N] ground-truth classes.
        settings: the design; None = `SMALL_IMAGE_DEFAULTS` at <= 64 px, `IMAGENET_DEFAULTS` above.
        model_name: the ``model`` column.
        image_ids: the ``image_id`` column; None = 0 .. N-1.
        baseline: a number masked patches take in normalised space instead of ``settings.baseline`` (the
            ``baseline`` column then says ``value=<number>``).
        progress: called with the number of forward passes done, for progress bars.
        pixel_mean: the mean training image [C, H, W] for ``settings.baseline='pixel-mean'``.
        mean: the normalisation's per-channel mean (for ``black``).
        std: the normalisation's per-channel std (for ``black``).

    Returns:
        The per-image table (pandas); aggregate it with `strength_curve`.

    Example:
        ```python
        table = interaction_strength(model, images, labels, InteractionSettings(grid=7, target_ci=0.05))
        curve = strength_curve(table)
        ```
    """
    s = settings or default_settings(images.shape[-1])
    design = design_name(s)
    if len(images) != len(labels):
        raise ValueError(f'{len(images)} images but {len(labels)} labels')
    image_ids = list(range(len(images))) if image_ids is None else list(image_ids)
    was_training = model.training
    model.eval()
    runner = evaluation_model(model, s)
    rows = []
    try:
        for image, label, image_id in zip(images, labels, image_ids):
            fill = (torch.full_like(image, float(baseline)) if baseline is not None else
                    masking_baseline(s.baseline, image, s.grid, mean, std, pixel_mean))
            game = ImageGame(runner, image, int(label), s.grid, baseline=fill, value=s.value, bf16=s.bf16,
                             pad_to=s.batch_size if s.compile else None)
            n = game.n_players
            orders = order_grid(n, s.ratios)
            g = _image_generator(s.seed, image_id)
            pairs = sample_pairs(s.grid, s.num_pairs, s.neighbour_radius, generator=g)
            if design == SHARED_DESIGN:
                est = estimate_shared(game, n, pairs, orders, list(s.contexts_per_order or [s.num_contexts] * len(orders)),
                                      share=s.share, generator=g, batch_size=s.batch_size, progress=progress)
            elif design == FIXED_DESIGN:  # the fixed design draws all its contexts at once (same draws as before)
                est = estimate_strength(game, n, pairs, orders, contexts=sample_contexts(n, pairs, orders,
                                        s.num_contexts, generator=g), batch_size=s.batch_size, progress=progress)
            else:
                est = estimate_strength(game, n, pairs, orders, num_contexts=s.num_contexts, target_ci=s.target_ci,
                                        max_forwards=s.max_forwards, initial_contexts=s.initial_contexts,
                                        min_contexts=s.min_contexts, ci_floor=s.ci_floor, generator=g,
                                        batch_size=s.batch_size, progress=progress)
            for o, (m, r) in enumerate(zip(orders, s.ratios)):
                row = dict(model=model_name, image_id=int(image_id), label=int(label), order=int(m), ratio=float(r))
                row.update({c: float(est.stats[c][o]) for c in STRENGTH_COLUMNS})
                row.update(contexts=float(est.stats['contexts'][o]), converged=bool(est.converged[o]),
                           forwards=est.forwards, n_players=n, num_pairs=len(pairs), num_contexts=s.num_contexts,
                           target_ci=s.target_ci if s.target_ci is not None else float('nan'),
                           baseline=s.baseline if baseline is None else f'value={float(baseline):g}', design=design,
                           I2_df=float(est.stats['I2_df'][o]) if 'I2_df' in est.stats else float('inf'),
                           share=float(s.share) if design == SHARED_DESIGN and s.share is not None else float('nan'))
                rows.append(row)
    finally:
        model.train(was_training)
    return pd.DataFrame(rows)


def plan_interaction(models: Sequence[nn.Module], images: torch.Tensor, labels: torch.Tensor,
                     settings: InteractionSettings, budget: Optional[float] = None,
                     target_share_se: Optional[float] = None, statistic: str = 'rms', pilot_images: int = 2,
                     image_ids: Optional[Sequence[int]] = None, pixel_mean: Optional[torch.Tensor] = None,
                     mean: Sequence[float] = (0.0,), std: Sequence[float] = (1.0,),
                     progress: Optional[Callable[[int], None]] = None) -> Tuple['DesignPlan', InteractionSettings]:
    """A shared-design plan for these models from a pilot on their first ``pilot_images`` images (one plan for every
    model, so that they are compared on the same pairs and contexts), and the settings that run it.

    The pilot (`moga_lab.analysis.planner.run_pilot`: 40 pairs x 4 contexts, all sharing draws, per model and
    pilot image, its pairs drawn apart from the estimate's) only plans; the estimate then draws afresh
    (`interaction_strength` with the returned settings). See `moga_lab.analysis.planner` for the variance model.

    Args:
        models: the classifiers.
        images: normalised [N, C, H, W] (the pilot uses the first ``pilot_images``).
        labels: [N] classes.
        settings: the game and its defaults (grid, ratios, value, baseline, seed, share); design and contexts are
            replaced by the plan's.
        budget: forward passes per image to spend.
        target_share_se: the middle share's standard error per image to reach instead.
        statistic: 'rms' or 'mean-abs' (what the plan makes precise).
        pilot_images: images of the pilot.
        image_ids: the images' ids (the pilot's pairs are drawn from them, apart from the estimate's).
        pixel_mean: the mean training image for ``baseline='pixel-mean'``.
        mean: the normalisation's per-channel mean.
        std: the normalisation's per-channel std.
        progress: progress callback (forward passes).

    Returns:
        ``(plan, settings)``: the `moga_lab.analysis.planner.DesignPlan` and the settings of the shared design.
    """
    from dataclasses import replace
    from moga_lab.analysis.planner import PilotComponents, plan_shared, run_pilot
    statistic = resolve_statistic(statistic)
    if statistic not in ('rms', 'mean-abs'):
        raise ValueError(f'statistic {statistic!r} cannot be planned for; accepted: rms, mean-abs')
    ids = list(range(len(images))) if image_ids is None else list(image_ids)
    k = max(1, min(int(pilot_images), len(images)))
    n = settings.grid ** 2
    orders = order_grid(n, settings.ratios)
    components = []
    for model in models:
        runner = evaluation_model(model, settings)
        games, pair_sets = [], []
        for image, label, image_id in zip(images[:k], labels[:k], ids[:k]):
            fill = masking_baseline(settings.baseline, image, settings.grid, mean, std, pixel_mean)
            games.append(ImageGame(runner, image, int(label), settings.grid, baseline=fill, value=settings.value,
                                   bf16=settings.bf16))
            # the pilot's own pairs and contexts: a stream apart from the estimate's (seed + 1 million)
            g = _image_generator(settings.seed + 1_000_000, image_id)
            pair_sets.append(sample_pairs(settings.grid, 40, settings.neighbour_radius, generator=g))
        components.append(run_pilot(games, n, pair_sets, orders, ratios=settings.ratios, generator=g,
                                    batch_size=settings.batch_size, progress=progress))
    c0 = components[0]
    pooled = PilotComponents(c0.orders, np.mean([c.theta for c in components], 0),
                             np.mean([c.abs_mean for c in components], 0),
                             {s: float(np.mean([c.pair_share_var[s] for c in components])) for s in c0.pair_share_var},
                             np.mean([c.b1 for c in components], 0), np.mean([c.b2 for c in components], 0),
                             np.mean([c.se_unit for c in components], 0), np.max([c.rho for c in components], 0),
                             c0.share, sum(c.forwards for c in components), c0.deterministic)
    plan = plan_shared(pooled, n, settings.grid, budget=budget, target_share_se=target_share_se, statistic=statistic,
                       ratios=settings.ratios, radius=settings.neighbour_radius)
    planned = replace(settings, design=SHARED_DESIGN, num_pairs=plan.num_pairs, contexts_per_order=plan.contexts,
                      num_contexts=int(round(float(np.mean(plan.contexts)))), share=plan.share, target_ci=None)
    return plan, planned


def _curve_of(statistic: str):
    """Means over images [..., orders] of the statistic's column -> the curve: the root for ``rms`` (the mean of the
    unbiased I2 first, then the root), the means themselves for ``mean-abs`` and ``naive``."""
    if statistic == 'rms':
        return lambda x: np.sqrt(np.clip(x, 0, None))
    return lambda x: x


def _statistic_column(frame: pd.DataFrame, statistic: str) -> Tuple[str, str]:
    statistic = resolve_statistic(statistic)
    column = STATISTICS[statistic]
    if column not in frame.columns:
        raise ValueError(f'the interaction table has no {column!r} column for statistic {statistic!r} (written by an '
                         f'older moga_lab?); recompute it, or use a statistic whose column it has')
    return statistic, column


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
    statistic, column = _statistic_column(frame, statistic)
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
        if design_of(frame) == SEQUENTIAL_DESIGN:
            return (f'the sequential precision mode of moga_lab < 1.0 (target {100 * target:.3g} %; its estimate pools '
                    f'the draws that decided when to stop, which biases it up: recompute){paid}')
        return (f"a pilot that planned the contexts for each image's 95 % interval at every order to be within "
                f"{100 * target:.3g} % of its value, then fresh contexts for the estimate (met by {100 * met:.0f} % "
                f"of image-orders; mean {frame.contexts.mean():.0f} contexts per pair and order{paid})")
    return f'{int(frame.num_contexts.iloc[0])} contexts per pair and order{paid}'


def design_of(frame: pd.DataFrame) -> str:
    """Which design made a per-image table: `FIXED_DESIGN`, `TWO_PHASE_DESIGN` or (a table written by moga_lab before
    1.0 in its precision mode, which has no ``design`` column) `SEQUENTIAL_DESIGN`.

    Args:
        frame: a per-image table of `interaction_strength`.
    """
    if 'design' in frame.columns and len(frame):
        return str(frame['design'].iloc[0])
    target = frame['target_ci'].iloc[0] if 'target_ci' in frame.columns and len(frame) else float('nan')
    return FIXED_DESIGN if target != target else SEQUENTIAL_DESIGN


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
    if design_of(frame) == SEQUENTIAL_DESIGN:
        found.append('the sequential precision mode of moga_lab < 1.0 (biased; this run: the two-phase design)')
    elif 'design' in frame.columns and set(frame.design) != {design_name(settings)}:
        found.append(f'design {sorted(set(frame.design))} (this run: {design_name(settings)})')
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


def per_image_target(target_ci: Optional[float], num_images: int, over: str = 'images') -> Optional[float]:
    """The per-image precision that gives about ``target_ci`` on the mean over ``num_images`` images.

    Monte-Carlo errors of independent images add in quadrature, so each image may be sqrt(N) times less precise
    (exact when the images' strengths are equal; `image_set_precision` reports what was reached). The CLI's and the
    study scripts' ``--target-over`` / ``target_over`` pass ``over``.

    Args:
        target_ci: the relative 95 % half-width wanted (None: the fixed design, returned as None).
        num_images: images in the set.
        over: ``images`` (the target is for the curve over the images) or ``image`` (already per image: returned
            as it is).

    Returns:
        ``target_ci * sqrt(num_images)`` for ``over='images'``, else ``target_ci``.

    Raises:
        ValueError: ``over`` is neither ``image`` nor ``images``.
    """
    if over not in ('image', 'images'):
        raise ValueError(f'target over {over!r} is not accepted; accepted: image (the target per image) or images '
                         '(the target for the curve over the images)')
    if target_ci is None or over == 'image':
        return target_ci
    return float(target_ci) * float(np.sqrt(num_images))


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


def per_image_table(frame: pd.DataFrame, model: str, statistic: str) -> pd.DataFrame:
    """One model's [images x order ratios] of the per-image column ``statistic`` aggregates (J_abs, I2 or J).

    Args:
        frame: a per-image table of `interaction_strength`.
        model: the model's name in the ``model`` column.
        statistic: a statistic of `STATISTICS`.
    """
    _, column = _statistic_column(frame, statistic)
    sub = frame[frame.model == model]
    return sub.pivot_table(index='image_id', columns='ratio', values=column, aggfunc='mean').sort_index(axis=1)


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


def middle_share_difference(frame: pd.DataFrame, model_a: str, model_b: str, statistic: str = 'mean-abs',
                            low: float = 0.2, high: float = 0.6, num_bootstrap: int = 2000,
                            seed: int = 0, return_draws: bool = False) -> Dict[str, float]:
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
        return_draws: also return the bootstrap draws of the difference (``draws``, [num_bootstrap]).

    Returns:
        ``dict(difference, ci_low, ci_high, num_images)``; the interval excluding 0 decides the sign.
    """
    tables = [per_image_table(frame, m, statistic) for m in (model_a, model_b)]
    common = tables[0].index.intersection(tables[1].index)
    if len(common) == 0:
        raise ValueError(f'{model_a} and {model_b} share no images in the table')
    a, b = (t.loc[common].to_numpy() for t in tables)
    share = middle_share_of(tables[0].columns, statistic, low, high)
    lo, hi, draws = bootstrap_images(lambda idx: share(a[idx].mean(1)) - share(b[idx].mean(1)), len(common),
                                     num_bootstrap, seed)
    diff = share(a.mean(0)) - share(b.mean(0))
    out = dict(difference=float(diff), ci_low=float(lo), ci_high=float(hi), num_images=len(common))
    if return_draws:
        out['draws'] = draws
    return out


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
