"""The shared-evaluation design: one drawn context serves every pair that can use it.

The fixed design draws K contexts S for each pair (i, j) and order m and pays four forward passes per dv. Here, per
order, contexts S are drawn uniformly among the m-subsets of all n players, and every pair (of a group of pairs fixed
beforehand, `share_groups`: by default groups of `DEFAULT_SHARE`) with both players outside S takes a dv from it: v(S) is
shared by all of them, v(S + {i}) by the pairs of player i, and only v(S + {i, j}) is the pair's own. A pair takes the
draws it can use until it has its K (per order), then stops taking them.

**Why each pair's estimate is unchanged in law.** Whether a pair takes a draw depends only on whether i and j are
outside S and on how many draws it has taken, never on the other pairs (a rule that let a context serve "at most c of
the pairs that can use it" would tilt each pair's contexts towards those few others can use: measured, and refused).
Given that i and j are outside S, S is uniform among the m-subsets of N minus {i, j}. So each pair's K dv are K
independent draws from exactly the law the fixed design draws from: Î, the U-statistic for I² and everything computed
from them per pair keep their bias (none for Î and U) and their per-pair variance (``tests/test_shared.py`` checks the
law). What changes is that pairs sharing a draw are correlated (neighbours share v(S + {i})), and the intervals
carry it: I2's variance is each pair's own (unbiased, `unbiased_u_variance`) plus the covariances of the pairs that
share draws, from a jackknife over *draws*, each draw left out with every pair that used it (`grouped_jackknife`),
with t quantiles on its effective degrees of freedom (at low orders every pair takes the same few draws).

**Cost.** A draw used by P' pairs on U' distinct players costs 1 + U' + P' passes for P' dv, against 4 P': the more
pairs per image, the more each draw serves. At high orders (few players absent) a draw rarely serves more than one
pair and the cost per dv returns to about 4. Drawing the contexts costs nothing; only used draws are evaluated.
`benchmarks/design_cost.py` measures the design against the authors' by the spread over repeated runs with pairs and
contexts drawn afresh.
"""
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Union

import torch

from moga_lab.analysis.coalitions import INTERACTION_SIGNS, ValueFn, check_pairs_orders, with_pairs
from moga_lab.analysis.strength import (CachedValues, PairSamples, StrengthEstimate, order_statistics,
                                        pair_summary)

__all__ = ['SharedDraws', 'draw_shared_contexts', 'share_groups', 'grouped_jackknife', 'unbiased_u_variance',
           'estimate_shared', 'expected_cost', 'DEFAULT_SHARE']

DEFAULT_SHARE = 16
"""Pairs per group sharing draws when none is given. One group of all an image's pairs leaves the lowest orders (where
almost every pair can use every draw) with about K distinct draws in all, too few for the interval over draws: at 40
pairs and K = 8 on the local known game its coverage was 0.885-0.91 at the three lowest middle orders (200 runs);
groups of 8-16 pairs covered 0.905-0.96 at every order (``tests/test_shared.py``)."""


@dataclass
class SharedDraws:
    """The draws of one run of the shared design.

    Attributes:
        contexts: bool [D, n], the drawn contexts that some pair used.
        order: int64 [D], the index into the orders of each draw.
        draw: int64 [R], the draw of each (pair, draw) incidence.
        pair: int64 [R], its pair.
    """
    contexts: torch.Tensor
    order: torch.Tensor
    draw: torch.Tensor
    pair: torch.Tensor


def _draws_for_group(n: int, pairs: torch.Tensor, m: int, K: int, generator, batch: int = 2048):
    """Contexts of size m drawn uniformly from all players until every pair of ``pairs`` has taken K usable ones (its
    first K: whether a pair takes a draw depends on its own players and its own count alone, so its draws keep their
    law); returns the used contexts [D, n] and the incidences (draw, pair index into ``pairs``)."""
    P = len(pairs)
    need = torch.full((P,), K, dtype=torch.long)
    kept, draws, owners = [], [], []
    used = 0
    while bool((need > 0).any()):
        keys = torch.rand(batch, n, generator=generator)
        ctx = keys.argsort(1).argsort(1) < m                             # [B, n] uniform m-subsets of N
        usable = ~ctx[:, pairs[:, 0]] & ~ctx[:, pairs[:, 1]]              # [B, P]
        accept = usable & (usable.long().cumsum(0) <= need)              # every pair's first `need` usable draws
        need -= accept.sum(0)
        rows = accept.any(1).nonzero().squeeze(1)
        if len(rows):
            d, p = accept[rows].nonzero(as_tuple=True)
            kept.append(ctx[rows])
            draws.append(d + used)
            owners.append(p)
            used += len(rows)
    return torch.cat(kept), torch.cat(draws), torch.cat(owners)


