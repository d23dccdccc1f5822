"""Estimating a classifier's multi-order interaction strength per image: the design (`InteractionSettings`: the
game's grid, pairs, contexts, the authors' fixed design, the shared-evaluation design, the two-phase precision mode),
`interaction_strength` (a tidy per-image table) and `plan_interaction` (a shared-design plan from a pilot).

Defaults, for 224 px ImageNet (the authors'): 14 x 14 grid, 50 pairs per image with j among the neighbours of i within
Chebyshev distance 2, 50 contexts per pair and order, 13 order ratios (`IMAGENET_DEFAULTS`).

Defaults for 28-32 px inputs (`SMALL_IMAGE_DEFAULTS`): a 7 x 7 grid of 4 x 4 px patches (8 x 8 for 32 px), 20 pairs
and 24 contexts. Why: Deng et al. used a 16 x 16 grid (2 x 2 px patches), 200 pairs and 100 contexts on CIFAR-10, i.e.
~10^6 forward passes per image -- hours per image on a 2-core CPU. A 4 x 4 px patch of a 28 px garment is about the
share of the object that a 16 x 16 px patch is of a 224 px ImageNet object, n = 49 keeps the orders 0.05 n .. 0.95 n
distinct (2, 4, 9, ... 44), and 20 x 24 x 13 x 4 = 25k coalitions take seconds per image for MogaNet-XT through its
fused model. The intervals reported with every number say whether that budget is enough.

Each table row holds the per-order statistics of `moga_lab.analysis.strength.order_statistics`: mean |I| with the
noise removed (``J_abs``, the paper's estimand, with its bias bound), the RMS's unbiased square (``I2``) and the
authors' naive mean |Î| (``J``, with its noise floor); `moga_lab.analysis.curves` aggregates them over images.
"""
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from moga_lab.analysis.coalitions import ORDER_RATIOS, order_grid, sample_contexts, sample_pairs
from moga_lab.analysis.game import ImageGame, masking_baseline
from moga_lab.analysis.shared import estimate_shared
from moga_lab.analysis.strength import estimate_strength


if TYPE_CHECKING:  # (a type only: the planner is imported where a plan is made)
    from moga_lab.analysis.planner import DesignPlan

__all__ = ['InteractionSettings', 'DESIGNS', 'FIXED_DESIGN', 'SHARED_DESIGN', 'TWO_PHASE_DESIGN', 'design_name',
           'IMAGENET_DEFAULTS', 'SMALL_IMAGE_DEFAULTS', 'default_settings', 'evaluation_model', 'interaction_strength',
           'plan_interaction', 'per_image_target', 'STRENGTH_COLUMNS']


FIXED_DESIGN = 'fixed'
"""A per-image table's ``design``: the fixed design (K contexts per pair and order)."""

TWO_PHASE_DESIGN = 'two-phase'
"""The precision mode: a pilot that plans, fresh draws that estimate (unbiased)."""

SHARED_DESIGN = 'shared'
"""The shared-evaluation design (`moga_lab.analysis.shared`): one drawn context serves every pair that can use it."""

DESIGNS = (FIXED_DESIGN, SHARED_DESIGN, TWO_PHASE_DESIGN)
"""The designs `InteractionSettings.design` accepts."""


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
        share: the shared design's pairs per group sharing draws (None: 16, `moga_lab.analysis.shared.DEFAULT_SHARE`).
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


def default_settings(image_size: int) -> InteractionSettings:
    """The defaults at an image size: `SMALL_IMAGE_DEFAULTS` up to 64 px (an 8 x 8 grid when the size divides by 8),
    `IMAGENET_DEFAULTS` above.

    Args:
        image_size: the images' side in pixels.
    """
    if image_size <= 64:
        return InteractionSettings(**{**SMALL_IMAGE_DEFAULTS.__dict__, 'grid': 8 if image_size % 8 == 0 else 7})
    return InteractionSettings(**IMAGENET_DEFAULTS.__dict__)


def image_generator(seed: int, image_id: int) -> torch.Generator:
    """The generator of an image's pairs and contexts: they depend only on (seed, image id), so every model sees the
    same draws.

    Args:
        seed: the settings' seed.
        image_id: the image's id.
    """
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


STRENGTH_COLUMNS = ('J', 'J_se', 'J_debiased', 'J_debiased_se', 'J_debiased_low', 'J_debiased_high', 'noise_floor',
                    'I2', 'I2_se', 'J_abs', 'J_abs_se', 'J_abs_bias_bound')
"""The per-order statistics of a per-image table, in order (see `interaction_strength`)."""


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
            g = image_generator(s.seed, image_id)
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

    The pilot (`moga_lab.analysis.planner.run_pilot`: 40 pairs x 4 contexts, sharing draws in groups of 16, per model and
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
    from moga_lab.analysis.planner import PilotComponents, plan_shared, run_pilot
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
            g = image_generator(settings.seed + 1_000_000, image_id)
            pair_sets.append(sample_pairs(settings.grid, 40, settings.neighbour_radius, generator=g))
        components.append(run_pilot(games, n, pair_sets, orders, ratios=settings.ratios, generator=g,
                                    batch_size=settings.batch_size, progress=progress))
    c0 = components[0]
    pooled = PilotComponents(c0.orders, np.mean([c.theta for c in components], 0),
                             np.mean([c.abs_mean for c in components], 0),
                             {s: float(np.mean([c.pair_share_var[s] for c in components])) for s in c0.pair_share_var},
                             np.mean([c.b1 for c in components], 0), np.mean([c.b2 for c in components], 0),
                             np.mean([c.se_unit for c in components], 0), np.max([c.rho for c in components], 0),
                             c0.share, sum(c.forwards for c in components), c0.deterministic,
                             float(np.mean([c.pair_share_noise for c in components])))
    plan = plan_shared(pooled, n, settings.grid, budget=budget, target_share_se=target_share_se, statistic=statistic,
                       ratios=settings.ratios, radius=settings.neighbour_radius)
    planned = replace(settings, design=SHARED_DESIGN, num_pairs=plan.num_pairs, contexts_per_order=plan.contexts,
                      num_contexts=int(round(float(np.mean(plan.contexts)))), share=plan.share, target_ci=None)
    return plan, planned


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
