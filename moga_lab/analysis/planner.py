"""A planner for the shared-evaluation design: from a short pilot on the model and images at hand, the number of
pairs, the contexts per pair at each order and the size of the groups of pairs that share draws that make the chosen
statistic's curve most precise per forward pass, within a budget or to a precision target.

**The variance model.** An image's middle share is a function of its per-order strengths theta_m (mean over its P
pairs of the unbiased U_pm for the RMS, of sqrt(max(U, 0)) for mean |I|). To first order its error is
sum_m g_m (theta_hat_m - theta_m), g the share's gradient, and with the pairs drawn at random and each pair's K_m
contexts

    Var(share) ~ [ A + sum_m g_m² (1 + rho_m) (b1_m / K_m + b2_m / (K_m (K_m - 1))) ] / P,

A the variance over pairs of a pair's share influence sum_m g_m I²_pm (which pairs are drawn: the term the fixed
design's budget never touches), b1 = mean_p 4 I_p² s_p² and b2 = mean_p 2 s_p⁴ the per-pair Monte-Carlo terms of U,
and rho_m the share of that variance that pairs sharing draws add (measured in the pilot). The cost of (P, K, share)
is found by drawing the design's contexts without evaluating anything (`moga_lab.analysis.shared.expected_cost`).
Given P and the sharing, the K_m that minimise the variance at a cost are Neyman's, K_m ∝ sqrt(g_m² (1 + rho_m)
b1_m / c_m) with c_m the passes per dv at order m; the planner searches P and the sharing on a grid.

**Two stages.** The pilot's pairs and draws only plan; the estimate draws afresh with the plan fixed before it
draws (so each pair's K_m contexts are independent of its values and the estimate keeps its law), as the precision
mode does. For mean |I| the plan also states the bias bound of the share it reaches (its worst case over the laws of
dv, `moga_lab.analysis.curves.share_bias_bound`'s rule); where that bound is larger than the share's standard
error, mean |I| cannot be estimated within its bias at the budget, and the plan says so.
"""
import math
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple, cast

import numpy as np
import torch

from moga_lab.analysis.coalitions import INTERACTION_SIGNS, ValueFn, check_pairs_orders, sample_pairs, with_pairs
from moga_lab.analysis.shared import DEFAULT_SHARE, draw_shared_contexts, grouped_jackknife
from moga_lab.analysis.strength import ABS_BIAS_FACTOR, CachedValues, PairSamples, pair_summary

__all__ = ['PilotComponents', 'DesignPlan', 'run_pilot', 'plan_shared', 'PAIR_GRID', 'SHARE_GRID']

PAIR_GRID = (8, 16, 24, 32, 48, 64, 96, 128)
"""Pairs per image the planner tries (for n = 49; scaled by n / 49 for other grids)."""
SHARE_GRID = (4, 8, 16)
"""Groups of pairs sharing draws that the planner tries (no larger: see `moga_lab.analysis.shared.DEFAULT_SHARE`)."""


@dataclass
class PilotComponents:
    """What the pilot measured, per order (numpy arrays [O]) and over pairs.

    Attributes:
        orders: the orders m.
        theta: the mean over pairs of I² per order (the RMS's square).
        abs_mean: the mean over pairs of |I| per order (J_abs).
        pair_share_var: A, the variance over pairs of a pair's share influence, per statistic (``rms``, ``mean-abs``).
        b1: mean_p 4 I_p² s_p² per order.
        b2: mean_p 2 s_p⁴ per order.
        se_unit: mean_p s_p per order (a pair's se is se_unit / sqrt(K)).
        rho: the share of variance from shared draws, per order, at the pilot's ``share``.
        share: the pilot's pairs per draw.
        forwards: the pilot's forward passes.
        deterministic: the orders with a single context (m = 0, n - 2).
        pair_share_noise: the part of ``pair_share_var['rms']`` that is the pilot's own Monte-Carlo noise (each
            pilot pair's plug-in variance of its U at the pilot's contexts, through the share): at 1 x A or more, the
            pairs' spread cannot be told from noise (`benchmarks/planner_calibration.py`). Reported, not used.
    """
    orders: List[int]
    theta: np.ndarray
    abs_mean: np.ndarray
    pair_share_var: Dict[str, float]
    b1: np.ndarray
    b2: np.ndarray
    se_unit: np.ndarray
    rho: np.ndarray
    share: Optional[int]
    forwards: int
    deterministic: np.ndarray
    pair_share_noise: float = float('nan')


