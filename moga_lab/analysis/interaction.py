"""Multi-order interactions (Deng et al., "Discovering and Explaining the Representation Bottleneck of
DNNs", ICLR 2022), the interaction-complexity metric MogaNet's paper uses unchanged.

For players N = {0..n-1}, a value function v over subsets, a pair (i, j) and a context S of N minus {i, j}:

    dv(i, j, S) = v(S + {i, j}) - v(S + {i}) - v(S + {j}) + v(S)
    I_m(i, j)   = mean of dv(i, j, S) over all S with |S| = m

This file knows nothing about images: ``value_fn`` maps a bool tensor [B, n] (True = player present) to a
float tensor [B]. See `moga_lab.analysis.game` for the image game, `moga_lab.analysis.estimate` for the per-image
strengths and `moga_lab.analysis.curves` for the curves.
"""
from typing import Callable, Optional, Sequence, Tuple

import torch

from moga_lab.analysis.coalitions import (EXACT_MAX_PLAYERS, ValueFn, check_pairs_orders, evaluate_rows,
                                         evaluate_unique, order_grid, sample_contexts)
from moga_lab.analysis.strength import estimate_strength

__all__ = ['exact_multi_order_interaction', 'multi_order_interaction', 'evaluate_unique', 'evaluate_rows',
           'EXACT_MAX_PLAYERS',
           'order_grid', 'sample_contexts']


def exact_multi_order_interaction(value_fn: ValueFn, n_players: int, pairs: torch.Tensor, orders: Sequence[int],
                                  batch_size: int = 4096) -> torch.Tensor:
    """I_m(i, j) by enumerating every context.

    Only for small games: v is evaluated on all 2^n coalitions once, so n is limited to ``EXACT_MAX_PLAYERS`` (20);
    use `multi_order_interaction` beyond that.

    Args:
        value_fn: bool masks [B, n] -> values [B].
        n_players: n.
        pairs: int64 [P, 2] player pairs.
        orders: the orders m (0 <= m <= n - 2).
        batch_size: coalitions per call of ``value_fn``.

    Returns:
        float64 [len(orders), P].

    Raises:
        ValueError: n above ``EXACT_MAX_PLAYERS``.

    Example:
        ```python
        and_game = lambda masks: masks.all(dim=1).double()       # v(S) = 1 only for the grand coalition
        exact_multi_order_interaction(and_game, 6, torch.tensor([[0, 1]]), orders=[0, 2, 4])
        ```
    """
    if n_players > EXACT_MAX_PLAYERS:
        raise ValueError(f'exact enumeration needs 2^n evaluations; n_players={n_players} is above the limit of '
                         f'{EXACT_MAX_PLAYERS}: use multi_order_interaction (Monte-Carlo) instead')
    pairs, orders = check_pairs_orders(n_players, pairs, orders)
    codes = torch.arange(2 ** n_players, dtype=torch.long)
    bits = 1 << torch.arange(n_players, dtype=torch.long)
    all_masks = (codes.unsqueeze(1) & bits) != 0                     # [2^n, n]
    v = evaluate_unique(value_fn, all_masks, batch_size=batch_size)  # indexed by code
    popcount = all_masks.sum(1)
    out = torch.zeros(len(orders), len(pairs), dtype=torch.float64)
    for p, (i, j) in enumerate(pairs.tolist()):
        free = (codes & (bits[i] | bits[j])) == 0
        for o, m in enumerate(orders):
            s = codes[free & (popcount == m)]
            dv = v[s | bits[i] | bits[j]] - v[s | bits[i]] - v[s | bits[j]] + v[s]
            out[o, p] = dv.mean()
    return out


def multi_order_interaction(value_fn: ValueFn, n_players: int, pairs: torch.Tensor, orders: Sequence[int],
                            num_contexts: int, generator: Optional[torch.Generator] = None, batch_size: int = 512,
                            contexts: Optional[torch.Tensor] = None,
                            progress: Optional[Callable[[int], None]] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Monte-Carlo I_m(i, j) with ``num_contexts`` random contexts per pair and order.

    All coalitions of all pairs and orders are evaluated together and each distinct one once (v(empty) and v(N)
    are shared by every pair, v({i}) by the pairs of player i, ...).

    Args:
        value_fn: bool masks [B, n] -> values [B].
        n_players: n.
        pairs: int64 [P, 2].
        orders: the orders m.
        num_contexts: contexts K per pair and order.
        generator: torch random generator for the contexts.
        batch_size: coalitions per call of ``value_fn``.
        contexts: bool [O, P, K, n] from `sample_contexts`, to reuse the same draws for several models.
        progress: called with the number of coalitions evaluated after each batch.

    Returns:
        ``(mean, standard error)``, float64 [len(orders), P] each; the standard error is the sample standard
        deviation of dv over the contexts divided by sqrt(K) (0 where every context is the same, e.g. m = 0).
    """
    pairs, orders = check_pairs_orders(n_players, pairs, orders)
    if contexts is None:
        if num_contexts < 1:
            raise ValueError(f'num_contexts={num_contexts} must be >= 1')
        contexts = sample_contexts(n_players, pairs, orders, num_contexts, generator)
    est = estimate_strength(value_fn, n_players, pairs, orders, contexts=contexts, batch_size=batch_size,
                            progress=progress)
    return est.mean, (est.var / est.count).sqrt()  # NaN at K = 1, as a standard error from one sample is