def share_groups(pairs: torch.Tensor, share: Optional[int]) -> List[torch.Tensor]:
    """The pairs' groups that share draws: ``share`` pairs each, pairs of the same players together (sorted by their
    players, so that a draw's v(S + {i}) serves several of its pairs). Fixed before any context is drawn: a pair's
    draws depend on its group, never on which other pairs a context happens to suit, which would tilt its contexts.

    Args:
        pairs: int64 [P, 2].
        share: pairs per group (None: `DEFAULT_SHARE`; a number at least the pairs' count: one group of all).
    """
    P = len(pairs)
    share = DEFAULT_SHARE if share is None else share
    if share >= P:
        return [torch.arange(P)]
    key = pairs.min(1).values * (int(pairs.max()) + 1) + pairs.max(1).values
    order = key.argsort(stable=True)
    return list(order.split(share))


def _draws_for_order(n: int, pairs: torch.Tensor, m: int, K: int, generator, share: Optional[int] = None):
    """The draws of one order: each group of `share_groups` its own stream of uniform contexts, every pair of the group
    taking its first K usable ones; m = n - 2 has one possible context per pair (its own), m = 0 one for all (the
    empty set)."""
    P = len(pairs)
    if m == n - 2:          # S = N minus {i, j}: each pair's own, no draw can be shared
        ctx = torch.ones(P, n, dtype=torch.bool)
        ctx[torch.arange(P), pairs[:, 0]] = False
        ctx[torch.arange(P), pairs[:, 1]] = False
        return ctx, torch.arange(P), torch.arange(P)
    if m == 0:              # S = empty: one context every pair uses
        return torch.zeros(1, n, dtype=torch.bool), torch.zeros(P, dtype=torch.long), torch.arange(P)
    contexts, draws, owners = [], [], []
    used = 0
    for group in share_groups(pairs, share):
        ctx, d, p = _draws_for_group(n, pairs[group], m, K, generator)
        contexts.append(ctx)
        draws.append(d + used)
        owners.append(group[p])
        used += len(ctx)
    return torch.cat(contexts), torch.cat(draws), torch.cat(owners)


def draw_shared_contexts(n_players: int, pairs: torch.Tensor, orders: Sequence[int],
                         num_contexts: Union[int, Sequence[int]], generator: Optional[torch.Generator] = None,
                         share: Optional[int] = None) -> SharedDraws:
    """The shared design's draws: per order, uniform contexts of all players until each pair has its K usable ones.

    Args:
        n_players: n.
        pairs: int64 [P, 2].
        orders: the orders m.
        num_contexts: K per pair, one for every order or one per order.
        generator: torch random generator.
        share: the pairs of a group that share draws (`share_groups`; None: `DEFAULT_SHARE`); smaller groups cost
            more per dv and explore more distinct contexts.

    Returns:
        `SharedDraws`.
    """
    pairs, orders = check_pairs_orders(n_players, pairs, orders)
    ks = [int(num_contexts)] * len(orders) if isinstance(num_contexts, int) else [int(k) for k in num_contexts]
    if len(ks) != len(orders) or min(ks) < 1:
        raise ValueError(f'num_contexts={num_contexts}: accepted: an integer >= 1, or one per order ({len(orders)})')
    contexts, order, draw, pair = [], [], [], []
    offset = 0
    for o, (m, K) in enumerate(zip(orders, ks)):
        ctx, d, p = _draws_for_order(n_players, pairs, m, K, generator, share)
        contexts.append(ctx)
        order.append(torch.full((len(ctx),), o, dtype=torch.long))
        draw.append(d + offset)
        pair.append(p)
        offset += len(ctx)
    return SharedDraws(torch.cat(contexts), torch.cat(order), torch.cat(draw), torch.cat(pair))