@dataclass
class DesignPlan:
    """A plan for the shared design and what it expects to reach, per image.

    Attributes:
        num_pairs: pairs per image.
        contexts: K per order.
        share: pairs per group sharing draws.
        forwards: expected forward passes per image.
        share_se: expected standard error of the image's middle share under ``statistic``.
        order_rse: expected relative standard error of each order's strength (worst order: its max).
        statistic: the statistic planned for.
        share_bias: the share's bias bound (mean |I|; 0 for the RMS).
        pilot_forwards: the pilot's passes (set aside).
        notes: what the plan could not do (e.g. mean |I| not estimable within its bias at the budget).
    """
    num_pairs: int
    contexts: Tuple[int, ...]
    share: Optional[int]
    forwards: float
    share_se: float
    order_rse: Tuple[float, ...]
    statistic: str
    share_bias: float = 0.0
    pilot_forwards: int = 0
    notes: List[str] = field(default_factory=list)

    def describe(self) -> str:
        """The plan in words, as the CLI prints it."""
        share = f'groups of {self.share or DEFAULT_SHARE} pairs'
        ks = '/'.join(str(k) for k in self.contexts)
        text = (f'plan ({self.statistic}): {self.num_pairs} pairs per image; contexts per pair by order {ks}; draws '
                f'shared by {share}; ~{self.forwards:,.0f} forward passes per image (pilot {self.pilot_forwards:,} set '
                f'aside); expected per image: middle-share s.e. {self.share_se:.4f}, worst order relative s.e. '
                f'{max(self.order_rse):.0%}')
        if self.statistic == 'mean-abs':
            text += f', share bias bound ±{self.share_bias:.4f}'
        return text + ''.join(f'\n  note: {n}' for n in self.notes)


def _share_gradient(curve: np.ndarray, band: np.ndarray) -> np.ndarray:
    total = curve.sum()
    share = curve[band].sum() / total
    return (band.astype(float) - share) / total


def _floored(curve: np.ndarray) -> np.ndarray:
    """The curve with each order held to at least 10 % of its mean: an order near 0 (or below it, in a noisy pilot)
    would make the root's gradient unbounded and draw every context to itself, while a curve over many images takes
    its root after the mean over images, where such an order weighs little."""
    return np.maximum(curve, 0.1 * max(float(np.mean(np.abs(curve))), 1e-300))


def run_pilot(games: Sequence[ValueFn], n_players: int, pair_sets: Sequence[torch.Tensor], orders: Sequence[int],
              band: Tuple[float, float] = (0.2, 0.6), ratios: Optional[Sequence[float]] = None, contexts: int = 4,
              share: Optional[int] = None, generator: Optional[torch.Generator] = None, batch_size: int = 512,
              progress: Optional[Callable[[int], None]] = None) -> PilotComponents:
    """The pilot: the shared design at ``contexts`` per pair on a few images, reduced to the planner's components.

    Args:
        games: one value function per pilot image.
        n_players: n.
        pair_sets: the pilot's pairs of each image (int64 [P, 2]).
        orders: the orders m.
        band: the middle band (order ratios).
        ratios: the order ratios of ``orders`` (default m / (n - 2)).
        contexts: K per pair in the pilot (3 at least: a variance and a jackknife need them).
        share: pairs per group sharing draws in the pilot (None: `DEFAULT_SHARE`).
        generator: torch random generator.
        batch_size: coalitions per call of a game.
        progress: progress callback (coalitions).
    """
    if contexts < 3:
        raise ValueError(f'pilot contexts={contexts} is not accepted; accepted: 3 or more')
    ratio = np.asarray(ratios if ratios is not None else [m / (n_players - 2) for m in orders])
    inner: np.ndarray = (ratio >= band[0]) & (ratio <= band[1])
    per_image = []
    forwards = 0
    for game, pairs in zip(games, pair_sets):
        pairs, orders = check_pairs_orders(n_players, pairs, orders)
        draws = draw_shared_contexts(n_players, pairs, orders, contexts, generator, share)
        values = CachedValues(game, batch_size, progress, remember=False)
        v = values(with_pairs(draws.contexts[draws.draw], pairs[draws.pair]).reshape(-1, n_players)).view(-1, 4)
        forwards += values.forwards
        samples = PairSamples(len(orders), len(pairs))
        samples.add(draws.order[draws.draw], draws.pair, (v * INTERACTION_SIGNS).sum(-1))
        summary = pair_summary(samples)
        grouped = grouped_jackknife(samples, draws.draw)
        det = np.array([m in (0, n_players - 2) for m in orders])
        u = summary['U'].numpy().copy()
        u[det] = summary['mean'].numpy()[det] ** 2
        s2 = np.nan_to_num(summary['var'].numpy())
        s2[det] = 0.0
        per_image.append(dict(u=u, s2=s2, diag=grouped['I2_diagonal'].numpy(),
                              cross=(grouped['I2'] - grouped['I2_diagonal']).numpy()))
    u = np.concatenate([d['u'] for d in per_image], axis=1)                     # [O, pairs of all pilot images]
    s2 = np.concatenate([d['s2'] for d in per_image], axis=1)
    a = np.sqrt(np.clip(u, 0, None))
    # a pilot of few contexts per pair can put an order's mean U near or below 0; mean |I| (never below 0) bounds
    # the curve from below there, so that no order looks empty to the plan
    theta = np.maximum(u.mean(1), a.mean(1) ** 2 / 2)
    b1 = (4 * np.clip(u, 0, None) * s2).mean(1)
    b2 = (2 * s2 ** 2).mean(1)
    cross = np.mean([d['cross'] for d in per_image], axis=0)
    rho = np.clip(cross / np.maximum(np.mean([d['diag'] for d in per_image], axis=0), 1e-300), 0, None)
    # A: the spread of the pairs' share influence over the pilot's pairs, its Monte-Carlo noise left in (at 4 contexts
    # per pair the plug-in noise terms are too rough to subtract; A a little too large makes the plan favour pairs)
    pair_var = {}
    curve = _floored(np.sqrt(np.clip(theta, 0, None)))
    g = _share_gradient(curve, inner) / (2 * curve)                                # d share / d theta_m (RMS)
    pair_var['rms'] = float((g[:, None] * u).sum(0).var(ddof=1))
    noise = float(((g[:, None] ** 2) * (4 * np.clip(u, 0, None) * s2 / contexts
                                        + 2 * s2 ** 2 / (contexts * (contexts - 1)))).sum(0).mean())
    pair_var['mean-abs'] = float((_share_gradient(_floored(a.mean(1)), inner)[:, None] * a).sum(0).var(ddof=1))
    det = np.array([m in (0, n_players - 2) for m in orders])
    return PilotComponents(list(orders), theta, a.mean(1), pair_var, b1, b2, np.sqrt(s2).mean(1), rho, share, forwards,
                           det, noise)


