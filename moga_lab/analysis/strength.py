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
(`moga_lab.analysis.curves.strength_curve`), so that bias shrinks with the number of images too.

**What the intervals cover.** Everything here is conditional on the image's pairs: the standard errors are the
Monte-Carlo error of the contexts. Pair sampling and image sampling enter through the bootstrap over images that
the curve reports.
"""
import math
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import torch

from moga_lab.analysis.coalitions import INTERACTION_SIGNS, ValueFn, check_pairs_orders, evaluate_rows, sample_contexts, with_pairs

__all__ = ['CachedValues', 'PairSamples', 'pair_summary', 'order_statistics', 'estimate_strength', 'StrengthEstimate',
           'Z95', 'NOISE_FLOOR_FACTOR', 'ABS_BIAS_FACTOR', 'ABS_BIAS_FACTOR_NORMAL']

Z95 = 1.959963984540054
"""The normal quantile of two-sided 95 % intervals."""
NOISE_FLOOR_FACTOR = math.sqrt(2 / math.pi)
"""E|N(0, se²)| = se * sqrt(2 / pi): the most Monte-Carlo noise adds to mean |Î|, per unit of se."""
ABS_BIAS_FACTOR = 1.05
"""The bias bound of ``J_abs`` per pair, in units of the pair's *estimated* standard error: sup over the law of dv,
over I / se and over K >= 2 of |E sqrt(max(U, 0)) - |I|| / E se_hat, measured (``benchmarks/abs_bias.py``,
``docs/figures/abs_bias.csv``) over normal, exponential, log-normal, normal-plus-spike and two-point laws (a rare spike
of rate 0.001-0.3, either sign), |I| from 0 to 5 se, K from 2 to 200. The sup is the rare-spike limit, 1.00-1.04
(a pair whose spike is not drawn shows se_hat = 0 and Î off by the spike's share); for normal dv the bias is at most
0.38 se at K = 8 and 0.35 se at K = 24 (+ at I = 0, - near |I| = 1.5 se). ``J_abs_bias_bound`` = 1.05 x mean se_hat
holds in expectation at every design the package offers; checked in repeated runs on known games at K = 8, 24, 64
and in the two-phase mode (``tests/test_strength.py``)."""
ABS_BIAS_FACTOR_NORMAL = {2: 0.60, 3: 0.48, 4: 0.44, 8: 0.38, 16: 0.36, 24: 0.36, 64: 0.35}
"""The same sup for normal dv alone, by K (``docs/figures/abs_bias.csv``): what the bias is when dv has no rare
spikes; reported beside the bound, never in its place."""


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


def pair_summary(samples: 'PairSamples') -> Dict[str, torch.Tensor]:
    """Per (order, pair): K, mean Î, variance s², the unbiased U = (sum_{k != l} dv_k dv_l) / (K (K - 1)) of I²,
    A = sqrt(max(U, 0)) (the estimate of |I| the mean-|I| statistic averages), and jackknife variances over the
    contexts of U and of A (float64 [O, P] each; NaN where K is too small: 3 contexts for a jackknife).

    The jackknife of a U-statistic is conservative in expectation (Efron and Stein, 1981, for any symmetric
    statistic: E v_jack >= Var of the statistic on K - 1 draws >= its variance on K draws). For U it has a closed form:
    leaving out dv_k moves U by 2 (g_k - mean g) / ((K - 1) (K - 2)) with g_k = dv_k² - S1 dv_k, S1 = sum dv, so
    v_jack(U) = 4 sum_k (g_k - mean g)² / (K (K - 1) (K - 2)²).

    Args:
        samples: the dv samples.
    """
    count, mean, var = samples.moments()
    O, P = count.shape
    flat = samples.order * P + samples.pair
    k = count.view(-1)
    s1 = torch.zeros_like(k).index_add_(0, flat, samples.dv)
    s2 = torch.zeros_like(k).index_add_(0, flat, samples.dv ** 2)
    u = (s1 ** 2 - s2) / (k * (k - 1)).clamp(min=1)
    # leave-one-out U for every sample, then the jackknife over each (order, pair)'s contexts
    kk, x = k[flat], samples.dv
    loo_u = ((s1[flat] - x) ** 2 - (s2[flat] - x ** 2)) / ((kk - 1) * (kk - 2)).clamp(min=1)
    loo_a = loo_u.clamp(min=0).sqrt()

    def jackknife(values):
        centre = torch.zeros_like(k).index_add_(0, flat, values) / k.clamp(min=1)
        ss = torch.zeros_like(k).index_add_(0, flat, (values - centre[flat]) ** 2)
        return torch.where(k >= 3, (k - 1) / k.clamp(min=1) * ss, torch.full_like(ss, float('nan')))
    out = dict(count=count, mean=mean, var=var, U=u, A=u.clamp(min=0).sqrt(), var_U=jackknife(loo_u),
               var_A=jackknife(loo_a))
    return {name: value.view(O, P) for name, value in out.items()}


def order_statistics(summary: Dict[str, torch.Tensor], deterministic: Optional[Sequence[bool]] = None,
                     z: float = Z95) -> Dict[str, torch.Tensor]:
    """Per-order strength statistics from the per-(order, pair) summary of `pair_summary`.

    The estimates and what they estimate (all conditional on the image's pairs; the intervals are Monte-Carlo ones):

    * ``I2`` = mean_p U_p: **unbiased** for mean_p I_p² whenever each pair's contexts are drawn independently of
      how many there are (the fixed design, and the precision mode's estimation phase). ``I2_se`` from the
      jackknife over contexts (conservative in expectation, see `pair_summary`).
    * ``J_debiased`` = sqrt(max(I2, 0)): the root-mean-square of I_m over pairs; its 95 % interval
      (``J_debiased_low`` / ``_high``) is I2's mapped through the root; the root costs a downward bias of about
      (relative SE of I2)² / 8.
    * ``J_abs`` = mean_p sqrt(max(U_p, 0)): the paper's estimand, mean |I_m| over pairs, with the noise removed.
      |I| has no unbiased estimator: the bias is two-sided and bounded by ``ABS_BIAS_FACTOR`` x the pair's
      estimated se (rare-spike dv; 0.38 se for normal dv at K = 8), so ``J_abs_bias_bound`` = 1.05 x mean_p se_p
      (about 1.3 x the naive statistic's noise floor: at few contexts per pair mean |I| cannot be estimated much
      better than the RMS's unbiased square lets its root be). ``J_abs_se`` from the jackknife of A_p over contexts.
    * ``J`` = mean_p |Î_p|: the authors' naive statistic, biased upward by between 0 and ``noise_floor`` =
      mean_p se_p sqrt(2 / pi); ``J_se`` = sqrt(sum_p se_p²) / P (|.| is 1-Lipschitz).
    * ``contexts``: mean K per pair.

    Args:
        summary: `pair_summary` of the samples.
        deterministic: per order, True when it has a single possible context (m = 0 or n - 2): variance 0 at any K.
        z: the normal quantile of the intervals.

    Returns:
        ``{name: [O] tensor}`` for the statistics above.
    """
    count, mean, var = summary['count'], summary['mean'], summary['var']
    O, P = mean.shape
    det = torch.tensor(list(deterministic) if deterministic is not None else [False] * O).view(O, 1)
    zero = torch.zeros_like(var)
    var = torch.where(det, zero, var)
    se2 = var / count
    var_u = torch.where(det, zero, summary['var_U'])
    var_a = torch.where(det, zero, summary['var_A'])
    se = se2.sqrt()
    # one possible context: Î is I itself, so Î² and |Î| are exact (U needs two draws)
    u = torch.where(det, mean ** 2, summary['U'])
    a = torch.where(det, mean.abs(), summary['A'])
    I2 = u.mean(1)
    I2_se = var_u.sum(1).sqrt() / P
    low = (I2 - z * I2_se).clamp(min=0).sqrt()
    high = (I2 + z * I2_se).clamp(min=0).sqrt()
    return dict(J=mean.abs().mean(1), J_se=(se2.sum(1)).sqrt() / P, noise_floor=NOISE_FLOOR_FACTOR * se.mean(1),
                I2=I2, I2_se=I2_se, J_debiased=I2.clamp(min=0).sqrt(), J_debiased_low=low, J_debiased_high=high,
                J_debiased_se=(high - low) / (2 * z), J_abs=a.mean(1), J_abs_se=var_a.sum(1).sqrt() / P,
                J_abs_bias_bound=ABS_BIAS_FACTOR * se.mean(1), contexts=count.mean(1))


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
        count: contexts per (order, pair) behind the estimate, [O, P] (the pilot's are not among them).
        mean: mean dv per (order, pair), [O, P].
        var: sample variance of dv per (order, pair), [O, P].
        forwards: distinct coalitions evaluated (pilot included).
        rounds: sampling rounds (1 in the fixed design; 2 in the precision mode: pilot, then estimate).
        converged: bool [O], the order's final interval met the target (all True in the fixed design).
        target_ci: the target it was run for (None = fixed budget).
        pilot_contexts: contexts per (order, pair) of the precision mode's pilot, [O, P] (None in the fixed design).
    """
    stats: Dict[str, torch.Tensor]
    count: torch.Tensor
    mean: torch.Tensor
    var: torch.Tensor
    forwards: int
    rounds: int
    converged: torch.Tensor
    target_ci: Optional[float] = None
    pilot_contexts: Optional[torch.Tensor] = None


def _pooled_plugin_variance(pilot: PairSamples, estimate: PairSamples, count: torch.Tensor) -> torch.Tensor:
    """Var(U_p) of the estimation phase, 4 I² s² / K + 2 s⁴ / (K (K - 1)) at its K, with I² (by the unbiased U,
    floored at 0) and s² taken from the pilot's and the estimate's draws together.

    The variance may use the pilot's draws (the estimate may not): with skewed dv a rare value is often missing from a
    few draws (s² = 0 for that pair), and twice the draws miss it less often. Î² in place of I² would add the noise
    s² / K to it and over-cover wherever I is small against the noise (measured: up to 99 % in the middle orders);
    the unbiased U does not. Measured per-order coverage on the known games: 92-98 % (``tests/test_strength.py``)."""
    both = PairSamples(pilot.num_orders, pilot.num_pairs)
    both.add(torch.cat([pilot.order, estimate.order]), torch.cat([pilot.pair, estimate.pair]),
             torch.cat([pilot.dv, estimate.dv]))
    pooled = pair_summary(both)
    var = pooled['var'].nan_to_num(0.0)
    return 4 * pooled['U'].clamp(min=0) * var / count + 2 * var ** 2 / (count * (count - 1)).clamp(min=1)


def _tolerance(stats, target_ci: float, ci_floor: float, z: float) -> torch.Tensor:
    """The largest I2 standard error that meets the target at each order. A half-width of REL * J on the root scale
    is z * se_I2 / (2 J) <= REL * J, i.e. se_I2 <= 2 REL I2 / z. Orders whose I2 is below ``ci_floor`` x the mean
    I2 over the orders are held to the tolerance at that floor: a relative target on a near-zero value is unbounded
    (on the root scale the plan for an order near 0 grows as 1 / I2², and one such order took the whole budget),
    while the normalised curve only needs them to an absolute precision."""
    i2 = stats['I2'].clamp(min=0)
    floor = ci_floor * i2.mean()
    return 2 * target_ci * torch.maximum(i2, floor) / z


def _plan(pilot: Dict[str, torch.Tensor], deterministic, tolerance, min_contexts: int) -> torch.Tensor:
    """Contexts per (order, pair) for the estimation phase, from the pilot alone: Neyman allocation over each order's
    pairs. With a_p = K Var(U_p) (the variance per context), Var(I2) = sum_p a_p / K_p / P² is smallest for a given
    total at K_p proportional to sqrt(a_p), and the total that meets the tolerance t is sum_q sqrt(a_q)² / (P t)².
    a_p is the plug-in 4 Î² s² + 2 s⁴ / (K - 1), floored at 5 % of the order's mean so that a pair whose pilot
    looked noiseless (a rare dv value not drawn) still gets contexts; every pair gets at least ``min_contexts``."""
    count, mean, var = pilot['count'], pilot['mean'], pilot['var'].nan_to_num(0.0)
    a = 4 * mean ** 2 * var + 2 * var ** 2 / (count - 1).clamp(min=1)
    a = torch.maximum(a, 0.05 * a.mean(1, keepdim=True)) + 1e-300
    root = a.sqrt()
    P = mean.shape[1]
    want = root * root.sum(1, keepdim=True) / (P * tolerance.view(-1, 1)) ** 2
    plan = want.ceil().clamp(min=min_contexts)
    plan[torch.as_tensor(deterministic)] = 1                            # one possible context: exact with one
    return plan.long()


def _fit_budget(plan: torch.Tensor, contexts: int, min_contexts: int) -> torch.Tensor:
    """Scale a plan down to ``contexts`` in all: entries at the floor (``min_contexts``, lowered to what the budget
    can pay for, 3 at the least) stay there and the others share what is left in proportion (water-filling)."""
    floor = max(3, min(min_contexts, contexts // max(plan.numel(), 1)))
    plan = plan.double().clamp(min=floor)
    for _ in range(plan.numel()):
        free = plan > floor
        room = contexts - floor * int((~free).sum())
        if not free.any() or plan[free].sum() <= room:
            break
        plan[free] = (plan[free] * room / plan[free].sum()).clamp(min=floor)
    return plan.floor().long()


def estimate_strength(value_fn: ValueFn, n_players: int, pairs: torch.Tensor, orders: Sequence[int],
                      num_contexts: Optional[int] = 24, target_ci: Optional[float] = None,
                      max_forwards: Optional[int] = None, initial_contexts: int = 8, ci_floor: float = 0.25,
                      min_contexts: int = 8, generator: Optional[torch.Generator] = None, batch_size: int = 512,
                      progress: Optional[Callable[[int], None]] = None,
                      contexts: Optional[torch.Tensor] = None) -> StrengthEstimate:
    """Strength statistics of a game at ``orders`` for ``pairs``, with a fixed budget or to a precision target.

    **Fixed design** (``target_ci=None``): ``num_contexts`` uniform contexts per pair and order (or ``contexts``), as
    the authors do.

    **Precision mode** (``target_ci=REL``, e.g. 0.05), in two phases so that the estimate is unbiased:

    1. *Pilot*: ``initial_contexts`` per pair and order (1 at m = 0 and m = n - 2, where every context is the same).
       It only plans: from its variances, the contexts each pair needs for every order's 95 % interval of the
       debiased strength to be within REL of its value (Neyman allocation over the pairs; orders whose I2 is below
       ``ci_floor`` x the mean I2 held to that floor's precision; at least ``min_contexts`` per pair), scaled down to
       ``max_forwards`` when the plan costs more. Then it is set aside.
    2. *Estimate*: fresh contexts, as many as planned, drawn independently of the pilot. Every statistic comes from
       them alone. Because the number of contexts was fixed before they were drawn, U_p is unbiased for I_p² given
       that number, and so I2 is unbiased; stopping rules that pool the draws that made the decision (a sequential
       "sample until the interval looks small") are not, and over-state orders whose first draws happened to be
       large. Repeated runs on games with a known answer check this (``tests/test_strength.py``).

    The cost is the pilot on top of the estimate (coalitions shared between the phases are evaluated once);
    ``benchmarks/interaction_bias.py`` compares it with the fixed design at equal precision. ``converged`` says
    which orders' final intervals met the target (the plan rests on the pilot's noisy variances, so some miss it;
    their intervals are then wider, not wrong).

    Args:
        value_fn: bool masks [B, n] -> values [B].
        n_players: n.
        pairs: int64 [P, 2].
        orders: the orders m.
        num_contexts: contexts per pair and order of the fixed design (and the cost ``max_forwards`` defaults to).
        target_ci: the relative 95 % half-width wanted per order; None = fixed budget.
        max_forwards: cap on distinct coalitions in the precision mode, pilot included; None = 4 x the fixed
            design's contexts.
        initial_contexts: the pilot's contexts per pair and order.
        ci_floor: orders whose I2 is below this fraction of the mean I2 over the orders are held to the floor's
            absolute precision.
        min_contexts: the fewest contexts per pair and order of the estimation phase, lowered (to 3 at the least)
            where the budget left after the pilot cannot pay for it.
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
        est.stats['J_abs'], est.stats['J_debiased'], est.forwards
        ```
    """
    pairs, orders = check_pairs_orders(n_players, pairs, orders)
    O, P = len(orders), len(pairs)
    deterministic = [m == 0 or m == n_players - 2 for m in orders]
    values = CachedValues(value_fn, batch_size, progress, remember=target_ci is not None)

    def evaluate(request: torch.Tensor, ctx: Optional[torch.Tensor] = None) -> PairSamples:
        """dv for ``request[o, p]`` contexts per (order, pair): the given ``ctx`` or fresh uniform draws."""
        order_idx = torch.arange(O).repeat_interleave(P).repeat_interleave(request.view(-1))
        pair_idx = torch.arange(P).repeat(O).repeat_interleave(request.view(-1))
        if ctx is None:
            ctx = _draw_contexts(n_players, pairs[pair_idx], torch.tensor(orders, dtype=torch.long)[order_idx],
                                 generator)
        coalitions = with_pairs(ctx, pairs[pair_idx])                   # [R, 4, n]
        v = values(coalitions.reshape(-1, n_players)).view(-1, 4)
        samples = PairSamples(O, P)
        samples.add(order_idx, pair_idx, (v * INTERACTION_SIGNS).sum(-1))
        return samples

    def finish(samples: PairSamples, rounds: int, converged=None, pilot_contexts=None, pilot=None) -> StrengthEstimate:
        summary = pair_summary(samples)
        if pilot is not None:
            summary['var_U'] = _pooled_plugin_variance(pilot, samples, summary['count'])
        stats = order_statistics(summary, deterministic)
        if converged is None:  # (the precision mode: a target was given)
            assert target_ci is not None
            converged = stats['I2_se'] <= _tolerance(stats, target_ci, ci_floor, Z95)
        return StrengthEstimate(stats, summary['count'], summary['mean'], summary['var'], values.forwards, rounds,
                                converged, target_ci, pilot_contexts)

    if target_ci is None:
        if contexts is None:
            if num_contexts is None or num_contexts < 1:
                raise ValueError(f'num_contexts={num_contexts} must be >= 1 (or give target_ci)')
            contexts = sample_contexts(n_players, pairs, orders, num_contexts, generator)
        K = contexts.shape[2]
        request = torch.full((O, P), K, dtype=torch.long)
        return finish(evaluate(request, contexts.reshape(-1, n_players)), 1, torch.ones(O, dtype=torch.bool))

    if not target_ci > 0:
        raise ValueError(f'target_ci={target_ci} must be > 0 (a relative half-width, e.g. 0.05)')
    if initial_contexts < 2:
        raise ValueError(f'initial_contexts={initial_contexts} must be >= 2 (a variance needs two contexts)')
    if min_contexts < 3:
        raise ValueError(f'min_contexts={min_contexts} must be >= 3 (the jackknife needs three contexts)')
    if max_forwards is None:
        max_forwards = 4 * O * P * (num_contexts or 50)
    det = torch.tensor(deterministic)
    pilot_request = torch.full((O, P), initial_contexts, dtype=torch.long)
    pilot_request[det] = 1
    pilot_samples = evaluate(pilot_request)
    pilot = pair_summary(pilot_samples)
    pilot_stats = order_statistics(pilot, deterministic)
    plan = _plan(pilot, deterministic, _tolerance(pilot_stats, target_ci, ci_floor, Z95), min_contexts)
    left = max_forwards - values.forwards - 4 * int(plan[det].sum())
    noisy = int(plan[~det].sum())
    if noisy * 4 > left:  # over budget: scale the plan down (still fixed by the pilot alone, so still unbiased)
        plan[~det] = _fit_budget(plan[~det], max(left, 0) // 4, min_contexts)
    return finish(evaluate(plan), 2, pilot_contexts=pilot_request, pilot=pilot_samples)
