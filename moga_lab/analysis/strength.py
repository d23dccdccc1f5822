"""Interaction *strength* from Monte-Carlo samples: the authors' mean |I| and a debiased strength, each with its
Monte-Carlo uncertainty, and a sampler that adds contexts until a stated precision is reached.

Like `.interaction`, this file sees only a value function over bool masks; it knows nothing about images.

**Why a second statistic.** Î_p = Î_m(i, j) is a mean of dv over K random contexts with standard error se_p.
|.| is convex, so E|Î_p| >= |I_p|: a pair whose true I is 0 still contributes about se_p * sqrt(2/pi). The authors'
J = mean_p |Î_p| is therefore biased upward by between 0 and the *noise floor* mean_p se_p * sqrt(2/pi). The bias is
0 at m = 0 and m = n - 2 (one possible context) and largest in the middle orders, so it changes the shape of the
normalised curve. |I| has no unbiased estimator (|mu| has none in the normal family); I² has one, whatever the
distribution of dv: the U-statistic

    U_p = Î_p² - se_p² = sum_{k != l} dv_k dv_l / (K (K - 1)),   E U_p = I_p²,
    Var U_p = 4 I_p² sigma_p² / K + 2 sigma_p^4 / (K (K - 1))      (exact; sigma² = variance of dv over contexts).

So the debiased strength is the **root-mean-square of I_m over pairs**, J_debiased = sqrt(max(0, mean_p U_p)). Its
square I2 = mean_p U_p is unbiased; the root costs a downward bias of about (relative SE of I2)² / 8 of the value
(0.03 % at a 5 % interval). Curves over several images average I2 before taking the root
(`moga_lab.analysis.games.strength_curve`), so that bias shrinks with the number of images too.

**What the intervals cover.** Everything here is conditional on the image's pairs: the standard errors are the
Monte-Carlo error of the contexts. Pair sampling and image sampling enter through the bootstrap over images that
the curve reports.
"""
import math
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import torch

from .interaction import ValueFn, _check, _with_pairs, _SIGNS, evaluate_rows, sample_contexts

__all__ = ['CachedValues', 'PairSamples', 'order_statistics', 'estimate_strength', 'StrengthEstimate', 'Z95',
           'NOISE_FLOOR_FACTOR']

Z95 = 1.959963984540054
"""The normal quantile of two-sided 95 % intervals."""
NOISE_FLOOR_FACTOR = math.sqrt(2 / math.pi)
"""E|N(0, se²)| = se * sqrt(2 / pi): the most Monte-Carlo noise adds to mean |Î|, per unit of se."""


class CachedValues:
    """v over bool masks [M, n] -> float64 [M], each distinct coalition evaluated once over the object's lifetime
    (across the rounds of the adaptive sampler too).

    ``forwards`` is the number of distinct coalitions evaluated: the forward passes paid.

    Args:
        value_fn: bool masks [B, n] -> values [B].
        batch_size: coalitions per call of ``value_fn``.
        progress: called with the number of coalitions evaluated after each batch.
        remember: keep a table of evaluated coalitions across calls; False (one call only, the fixed design) skips
            it: distinct within the call, no per-coalition bookkeeping.
    """

    def __init__(self, value_fn: ValueFn, batch_size: int = 512, progress: Optional[Callable[[int], None]] = None,
                 remember: bool = True):
        self.value_fn, self.batch_size, self.progress, self.remember = value_fn, batch_size, progress, remember
        self.table: Dict[bytes, float] = {}
        self._forgotten = 0

    @property
    def forwards(self) -> int:
        """Distinct coalitions evaluated so far (masked forward passes paid for)."""
        return len(self.table) + self._forgotten

    def __call__(self, masks: torch.Tensor) -> torch.Tensor:
        unique, inverse = torch.unique(masks, dim=0, return_inverse=True)
        if not self.remember:
            self._forgotten += len(unique)
            return evaluate_rows(self.value_fn, unique, self.batch_size, self.progress)[inverse]
        keys = [row.tobytes() for row in np.packbits(unique.cpu().numpy(), axis=1)]
        missing = [k for k, key in enumerate(keys) if key not in self.table]
        if missing:
            fresh = evaluate_rows(self.value_fn, unique[missing], self.batch_size, self.progress)
            self.table.update(zip((keys[k] for k in missing), fresh.tolist()))
        values = torch.tensor([self.table[key] for key in keys], dtype=torch.float64)
        return values[inverse]


