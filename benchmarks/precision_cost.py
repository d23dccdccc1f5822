"""The two-phase precision mode against the fixed design at equal precision, on a game with a known answer.

    python benchmarks/precision_cost.py [--grid 7] [--targets 0.566 0.2] [--budgets 1 4] [--replicates 20] [--out FILE.md]

One image's pair draw (20 pairs, the 13 orders) of `random_local_game` is estimated ``--replicates`` times by each
design with fresh contexts. Precision is read from the **spread over the repeated runs** (the empirical SD of I2
at each order), not from either design's own variance estimate, so both designs are judged by the same yardstick:
an order's precision is SD / tolerance, where the tolerance is the one the precision mode aims at
(`moga_lab.analysis.strength` ``_tolerance``, evaluated at the true curve: the fixed design at K = 128, averaged over
the runs), and a design's precision is its worst order's. The precision mode runs under a cap of ``--budgets`` x the
fixed design's cost at K = 24 (1 is its default cap), and spends at most that. The fixed design's equal-precision
cost is that of the smallest K in ``FIXED_K`` whose worst order is at least as precise.

Printed: forward passes per image of each (distinct masked evaluations, the pilot included) and the ratio
fixed / two-phase (below 1: the fixed design is cheaper). Forward passes, not seconds: the ratio holds on any CPU.
"""
import argparse
from typing import Dict, Tuple

import numpy as np
import torch

from moga_lab.analysis.coalitions import ORDER_RATIOS, sample_pairs
from moga_lab.analysis.interaction import order_grid
from moga_lab.analysis.known_games import random_local_game
from moga_lab.analysis.strength import Z95, _tolerance, estimate_strength

FIXED_K = (8, 12, 16, 24, 32, 48, 64, 96, 128)


def repeated(game, n, pairs, orders, replicates: int, **kw) -> Tuple[np.ndarray, np.ndarray, float]:
    """Mean and SD of I2 per order over ``replicates`` runs, and the mean forwards of a run."""
    runs = [estimate_strength(game, n, pairs, orders, generator=torch.Generator().manual_seed(7 + r), **kw)
            for r in range(replicates)]
    values = np.array([e.stats['I2'].numpy() for e in runs])
    return values.mean(0), values.std(0, ddof=1), float(np.mean([e.forwards for e in runs]))


def worst(sd: np.ndarray, tolerance: np.ndarray) -> float:
    inner = slice(1, -1)                                                # m = 0 and n - 2 are exact
    return float((sd[inner] / tolerance[inner]).max())


def measure(grid: int, targets, budgets, replicates: int) -> Dict[tuple, tuple]:
    n = grid * grid
    game = random_local_game(grid, seed=0)
    orders = order_grid(n, ORDER_RATIOS)
    pairs = sample_pairs(grid, 20, generator=torch.Generator().manual_seed(100))
    fixed = {K: repeated(game, n, pairs, orders, replicates, num_contexts=K) for K in FIXED_K}
    truth = torch.as_tensor(fixed[FIXED_K[-1]][0])
    out = {}
    cap = 4 * len(orders) * len(pairs) * 24
    for target in targets:
        tolerance = _tolerance({'I2': truth}, target, 0.25, Z95).numpy()        # the mode's default ci_floor
        for budget in budgets:
            _, sd, cost = repeated(game, n, pairs, orders, replicates, target_ci=target, max_forwards=int(budget * cap))
            reached = worst(sd, tolerance)
            match = next(((K, worst(f[1], tolerance), f[2]) for K, f in fixed.items()
                          if worst(f[1], tolerance) <= reached), (None, worst(fixed[FIXED_K[-1]][1], tolerance), None))
            out[target, budget] = (reached, cost) + match
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--grid', type=int, default=7)
    p.add_argument('--targets', type=float, nargs='+', default=[0.566, 0.2])
    p.add_argument('--budgets', type=float, nargs='+', default=[1.0, 4.0],
                   help="the precision mode's cap, in fixed designs at K = 24 (1 = its default)")
    p.add_argument('--replicates', type=int, default=20)
    p.add_argument('--out', help='also write the table to this Markdown file')
    args = p.parse_args(argv)
    lines = ['| n | target per image | cap (x fixed K = 24) | worst SD / tolerance, two-phase | forwards, two-phase '
             '| fixed K at equal precision | its worst SD / tolerance | forwards, fixed | fixed / two-phase |',
             '| --- | --- | --- | --- | --- | --- | --- | --- | --- |']
    print('\n'.join(lines), flush=True)
    for (target, budget), (reached, cost, K, fixed_reached, fixed_cost) in measure(
            args.grid, args.targets, args.budgets, args.replicates).items():
        k_text = str(K) if K else f'> {FIXED_K[-1]}'
        ratio = f'{fixed_cost / cost:.2f}x' if fixed_cost else f'> {FIXED_K[-1] * 4 * 11 * 20 / cost:.2f}x'
        fixed_text = f'{fixed_cost:,.0f}' if fixed_cost else '-'
        lines.append(f'| {args.grid ** 2} | {target:g} | {budget:g} | {reached:.2f} | {cost:,.0f} | {k_text} | {fixed_reached:.2f} '
                     f'| {fixed_text} | {ratio} |')
        print(lines[-1], flush=True)
    if args.out:
        from moga_lab.utils.atomic import atomic_write_text
        atomic_write_text(args.out, '\n'.join(lines) + '\n')


if __name__ == '__main__':
    main()
