"""Players, coalitions and contexts: what every interaction estimator shares. A value function maps bool masks
[B, n] (True = player present) to values [B]; a context of a pair (i, j) at order m is a set S of m players outside
the pair, and dv(i, j, S) = v(S + {i, j}) - v(S + {i}) - v(S + {j}) + v(S) is the product of the four coalitions'
values with ``INTERACTION_SIGNS``.
"""
from typing import Callable, Optional, Sequence, Tuple

import torch

__all__ = ['ValueFn', 'EXACT_MAX_PLAYERS', 'INTERACTION_SIGNS', 'check_pairs_orders', 'order_grid', 'evaluate_unique',
           'evaluate_rows', 'with_pairs', 'sample_contexts', 'sample_pairs', 'ORDER_RATIOS']

ORDER_RATIOS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
"""The authors' 13 order ratios m / (n - 2)."""
ValueFn = Callable[[torch.Tensor], torch.Tensor]
"""A value function: bool masks [B, n] (True = player present) -> values [B]."""
EXACT_MAX_PLAYERS = 20
"""The most players `exact_multi_order_interaction` enumerates (2^20 = 1M evaluations of v)."""


def check_pairs_orders(n_players: int, pairs: torch.Tensor, orders: Sequence[int]) -> Tuple[torch.Tensor, list]:
    """Pairs as int64 [P, 2] and orders as a list, or a `ValueError` naming the bad value.

    Args:
        n_players: n (at least 2).
        pairs: [P, 2] distinct player indices in 0..n-1.
        orders: each an integer in 0..n-2.
    """
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


def with_pairs(contexts: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """The four coalitions of each context and pair: S+ij, S+i, S+j, S.

    Args:
        contexts: bool [..., n], the contexts S (the pair's players absent).
        pairs: int64 [..., 2], the pair (i, j) of each context.

    Returns:
        bool [..., 4, n].
    """
    i, j = pairs[..., 0], pairs[..., 1]
    s_ij, s_i, s_j = contexts.clone(), contexts.clone(), contexts.clone()
    s_ij.scatter_(-1, i.unsqueeze(-1), True)
    s_ij.scatter_(-1, j.unsqueeze(-1), True)
    s_i.scatter_(-1, i.unsqueeze(-1), True)
    s_j.scatter_(-1, j.unsqueeze(-1), True)
    return torch.stack([s_ij, s_i, s_j, contexts], dim=-2)


INTERACTION_SIGNS = torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64)
"""The signs of v(S+ij), v(S+i), v(S+j), v(S) in dv(i, j, S) (the order `with_pairs` returns them in)."""


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
    pairs, orders = check_pairs_orders(n_players, pairs, orders)
    P = len(pairs)
    # random keys; the pair's own players get +inf so they are never among the m smallest
    keys = torch.rand(len(orders), P, num_contexts, n_players, generator=generator)
    keys.scatter_(-1, pairs[None, :, None, :].expand(len(orders), P, num_contexts, 2), float('inf'))
    ranks = keys.argsort(-1).argsort(-1)                              # rank of each player's key
    m = torch.tensor(orders, dtype=torch.long).view(-1, 1, 1, 1)
    return ranks < m


def sample_pairs(grid: int, num_pairs: int, radius: int = 2, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Player pairs as the authors draw them: i uniform on the grid, j uniform among i's neighbours within Chebyshev
    distance ``radius`` (j != i).

    Args:
        grid: patches per side.
        num_pairs: pairs to draw.
        radius: the neighbourhood's Chebyshev radius.
        generator: torch random generator (for reproducible pairs).

    Returns:
        int64 [num_pairs, 2] player indices (row-major over the grid).
    """
    i = torch.randint(grid * grid, (num_pairs,), generator=generator)
    offsets = [(dr, dc) for dr in range(-radius, radius + 1) for dc in range(-radius, radius + 1) if (dr, dc) != (0, 0)]
    pairs = []
    for p in i.tolist():
        r, c = divmod(p, grid)
        neighbours = [(r + dr) * grid + (c + dc) for dr, dc in offsets if 0 <= r + dr < grid and 0 <= c + dc < grid]
        k = int(torch.randint(len(neighbours), (1,), generator=generator))
        pairs.append((p, neighbours[k]))
    return torch.tensor(pairs, dtype=torch.long)
