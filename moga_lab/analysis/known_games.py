"""Games on a g x g grid of players whose multi-order interactions are known in closed form: the ground truth the
estimators and the strength statistics are checked against (tests, ``benchmarks/interaction_bias.py``).

A threshold game is a sum of terms v(S) = sum_t w_t * 1[|S ∩ A_t| >= k_t]. An AND term is k_t = |A_t| (its Harsanyi
dividend sits on A_t alone), a pairwise term is |A_t| = k_t = 2, an OR term is k_t = 1. For a pair i, j in A_t and a
context S of size m drawn from N minus {i, j}, c = |S ∩ A_t minus {i, j}| is hypergeometric (population n - 2, a - 2
successes, m draws), and dv = 1[c = k - 2] - 1[c = k - 1], so

    I_m(i, j) = sum over the terms holding both i and j of  w_t * (P(c = k_t - 2) - P(c = k_t - 1)),

and pairs not both in a term get nothing from it. Unlike a pure AND game, dv varies across contexts (a threshold
term fires for some contexts of an order and not for others), which is what makes Monte-Carlo estimates noisy.
"""
import math
from typing import Optional, Sequence

import torch

__all__ = ['ThresholdGame', 'random_local_game', 'skewed_game', 'KNOWN_GAMES']


def _hypergeom_pmf(c: int, population: int, successes: int, draws: int) -> float:
    if c < 0 or c > successes or draws - c < 0 or draws - c > population - successes:
        return 0.0
    return math.comb(successes, c) * math.comb(population - successes, draws - c) / math.comb(population, draws)


class ThresholdGame:
    """v(S) = sum_t w_t 1[|S ∩ A_t| >= k_t]; call it on bool masks [B, n] -> float64 [B].

    Its interactions are known in closed form (hypergeometric), so estimators can be checked against the truth.

    Args:
        n_players: n.
        sets: the player-index lists A_t.
        thresholds: k_t, with 1 <= k_t <= |A_t| (1 = OR, |A_t| = AND).
        weights: w_t.

    Raises:
        ValueError: lists of different lengths or a threshold out of range.
    """

    def __init__(self, n_players: int, sets: Sequence[Sequence[int]], thresholds: Sequence[int],
                 weights: Sequence[float]):
        if not len(sets) == len(thresholds) == len(weights):
            raise ValueError(f'{len(sets)} sets, {len(thresholds)} thresholds and {len(weights)} weights: '
                             'need one of each per term')
        for members, k in zip(sets, thresholds):
            if not 1 <= k <= len(set(members)):
                raise ValueError(f'threshold {k} for a set of {len(set(members))} players; accepted: 1..|A|')
        self.n_players = n_players
        self.sets = [sorted(set(int(p) for p in members)) for members in sets]
        self.thresholds = [int(k) for k in thresholds]
        self.weights = [float(w) for w in weights]
        self.membership = torch.zeros(n_players, len(self.sets), dtype=torch.float64)
        for t, members in enumerate(self.sets):
            self.membership[members, t] = 1.0
        self._k = torch.tensor(self.thresholds, dtype=torch.float64)
        self._w = torch.tensor(self.weights, dtype=torch.float64)

    def __call__(self, masks: torch.Tensor) -> torch.Tensor:
        counts = masks.to(torch.float64) @ self.membership           # [B, T]
        return ((counts >= self._k).to(torch.float64) * self._w).sum(1)

    def interaction(self, pairs: torch.Tensor, orders: Sequence[int]) -> torch.Tensor:
        """The true I_m(i, j): float64 [len(orders), P]."""
        n = self.n_players
        out = torch.zeros(len(orders), len(pairs), dtype=torch.float64)
        for p, (i, j) in enumerate(torch.as_tensor(pairs).tolist()):
            terms = [t for t, members in enumerate(self.sets) if i in members and j in members]
            for o, m in enumerate(orders):
                total = 0.0
                for t in terms:
                    a, k = len(self.sets[t]), self.thresholds[t]
                    total += self.weights[t] * (_hypergeom_pmf(k - 2, n - 2, a - 2, m)
                                                - _hypergeom_pmf(k - 1, n - 2, a - 2, m))
                out[o, p] = total
        return out