@dataclass
class PairSamples:
    """All dv samples so far, flat.

    Attributes:
        num_orders: orders O.
        num_pairs: pairs P.
        order: int64 [R] index into the orders of each sample.
        pair: int64 [R] index into the pairs of each sample.
        dv: float64 [R] the samples dv = v(S ∪ {i, j}) - v(S ∪ {i}) - v(S ∪ {j}) + v(S).
    """
    num_orders: int
    num_pairs: int
    order: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    pair: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    dv: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.float64))

    def add(self, order: torch.Tensor, pair: torch.Tensor, dv: torch.Tensor) -> None:
        """Append samples: order and pair indices [R] (long) and their dv [R]."""
        self.order = torch.cat([self.order, order])
        self.pair = torch.cat([self.pair, pair])
        self.dv = torch.cat([self.dv, dv.to(torch.float64)])

    def moments(self):
        """count, mean and unbiased variance of dv per (order, pair): float64 [O, P] each (variance NaN below 2)."""
        shape = (self.num_orders, self.num_pairs)
        flat = self.order * self.num_pairs + self.pair
        count = torch.zeros(shape, dtype=torch.float64).view(-1).index_add_(0, flat, torch.ones_like(self.dv))
        total = torch.zeros_like(count).index_add_(0, flat, self.dv)
        mean = total / count.clamp(min=1)
        centred = (self.dv - mean[flat]) ** 2  # two passes: exact even when |mean| >> sd
        ss = torch.zeros_like(count).index_add_(0, flat, centred)
        var = torch.where(count > 1, ss / (count - 1).clamp(min=1), torch.full_like(ss, float('nan')))
        return count.view(shape), mean.view(shape), var.view(shape)


def order_statistics(count: torch.Tensor, mean: torch.Tensor, var: torch.Tensor,
                     deterministic: Optional[Sequence[bool]] = None, z: float = Z95) -> Dict[str, torch.Tensor]:
    """Per-order strength statistics from per-(order, pair) moments.

    J (mean_p |Î_p|, the authors' statistic), J_se (its Monte-Carlo SE, sqrt(sum se_p²) / P: |.| is 1-Lipschitz),
    noise_floor (mean_p se_p sqrt(2/pi): the most J can be inflated by noise), I2 (mean_p (Î_p² - se_p²), unbiased
    for mean_p I_p²), I2_se, J_debiased (sqrt(max(I2, 0)), the root-mean-square of I_m), J_debiased_low/high (the
    95 % interval of I2 mapped through the root), J_debiased_se (half its width / z), contexts (mean K per pair).

    Args:
        count: contexts K per (order, pair), float64 [O, P].
        mean: mean dv per (order, pair) (= Î), [O, P].
        var: sample variance of dv per (order, pair), [O, P].
        deterministic: per order, True when it has a single possible context (m = 0 or n - 2), so its variance is 0
            at any K.
        z: the normal quantile of the intervals.

    Returns:
        ``{name: [O] tensor}`` for the statistics above.
    """
    O, P = mean.shape
    det = torch.tensor(list(deterministic) if deterministic is not None else [False] * O).view(O, 1)
    var = torch.where(det, torch.zeros_like(var), var)
    se2 = var / count                                                # Var(Î_p) estimate
    u = mean ** 2 - se2                                              # unbiased for I_p²
    # Var U_p = 4 I² s²/K + 2 s^4/(K(K-1)); plug in Î² for I² and s^4 for sigma^4: both biased up, so the interval errs
    # wide (coverage measured on the known games: 92-100 % per order at K = 8)
    k = count
    var_u = 4 * mean ** 2 * var / k + 2 * var ** 2 / (k * (k - 1)).clamp(min=1)
    var_u = torch.where(det, torch.zeros_like(var_u), var_u)
    se = se2.sqrt()
    I2 = u.mean(1)
    I2_se = var_u.sum(1).sqrt() / P
    low = (I2 - z * I2_se).clamp(min=0).sqrt()
    high = (I2 + z * I2_se).clamp(min=0).sqrt()
    return dict(J=mean.abs().mean(1), J_se=(se2.sum(1)).sqrt() / P, noise_floor=NOISE_FLOOR_FACTOR * se.mean(1),
                I2=I2, I2_se=I2_se, J_debiased=I2.clamp(min=0).sqrt(), J_debiased_low=low, J_debiased_high=high,
                J_debiased_se=(high - low) / (2 * z), contexts=count.mean(1))


def _draw_contexts(n_players: int, pairs: torch.Tensor, orders: torch.Tensor, generator) -> torch.Tensor:
    """One uniform random context per row: row r gets |S| = orders[r] players from N minus pairs[r]. bool [R, n]."""
    keys = torch.rand(len(pairs), n_players, generator=generator)
    keys.scatter_(1, pairs, float('inf'))                              # the pair's players are never chosen
    ranks = keys.argsort(1).argsort(1)
    return ranks < orders.view(-1, 1)