def _variance(comp: PilotComponents, statistic: str, P: int, K: np.ndarray, rho: np.ndarray, inner: np.ndarray):
    """Expected Var(share), per-order relative SEs and the share bias bound for (P, K) under the variance model."""
    Kc = np.maximum(K, 2).astype(float)
    mc_u = (comp.b1 / Kc + comp.b2 / (Kc * (Kc - 1))) * (1 + rho)
    mc_u[comp.deterministic] = 0.0
    if statistic == 'rms':
        curve = _floored(np.sqrt(np.clip(comp.theta, 0, None)))
        g = _share_gradient(curve, inner) / (2 * curve)
        var_order = mc_u / P                                                  # of theta = mean U
        rse = np.sqrt(var_order) / (2 * curve ** 2)                           # of its root, relative
        bias = 0.0
    else:
        curve = _floored(comp.abs_mean)
        g = _share_gradient(curve, inner)
        var_order = mc_u / (4 * _floored(comp.theta)) / P                     # delta method for sqrt(U) per pair
        rse = np.sqrt(var_order) / curve
        bound = ABS_BIAS_FACTOR * comp.se_unit / np.sqrt(Kc)
        bound[comp.deterministic] = 0.0
        up_in, up_out = (curve[inner] + bound[inner]).sum(), np.clip(curve[~inner] - bound[~inner], 0, None).sum()
        dn_in, dn_out = np.clip(curve[inner] - bound[inner], 0, None).sum(), (curve[~inner] + bound[~inner]).sum()
        share = curve[inner].sum() / curve.sum()
        bias = float(max(up_in / (up_in + up_out) - share, share - dn_in / (dn_in + dn_out)))
    var = comp.pair_share_var[statistic] / P + float((g ** 2 * var_order).sum())
    return var, rse, bias


def _passes_per_dv(n_players: int, pairs: torch.Tensor, orders: Sequence[int], share: Optional[int],
                   generator: torch.Generator, contexts: int = 4) -> np.ndarray:
    """Forward passes per dv at each order for these pairs and sharing: the design's contexts drawn at ``contexts``
    per pair (nothing evaluated), the distinct coalitions of each order counted."""
    draws = draw_shared_contexts(n_players, pairs, orders, contexts, generator, share)
    coalitions = with_pairs(draws.contexts[draws.draw], pairs[draws.pair])                      # [R, 4, n]
    order = draws.order[draws.draw]
    out = np.zeros(len(orders))
    for o in range(len(orders)):
        rows = coalitions[order == o].reshape(-1, n_players)
        out[o] = len(torch.unique(rows, dim=0)) / max(int((order == o).sum()), 1)
    return out