def random_local_game(grid: int, num_terms: Optional[int] = None, pair_scale: float = 0.3,
                      seed: int = 0) -> ThresholdGame:
    """A game shaped like an image model's, with a known answer.

    ``num_terms`` terms on local blocks of the grid (2x2 to 5x5 squares and rectangles, weights N(0, 1)) with
    thresholds anywhere from OR (k = 1) to AND (k = |A|), so interactions spread over all orders and dv varies
    across contexts; plus a pairwise term (weight N(0, pair_scale²), the same I at every order and no Monte-Carlo
    noise) between every two players within Chebyshev distance 1. With the defaults, the noise floor at 24 contexts
    is 25-70 % of J at the middle orders (n = 49 and 196): a harder case than the trained MogaNet-XT measured on the
    Multi-order interaction page (about 20-30 %).

    Args:
        grid: players per side (n = grid²).
        num_terms: block terms; None = n / 2.
        pair_scale: std of the pairwise weights.
        seed: seed of the blocks, thresholds and weights.

    Returns:
        A `ThresholdGame`.
    """
    g = torch.Generator().manual_seed(seed)
    n = grid * grid
    num_terms = n // 2 if num_terms is None else num_terms
    sets, thresholds, weights = [], [], []
    for _ in range(num_terms):
        h, w = (int(x) for x in torch.randint(2, min(5, grid) + 1, (2,), generator=g))
        r0 = int(torch.randint(grid - h + 1, (1,), generator=g))
        c0 = int(torch.randint(grid - w + 1, (1,), generator=g))
        members = [(r0 + r) * grid + c0 + c for r in range(h) for c in range(w)]
        sets.append(members)
        thresholds.append(int(torch.randint(1, len(members) + 1, (1,), generator=g)))
        weights.append(float(torch.randn(1, generator=g)))
    for p in range(n):
        r, c = divmod(p, grid)
        for dr, dc in ((0, 1), (1, -1), (1, 0), (1, 1)):
            if 0 <= r + dr < grid and 0 <= c + dc < grid:
                sets.append([p, (r + dr) * grid + c + dc])
                thresholds.append(2)
                weights.append(pair_scale * float(torch.randn(1, generator=g)))
    return ThresholdGame(n, sets, thresholds, weights)


def skewed_game(grid: int, num_terms: Optional[int] = None, seed: int = 0) -> ThresholdGame:
    """A game whose dv are rare spikes: pure AND terms (k = |A|: dv fires only when every other player of the block is
    present, rare at low and middle orders) and pure OR terms (k = 1: only when none is, rare at high orders) on local
    blocks of 3 to 6 players, weights N(0, 1), plus weak neighbour pairs (weight N(0, 0.1²)). The hardest case for
    mean |I|: a pair whose spike is not drawn shows se = 0.

    Args:
        grid: players per side (n = grid²).
        num_terms: block terms; None = n / 2.
        seed: seed of the blocks and weights.
    """
    g = torch.Generator().manual_seed(seed)
    n = grid * grid
    num_terms = n // 2 if num_terms is None else num_terms
    sets, thresholds, weights = [], [], []
    shapes = [(h, w) for h in range(1, 4) for w in range(1, 4) if 3 <= h * w <= 6 and h <= grid and w <= grid]
    for _ in range(num_terms):
        h, w = shapes[int(torch.randint(len(shapes), (1,), generator=g))]
        r0 = int(torch.randint(grid - h + 1, (1,), generator=g))
        c0 = int(torch.randint(grid - w + 1, (1,), generator=g))
        members = [(r0 + r) * grid + c0 + c for r in range(h) for c in range(w)]
        sets.append(members)
        thresholds.append(len(members) if bool(torch.rand(1, generator=g) < 0.5) else 1)
        weights.append(float(torch.randn(1, generator=g)))
    for p in range(n):
        r, c = divmod(p, grid)
        for dr, dc in ((0, 1), (1, 0)):
            if r + dr < grid and c + dc < grid:
                sets.append([p, (r + dr) * grid + c + dc])
                thresholds.append(2)
                weights.append(0.1 * float(torch.randn(1, generator=g)))
    return ThresholdGame(n, sets, thresholds, weights)


KNOWN_GAMES = {'local': random_local_game, 'skewed': skewed_game}
"""The known-answer games by name: ``local`` (threshold terms from AND to OR, dv varying across contexts) and
``skewed`` (pure AND / OR terms: dv rare spikes)."""