@dataclass
class StrengthEstimate:
    """What `estimate_strength` found for one game.

    Attributes:
        stats: per-order statistics, [O] tensors (see `order_statistics`).
        count: contexts per (order, pair), [O, P].
        mean: mean dv per (order, pair), [O, P].
        var: sample variance of dv per (order, pair), [O, P].
        forwards: distinct coalitions evaluated.
        rounds: sampling rounds (1 in the fixed-budget mode).
        converged: bool [O], the order met the target (all True in the fixed-budget mode).
        target_ci: the target it was run for (None = fixed budget).
    """
    stats: Dict[str, torch.Tensor]
    count: torch.Tensor
    mean: torch.Tensor
    var: torch.Tensor
    forwards: int
    rounds: int
    converged: torch.Tensor
    target_ci: Optional[float] = None


def _tolerance(stats, target_ci: float, ci_floor: float, z: float) -> torch.Tensor:
    """The largest I2 standard error that meets the target at each order. A half-width of REL * J on the root scale
    is z * se_I2 / (2 J) <= REL * J, i.e. se_I2 <= 2 REL I2 / z. Orders weaker than ``ci_floor`` x the curve's mean
    strength are held to the tolerance at that floor: a relative target on a near-zero value would be unbounded,
    while the normalised curve only needs them to an absolute precision."""
    floor = (ci_floor * stats['J_debiased'].mean()) ** 2
    return 2 * target_ci * torch.maximum(stats['I2'], floor) / z


def _allocate(count, mean, var, deterministic, need, tolerance, growth: float) -> torch.Tensor:
    """Extra contexts per (order, pair) for the orders in ``need``: Neyman allocation over the order's pairs.
    With a_p = K_p Var(U_p) (variance per context), Var(I2) = sum_p a_p / K_p / P² is smallest for a given total
    at K_p proportional to sqrt(a_p), and the total that meets the tolerance t is sum_q sqrt(a_q) / (P t)²."""
    O, P = mean.shape
    extra = torch.zeros(O, P, dtype=torch.long)
    for o in torch.nonzero(need).flatten().tolist():
        if deterministic[o]:
            continue
        k, m, v = count[o], mean[o], var[o].nan_to_num(0.0)
        a = 4 * m ** 2 * v + 2 * v ** 2 / (k - 1).clamp(min=1)         # K x the Var(U_p) of order_statistics
        a = a.clamp(min=0.05 * float(a.mean()) + 1e-300)     # a pair whose pilot looked noiseless still gets some
        root = a.sqrt()
        want = root * root.sum() / (P * float(tolerance[o])) ** 2
        new = torch.minimum(torch.maximum(want, k), growth * k).ceil()
        if (new - k).sum() < 0.25 * k.sum():                           # always make progress on an unmet order
            new = torch.maximum(new, (1.25 * k).ceil())
        extra[o] = (new - k).long()
    return extra