def plan_shared(comp: PilotComponents, n_players: int, grid: int, budget: Optional[float] = None,
                target_share_se: Optional[float] = None, statistic: str = 'rms',
                band: Tuple[float, float] = (0.2, 0.6), ratios: Optional[Sequence[float]] = None,
                min_contexts: int = 4, radius: int = 2, generator: Optional[torch.Generator] = None) -> DesignPlan:
    """The shared design's plan that minimises the middle share's variance within ``budget`` forward passes per image
    (or reaches ``target_share_se`` at the least cost), from the pilot's components.

    Args:
        comp: from `run_pilot`.
        n_players: n.
        grid: patches per side (to draw pairs as the image game does).
        budget: forward passes per image to spend.
        target_share_se: the middle share's standard error per image to reach instead.
        statistic: 'rms' or 'mean-abs'.
        band: the middle band (order ratios).
        ratios: the order ratios of the pilot's orders (default m / (n - 2)).
        min_contexts: the fewest contexts per pair and order (4: the jackknife needs 3, and a U of 3 draws is rough).
        radius: the neighbourhood radius of the pairs.
        generator: torch random generator (the cost is found by drawing contexts).

    Returns:
        A `DesignPlan`.
    """
    if (budget is None) == (target_share_se is None):
        raise ValueError('give one of budget (forward passes per image) or target_share_se')
    if statistic not in ('rms', 'mean-abs'):
        raise ValueError(f'statistic {statistic!r} is not accepted; accepted: rms, mean-abs')
    orders = comp.orders
    ratio = np.asarray(ratios if ratios is not None else [m / (n_players - 2) for m in orders])
    inner: np.ndarray = (ratio >= band[0]) & (ratio <= band[1])
    generator = generator or torch.Generator().manual_seed(0)
    scale = n_players / 49
    best = None
    for P0 in PAIR_GRID:
        P = max(8, int(round(P0 * scale)))
        pairs = sample_pairs(grid, P, radius, generator=generator)
        for share in SHARE_GRID:
            if share > P:
                continue
            per_order = _passes_per_dv(n_players, pairs, orders, share, generator)
            pilot_others = min(comp.share or DEFAULT_SHARE, P) - 1
            rho = comp.rho * (min(share, P) - 1) / max(pilot_others, 1)
            weight = np.sqrt(np.maximum(comp.b1 * (1 + rho), 1e-300) / per_order)
            root = _floored(np.sqrt(np.clip(comp.theta, 0, None)))
            weight = weight * (np.abs(_share_gradient(root, inner)) / (2 * root) + 1e-3 / root.mean())
            weight[comp.deterministic] = 0.0

            def cost_of(K):
                return float(P * (np.where(comp.deterministic, 1, K) * per_order).sum())

            def contexts_at(t):
                K = np.clip(np.round(t * weight / max(weight.max(), 1e-300) * 64), min_contexts, 256).astype(int)
                K[comp.deterministic] = 1
                return K
            lo, hi = 0.0, 64.0
            if budget is not None:
                if cost_of(contexts_at(0.0)) > budget:
                    continue
                for _ in range(40):
                    mid = (lo + hi) / 2
                    lo, hi = (mid, hi) if cost_of(contexts_at(mid)) <= budget else (lo, mid)
                K = contexts_at(lo)
            else:
                for _ in range(40):
                    mid = (lo + hi) / 2
                    v, _, _ = _variance(comp, statistic, P, contexts_at(mid), rho, inner)
                    lo, hi = (lo, mid) if math.sqrt(v) <= cast(float, target_share_se) else (mid, hi)
                K = contexts_at(hi)
            var, rse, bias = _variance(comp, statistic, P, K, rho, inner)
            objective = var + bias ** 2 if budget is not None else cost_of(K)
            if target_share_se is not None and math.sqrt(var) > target_share_se:
                continue
            if best is None or objective < best[0]:
                best = (objective, P, tuple(int(k) for k in K), share, cost_of(K), math.sqrt(var), rse, bias)
    if best is None:
        raise ValueError(f'no plan reaches the request (budget {budget}, target share s.e. {target_share_se}); '
                         'accepted: a larger budget or a looser target')
    _, P, K, share, cost, se, rse, bias = best
    plan = DesignPlan(P, K, share, cost, se, tuple(float(x) for x in rse), statistic, bias, comp.forwards)
    if statistic == 'mean-abs' and bias > se:
        plan.notes.append(f'mean |I| is not estimated within its bias here: the share\'s bias bound ±{bias:.4f} is '
                          f'larger than its s.e. {se:.4f}; the RMS (an unbiased square) is the statistic at this budget')
    return plan
