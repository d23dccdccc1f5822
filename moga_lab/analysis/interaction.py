"""Multi-order interactions (Deng et al., "Discovering and Explaining the Representation Bottleneck of
DNNs", ICLR 2022), the interaction-complexity metric MogaNet's paper uses unchanged.

For players N = {0..n-1}, a value function v over subsets, a pair (i, j) and a context S of N minus {i, j}:

    dv(i, j, S) = v(S + {i, j}) - v(S + {i}) - v(S + {j}) + v(S)
    I_m(i, j)   = mean of dv(i, j, S) over all S with |S| = m

This file knows nothing about images: ``value_fn`` maps a bool tensor [B, n] (True = player present) to a
float tensor [B]. See `moga_lab.analysis.games` for the image game and the strength curve.
"""
from typing import Callable, Optional, Sequence, Tuple

import torch

__all__ = ['exact_multi_order_interaction', 'multi_order_interaction', 'evaluate_unique', 'evaluate_rows',
           'EXACT_MAX_PLAYERS',
           'order_grid', 'sample_contexts']

ValueFn = Callable[[torch.Tensor], torch.Tensor]
EXACT_MAX_PLAYERS = 20
"""The most players `exact_multi_order_interaction` enumerates (2^20 = 1M evaluations of v)."""


def _check(n_players: int, pairs: torch.Tensor, orders: Sequence[int]) -> Tuple[torch.Tensor, list]:
    if n_players < 2:
        raise ValueError(f'n_players={n_players}: need at least 2 players')
    pairs = torch.as_tensor(pairs, dtype=torch.long)
    if pairs.ndim != 2 or pairs.shape[1] != 2:
        raise ValueError(f'pairs must be a long tensor [P, 2]; got shape {tuple(pairs.shape)}')
    if len(pairs) and (pairs.min() < 0 or pairs.max() >= n_players or (pairs[:, 0] == pairs[:, 1]).any()):
        raise ValueError(f'pairs must hold two different players in [0, {n_players}); got {pairs.tolist()[:5]}...')
    orders = [int(m) for m in orders]
    bad = [m for m in orders if not 0 <= m <= n_players - 2]
    if bad:
        raise ValueError(f'orders {bad} are out of range; accepted: 0 <= m <= n_players - 2 = {n_players - 2}')
    return pairs, orders


def order_grid(n_players: int, ratios: Sequence[float]) -> list:
    """Orders m = int((n - 2) r), as the authors pick them (duplicates kept in order of the ratios).

    Args:
        n_players: n.
        ratios: order ratios in [0, 1].

    Returns:
        The orders, a list of ints.
    """
    return [int((n_players - 2) * r) for r in ratios]


def evaluate_unique(value_fn: ValueFn, masks: torch.Tensor, batch_size: int = 512,
                    progress: Optional[Callable[[int], None]] = None) -> torch.Tensor:
    """v for every row of ``masks``, evaluating each distinct mask once, in batches.

    Args:
        value_fn: bool masks [B, n] -> values [B].
        masks: bool [M, n].
        batch_size: masks per call of ``value_fn``.
        progress: called with the number of masks evaluated after each batch.

    Returns:
        float64 [M].
    """
    unique, inverse = torch.unique(masks, dim=0, return_inverse=True)
    return evaluate_rows(value_fn, unique, batch_size, progress)[inverse]


def evaluate_rows(value_fn: ValueFn, masks: torch.Tensor, batch_size: int = 512,
                  progress: Optional[Callable[[int], None]] = None) -> torch.Tensor:
    """v for every row of ``masks`` (repeated rows evaluated again; see `evaluate_unique`), in batches, as float64
    on the CPU.

    Args:
        value_fn: the game.
        masks: the coalitions, one per row.
        batch_size: rows per call.
        progress: progress callback (rows done).

    Returns:
        One value per row.
    """
    values = torch.empty(len(masks), dtype=torch.float64)
    for start in range(0, len(masks), batch_size):
        chunk = masks[start:start + batch_size]
        out = value_fn(chunk)
        if out.shape != (len(chunk),):
            raise ValueError(f'value_fn must map [B, n] masks to [B] values; got shape {tuple(out.shape)} '
                             f'for B={len(chunk)}')
        values[start:start + len(chunk)] = out.detach().to('cpu', torch.float64)
        if progress is not None:
            progress(len(chunk))
    return values


def _with_pairs(contexts: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """contexts [..., n] with pair index [...] -> the four coalitions [..., 4, n]: S+ij, S+i, S+j, S."""
    i, j = pairs[..., 0], pairs[..., 1]
    s_ij, s_i, s_j = contexts.clone(), contexts.clone(), contexts.clone()
    s_ij.scatter_(-1, i.unsqueeze(-1), True)
    s_ij.scatter_(-1, j.unsqueeze(-1), True)
    s_i.scatter_(-1, i.unsqueeze(-1), True)
    s_j.scatter_(-1, j.unsqueeze(-1), True)
    return torch.stack([s_ij, s_i, s_j, contexts], dim=-2)


_SIGNS = torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64)


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
    pairs, orders = _check(n_players, pairs, orders)
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


def sample_contexts(n_players: int, pairs: torch.Tensor, orders: Sequence[int], num_contexts: int,
                    generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Uniform random contexts: each S of size m drawn from N minus {i, j}.

    Args:
        n_players: n.
        pairs: int64 [P, 2].
        orders: the orders m.
        num_contexts: contexts K per pair and order.
        generator: torch random generator.

    Returns:
        bool [len(orders), P, K, n].
    """
    pairs, orders = _check(n_players, pairs, orders)
    P = len(pairs)
    # random keys; the pair's own players get +inf so they are never among the m smallest
    keys = torch.rand(len(orders), P, num_contexts, n_players, generator=generator)
    keys.scatter_(-1, pairs[None, :, None, :].expand(len(orders), P, num_contexts, 2), float('inf'))
    ranks = keys.argsort(-1).argsort(-1)                              # rank of each player's key
    m = torch.tensor(orders, dtype=torch.long).view(-1, 1, 1, 1)
    return ranks < m


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
    from .strength import estimate_strength  # the one sampling engine; strength.py builds on this file
    pairs, orders = _check(n_players, pairs, orders)
    if contexts is None:
        if num_contexts < 1:
            raise ValueError(f'num_contexts={num_contexts} must be >= 1')
        contexts = sample_contexts(n_players, pairs, orders, num_contexts, generator)
    est = estimate_strength(value_fn, n_players, pairs, orders, contexts=contexts, batch_size=batch_size,
                            progress=progress)
    return est.mean, (est.var / est.count).sqrt()  # NaN at K = 1, as a standard error from one sample is
