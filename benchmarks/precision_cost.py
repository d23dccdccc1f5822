"""The two-phase precision mode against the fixed design at equal precision, on games with a known answer.

    python benchmarks/precision_cost.py [--grid 7] [--targets 0.566 0.3] [--replicates 10]

For each per-image target, the precision mode runs ``--replicates`` times per image (8 images' pair draws, 20 pairs,
the 13 orders, a budget of ``--budget`` x the fixed design's cost at K = 24); the precision it reached is the
median over runs of the largest relative 95 % half-width of the RMS strength over the inner orders. The fixed design
is then run at K = 8, 12, 16, 24, 32, 48, 64, 96 contexts and the smallest K whose median precision is at least as
good is its equal-precision cost.
Printed: forward passes per image of each (distinct masked evaluations, the pilot included) and their ratio.
Forward passes, not seconds: the ratio holds on any CPU.
"""
import argparse

import numpy as np
import torch

from moga_lab.analysis.games import ORDER_RATIOS, sample_pairs
from moga_lab.analysis.interaction import order_grid
from moga_lab.analysis.known_games import random_local_game
from moga_lab.analysis.strength import estimate_strength

FIXED_K = (8, 12, 16, 24, 32, 48, 64, 96)


def _precision(stats) -> float:
    inner = slice(1, -1)
    half = (stats['J_debiased_high'] - stats['J_debiased_low'])[inner] / 2
    value = stats['J_debiased'][inner]
    floor = 0.1 * stats['J_debiased'].mean()
    return float((half / torch.maximum(value, floor)).max())


def measure(grid: int, target: float, replicates: int, images: int = 8, budget: float = 4.0):
    n = grid * grid
    game = random_local_game(grid, seed=0)
    orders = order_grid(n, ORDER_RATIOS)
    draws = [sample_pairs(grid, 20, generator=torch.Generator().manual_seed(100 + i)) for i in range(images)]

    def runs(**kw):
        out = [estimate_strength(game, n, pairs, orders, generator=torch.Generator().manual_seed(1000 * r + i), **kw)
               for i, pairs in enumerate(draws) for r in range(replicates)]
        return float(np.median([_precision(e.stats) for e in out])), float(np.mean([e.forwards for e in out]))
    precise, cost = runs(target_ci=target, max_forwards=int(budget * 4 * len(orders) * 20 * 24))
    for K in FIXED_K:
        reached, fixed_cost = runs(num_contexts=K)
        if reached <= precise:
            return precise, cost, K, reached, fixed_cost
    return precise, cost, None, reached, fixed_cost


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--grid', type=int, default=7)
    p.add_argument('--targets', type=float, nargs='+', default=[0.566])
    p.add_argument('--replicates', type=int, default=10)
    p.add_argument('--budget', type=float, default=4.0, help="the precision mode's cap, in fixed designs at K = 24")
    args = p.parse_args(argv)
    print('| n | target per image | precision reached (median) | forwards, two-phase | fixed K at equal precision '
          '| its precision | forwards, fixed | fixed / two-phase |')
    print('| --- | --- | --- | --- | --- | --- | --- | --- |')
    for target in args.targets:
        precise, cost, K, reached, fixed_cost = measure(args.grid, target, args.replicates, budget=args.budget)
        k_text = str(K) if K else f'> {FIXED_K[-1]}'
        print(f'| {args.grid ** 2} | {target:g} | {100 * precise:.1f} % | {cost:,.0f} | {k_text} | {100 * reached:.1f} % '
              f'| {fixed_cost:,.0f} | {fixed_cost / cost:.2f}x |', flush=True)


if __name__ == '__main__':
    main()