def estimate_strength(value_fn: ValueFn, n_players: int, pairs: torch.Tensor, orders: Sequence[int],
                      num_contexts: Optional[int] = 24, target_ci: Optional[float] = None,
                      max_forwards: Optional[int] = None, initial_contexts: int = 8, ci_floor: float = 0.1,
                      growth: float = 4.0, generator: Optional[torch.Generator] = None, batch_size: int = 512,
                      progress: Optional[Callable[[int], None]] = None,
                      contexts: Optional[torch.Tensor] = None) -> StrengthEstimate:
    """Strength statistics of a game at ``orders`` for ``pairs``, with a fixed budget or to a precision target.

    Fixed budget (``target_ci=None``): ``num_contexts`` uniform contexts per pair and order (or ``contexts``), as the
    authors do. Precision target (``target_ci=REL``, e.g. 0.05): ``initial_contexts`` per pair and order (1 at m = 0
    and m = n - 2, where every context is the same), then rounds of new contexts until every order's 95 % interval
    of J_debiased has half-width <= REL * J_debiased (orders below ``ci_floor`` x the mean strength are held to that
    floor's precision) or ``max_forwards`` distinct coalitions have been evaluated. Each round gives the unmet orders
    the contexts their variance says they need (Neyman allocation over pairs, at most ``growth`` x per round), so
    noisy orders get more evaluations than quiet ones.

    Args:
        value_fn: bool masks [B, n] -> values [B].
        n_players: n.
        pairs: int64 [P, 2].
        orders: the orders m.
        num_contexts: contexts per pair and order of the fixed design (and the cost ``max_forwards`` defaults to).
        target_ci: the relative 95 % half-width wanted per order; None = fixed budget.
        max_forwards: cap on distinct coalitions in the precision mode; None = the fixed design's cost.
        initial_contexts: the pilot round's contexts per pair and order.
        ci_floor: orders weaker than this fraction of the mean strength are held to the floor's precision.
        growth: at most this factor more contexts per pair and order in one round.
        generator: torch random generator.
        batch_size: coalitions per call of ``value_fn``.
        progress: called with the number of coalitions evaluated after each batch.
        contexts: bool [O, P, K, n] from `moga_lab.analysis.interaction.sample_contexts` (fixed budget only).

    Returns:
        A `StrengthEstimate`.

    Example:
        ```python
        game = random_local_game(7)                          # known answer: moga_lab.analysis.known_games
        est = estimate_strength(game, 49, sample_pairs(7, 20), order_grid(49, ORDER_RATIOS), target_ci=0.1)
        est.stats['J_debiased'], est.forwards
        ```
    """
    pairs, orders = _check(n_players, pairs, orders)
    O, P = len(orders), len(pairs)
    deterministic = [m == 0 or m == n_players - 2 for m in orders]
    values = CachedValues(value_fn, batch_size, progress, remember=target_ci is not None)
    samples = PairSamples(O, P)

    def evaluate(order_idx: torch.Tensor, pair_idx: torch.Tensor, ctx: torch.Tensor) -> None:
        coalitions = _with_pairs(ctx, pairs[pair_idx])                   # [R, 4, n]
        v = values(coalitions.reshape(-1, n_players)).view(-1, 4)
        samples.add(order_idx, pair_idx, (v * _SIGNS).sum(-1))

    if target_ci is None:
        if contexts is None:
            if num_contexts is None or num_contexts < 1:
                raise ValueError(f'num_contexts={num_contexts} must be >= 1 (or give target_ci)')
            contexts = sample_contexts(n_players, pairs, orders, num_contexts, generator)
        K = contexts.shape[2]
        grid_o, grid_p, _ = torch.meshgrid(torch.arange(O), torch.arange(P), torch.arange(K), indexing='ij')
        evaluate(grid_o.reshape(-1), grid_p.reshape(-1), contexts.reshape(-1, n_players))
        count, mean, var = samples.moments()
        stats = order_statistics(count, mean, var, deterministic)
        return StrengthEstimate(stats, count, mean, var, values.forwards, 1, torch.ones(O, dtype=torch.bool))

    if not target_ci > 0:
        raise ValueError(f'target_ci={target_ci} must be > 0 (a relative half-width, e.g. 0.05)')
    if initial_contexts < 2:
        raise ValueError(f'initial_contexts={initial_contexts} must be >= 2 (a variance needs two contexts)')
    if max_forwards is None:
        max_forwards = 4 * O * P * (num_contexts or 50)                 # never more than the fixed design
    m_of = torch.tensor(orders, dtype=torch.long)
    det = torch.tensor(deterministic)
    request = torch.full((O, P), initial_contexts, dtype=torch.long)
    request[det] = 1                                                     # exact with one context
    rounds = 0
    while True:
        left = max_forwards - values.forwards - 4 * int(request[det].sum())
        noisy = int(request[~det].sum())
        if noisy * 4 > left:                                             # scale the round down to the budget
            request[~det] = (request[~det].double() * max(left, 0) / (4 * noisy)).floor().long()
        if request.sum() == 0:
            break
        order_idx = torch.arange(O).repeat_interleave(P).repeat_interleave(request.view(-1))
        pair_idx = torch.arange(P).repeat(O).repeat_interleave(request.view(-1))
        evaluate(order_idx, pair_idx, _draw_contexts(n_players, pairs[pair_idx], m_of[order_idx], generator))
        rounds += 1
        count, mean, var = samples.moments()
        stats = order_statistics(count, mean, var, deterministic)
        tolerance = _tolerance(stats, target_ci, ci_floor, Z95)
        converged = stats['I2_se'] <= tolerance
        if converged.all() or values.forwards >= max_forwards:
            break
        request = _allocate(count, mean, var, deterministic, ~converged, tolerance, growth)
    count, mean, var = samples.moments()
    stats = order_statistics(count, mean, var, deterministic)
    converged = stats['I2_se'] <= _tolerance(stats, target_ci, ci_floor, Z95)
    return StrengthEstimate(stats, count, mean, var, values.forwards, rounds, converged, target_ci)