def grouped_jackknife(samples: PairSamples, draw: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Per order, the jackknife variance over draws of the mean over pairs of U (I2), of sqrt(max(U, 0)) (J_abs) and
    of |Î| (J): each draw left out with every pair that used it, so that pairs sharing draws carry their correlation.

    With c_r = sqrt((K_p - 1) / K_p) (T_p without draw r - T_p) / P for each incidence r of pair p, the variance is
    sum over draws d of (sum of c_r over the incidences of d)²: the per-pair jackknife of the fixed design when no
    draw is shared (each draw then holds one incidence), and its cross terms where draws are shared.

    Args:
        samples: the dv samples (one per incidence).
        draw: int64 [R], each sample's draw.

    Returns:
        ``{'I2': [O], 'J_abs': [O], 'J': [O]}`` variances (0 at orders with a single context per pair), and
        ``'df'``: [O] the I2 variance's degrees of freedom, (sum_d w_d)² / sum_d w_d² with w_d the draws' terms (the
        number of draws when they weigh alike: at low orders every pair takes the same few draws, and the interval
        needs a t quantile, not 1.96).
    """
    O, P = samples.num_orders, samples.num_pairs
    flat = samples.order * P + samples.pair
    k = torch.zeros(O * P, dtype=torch.float64).index_add_(0, flat, torch.ones_like(samples.dv))
    s1 = torch.zeros_like(k).index_add_(0, flat, samples.dv)
    s2 = torch.zeros_like(k).index_add_(0, flat, samples.dv ** 2)
    kk, x = k[flat], samples.dv
    u = (s1 ** 2 - s2) / (k * (k - 1)).clamp(min=1)
    loo_u = ((s1[flat] - x) ** 2 - (s2[flat] - x ** 2)) / ((kk - 1) * (kk - 2)).clamp(min=1)
    loo_mean = (s1[flat] - x) / (kk - 1).clamp(min=1)
    full = dict(I2=u[flat], J_abs=u.clamp(min=0).sqrt()[flat], J=(s1 / k.clamp(min=1)).abs()[flat])
    loo = dict(I2=loo_u, J_abs=loo_u.clamp(min=0).sqrt(), J=loo_mean.abs())
    scale = ((kk - 1) / kk).clamp(min=0).sqrt() / P
    valid = kk >= 3                                                    # a leave-one-out U needs two draws left
    D = int(draw.max()) + 1 if len(draw) else 0
    order_of_draw = torch.zeros(D, dtype=torch.long).index_put_((draw,), samples.order)
    out = {}
    for name in ('I2', 'J_abs', 'J'):
        c = torch.where(valid, scale * (loo[name] - full[name]), torch.zeros_like(x))
        per_draw = torch.zeros(D, dtype=torch.float64).index_add_(0, draw, c) ** 2
        out[name] = torch.zeros(O, dtype=torch.float64).index_add_(0, order_of_draw, per_draw)
        out[name + '_diagonal'] = torch.zeros(O, dtype=torch.float64).index_add_(0, samples.order, c ** 2)
        if name == 'I2':
            squares = torch.zeros(O, dtype=torch.float64).index_add_(0, order_of_draw, per_draw ** 2)
            out['df'] = torch.where(squares > 0, out[name] ** 2 / squares.clamp(min=1e-300),
                                    torch.full_like(squares, float('inf')))
    return out


def unbiased_u_variance(samples: PairSamples) -> torch.Tensor:
    """Per (order, pair), the unbiased estimate of Var(U) for U = sum_{k != l} dv_k dv_l / (K (K - 1)):
    Var(U) = 4 (K - 2) / (K (K - 1)) zeta_1 + 2 / (K (K - 1)) zeta_2, with zeta_1 = E[dv_1² dv_2 dv_3] - I⁴ and
    zeta_2 = E[dv_1²]² - I⁴ estimated by U-statistics from the power sums (so K >= 4; NaN below). The jackknife's
    estimate is larger in expectation by a term in 1 / (K - 2) (Efron-Stein), which at 4-8 contexts per pair made its
    intervals over-cover by several points on the known games; clipped at 0.

    Args:
        samples: the dv samples.

    Returns:
        float64 [O, P].
    """
    O, P = samples.num_orders, samples.num_pairs
    flat = samples.order * P + samples.pair
    s1, s2, s3, s4 = (torch.zeros(O * P, dtype=torch.float64).index_add_(0, flat, samples.dv ** k).view(O, P)
                      for k in (1, 2, 3, 4))
    k = torch.zeros(O * P, dtype=torch.float64).index_add_(0, flat, torch.ones_like(samples.dv)).view(O, P)
    four = (s1 ** 4 - 6 * s1 ** 2 * s2 + 3 * s2 ** 2 + 8 * s1 * s3 - 6 * s4) / (k * (k - 1) * (k - 2) * (k - 3)).clamp(min=1)
    three = (s2 * s1 ** 2 - s2 ** 2 - 2 * s1 * s3 + 2 * s4) / (k * (k - 1) * (k - 2)).clamp(min=1)
    two = (s2 ** 2 - s4) / (k * (k - 1)).clamp(min=1)
    var = (4 * (k - 2) * (three - four) + 2 * (two - four)) / (k * (k - 1)).clamp(min=1)
    return torch.where(k >= 4, var.clamp(min=0), torch.full_like(var, float('nan')))


def estimate_shared(value_fn: ValueFn, n_players: int, pairs: torch.Tensor, orders: Sequence[int],
                    num_contexts: Union[int, Sequence[int]] = 8, share: Optional[int] = None,
                    generator: Optional[torch.Generator] = None, batch_size: int = 512,
                    progress: Optional[Callable[[int], None]] = None) -> StrengthEstimate:
    """Strength statistics of a game by the shared-evaluation design (see the module docstring).

    The statistics are those of `moga_lab.analysis.strength.order_statistics` from each pair's K draws; their
    standard errors (``I2_se``, ``J_abs_se``, ``J_se``) are the jackknife over draws (`grouped_jackknife`), so they
    carry the correlation of pairs that shared draws. Like the fixed design's, every interval is conditional on the
    image's pairs.

    Args:
        value_fn: bool masks [B, n] -> values [B].
        n_players: n.
        pairs: int64 [P, 2].
        orders: the orders m.
        num_contexts: contexts K per pair, for every order or one per order.
        share: pairs per group sharing draws (`share_groups`; None: `DEFAULT_SHARE`).
        generator: torch random generator.
        batch_size: coalitions per call of ``value_fn``.
        progress: called with the number of coalitions evaluated after each batch.

    Returns:
        A `StrengthEstimate` (``forwards``: distinct coalitions evaluated).
    """
    pairs, orders = check_pairs_orders(n_players, pairs, orders)
    draws = draw_shared_contexts(n_players, pairs, orders, num_contexts, generator, share)
    values = CachedValues(value_fn, batch_size, progress, remember=False)
    coalitions = with_pairs(draws.contexts[draws.draw], pairs[draws.pair])         # [R, 4, n]
    v = values(coalitions.reshape(-1, n_players)).view(-1, 4)
    samples = PairSamples(len(orders), len(pairs))
    samples.add(draws.order[draws.draw], draws.pair, (v * INTERACTION_SIGNS).sum(-1))
    deterministic = [m == 0 or m == n_players - 2 for m in orders]
    summary = pair_summary(samples)
    stats = order_statistics(summary, deterministic)
    grouped = grouped_jackknife(samples, draws.draw)
    det = torch.tensor(deterministic)
    for name, column in (('I2', 'I2_se'), ('J_abs', 'J_abs_se'), ('J', 'J_se')):
        stats[column] = torch.where(det, torch.zeros(()), grouped[name].sqrt())
    # I2: each pair's own variance unbiased (where K >= 4), the pairs' covariances from the draws they share
    own = unbiased_u_variance(samples)
    if not bool(own[~det].isnan().any()):
        cross = grouped['I2'] - grouped['I2_diagonal']
        var = (own.sum(1) / len(pairs) ** 2 + cross).clamp(min=0)
        stats['I2_se'] = torch.where(det, torch.zeros(()), var.sqrt())
    from scipy import stats as scipy_stats
    stats['I2_df'] = grouped['df']
    t = torch.as_tensor(scipy_stats.t.ppf(0.975, grouped['df'].clamp(min=1).numpy()), dtype=torch.float64)
    low = (stats['I2'] - t * stats['I2_se']).clamp(min=0).sqrt()
    high = (stats['I2'] + t * stats['I2_se']).clamp(min=0).sqrt()
    stats.update(J_debiased_low=low, J_debiased_high=high, J_debiased_se=(high - low) / (2 * t))
    return StrengthEstimate(stats, summary['count'], summary['mean'], summary['var'], values.forwards, 1,
                            torch.ones(len(orders), dtype=torch.bool))


def expected_cost(n_players: int, pairs: torch.Tensor, orders: Sequence[int], num_contexts: Union[int, Sequence[int]],
                  share: Optional[int] = None, generator: Optional[torch.Generator] = None, repeats: int = 2) -> float:
    """The forward passes the shared design pays on these pairs, found by drawing its contexts (no evaluation): the
    distinct coalitions it would evaluate, averaged over ``repeats`` draws.

    Args:
        n_players: n.
        pairs: int64 [P, 2].
        orders: the orders m.
        num_contexts: K per pair, for every order or one per order.
        share: pairs per group sharing draws (None: `DEFAULT_SHARE`).
        generator: torch random generator.
        repeats: draws to average.
    """
    total = 0
    for _ in range(repeats):
        draws = draw_shared_contexts(n_players, pairs, orders, num_contexts, generator, share)
        coalitions = with_pairs(draws.contexts[draws.draw], torch.as_tensor(pairs)[draws.pair]).reshape(-1, n_players)
        total += len(torch.unique(coalitions, dim=0))
    return total / repeats
