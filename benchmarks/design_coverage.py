"""Do the curves' intervals cover, whatever the design? Repeated curves on the known games, every image with its own
pairs and contexts, against the truth over the population of pairs the image game draws from.

    python benchmarks/design_coverage.py --curves 200 --images 16 --out benchmarks/results/design_coverage.md

For each known game (`moga_lab.analysis.known_games`: ``local``, ``skewed``) and design (the authors' fixed 20 x 24,
the shared design planned for a quarter of its passes), ``--curves`` curves of ``--images`` images each (an image: one
run of the game with its pairs and contexts drawn afresh). Per curve: the 95 % bootstrap interval over images of each
order's mean I2 (`moga_lab.analysis.bootstrap.bootstrap_images`, as the curves' bands) and of the RMS curve's middle
share (`moga_lab.analysis.curves.middle_share_interval`'s rule). The truth: the mean over the authors' pair
distribution (i uniform, j uniform among i's neighbours within distance 2) of I_m(i, j)², by enumeration. Printed and
written: coverage per order (worst and mean over the inner orders) and of the middle share, with the per-image
intervals' coverage of each run's own truth (given its pairs) beside them.
"""
import argparse

import numpy as np
import torch
from scipy import stats

from moga_lab.analysis.bootstrap import bootstrap_images
from moga_lab.analysis.coalitions import ORDER_RATIOS, sample_pairs
from moga_lab.analysis.interaction import order_grid
from moga_lab.analysis.known_games import KNOWN_GAMES
from moga_lab.analysis.planner import plan_shared, run_pilot
from moga_lab.analysis.shared import estimate_shared
from moga_lab.analysis.strength import Z95, estimate_strength
from moga_lab.utils.atomic import atomic_write_text

GRID, N = 7, 49
ORDERS = order_grid(N, ORDER_RATIOS)
BAND = (np.asarray(ORDER_RATIOS) >= 0.2) & (np.asarray(ORDER_RATIOS) <= 0.6)


def population(game) -> np.ndarray:
    """Mean over the authors' pair distribution of I_m², per order."""
    pairs, weights = [], []
    for i in range(N):
        r, c = divmod(i, GRID)
        near = [(r + dr) * GRID + c + dc for dr in range(-2, 3) for dc in range(-2, 3)
                if (dr, dc) != (0, 0) and 0 <= r + dr < GRID and 0 <= c + dc < GRID]
        pairs += [(i, j) for j in near]
        weights += [1 / N / len(near)] * len(near)
    i2 = game.interaction(torch.tensor(pairs), ORDERS).pow(2).numpy()
    return (i2 * np.asarray(weights)).sum(1)


def _share(mean_i2):
    root = np.sqrt(np.clip(mean_i2, 0, None))
    return root[..., BAND].sum(-1) / root.sum(-1)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--curves', type=int, default=200)
    p.add_argument('--images', type=int, default=16)
    p.add_argument('--out')
    args = p.parse_args(argv)
    lines = [f'{args.curves} curves of {args.images} images per row (each image: pairs and contexts drawn afresh); '
             'coverage of the truth over the population of pairs by the 95 % bootstrap interval over images, and of '
             'each run\'s own truth (given its pairs) by the per-image interval.', '',
             '| game | design | passes / image | curve, per order: worst / mean | curve, middle share | '
             'per image, per order: worst / mean |', '| --- | --- | ---: | ---: | ---: | ---: |']
    for name in ('local', 'skewed'):
        game = KNOWN_GAMES[name](GRID, seed=3)
        truth = population(game)
        g = torch.Generator().manual_seed(99)
        comp = run_pilot([game], N, [sample_pairs(GRID, 40, generator=g)], ORDERS, ratios=ORDER_RATIOS, generator=g)
        authors = 4 * 20 * 24 * (len(ORDERS) - 2) + 80
        plan = plan_shared(comp, N, GRID, budget=authors / 4, ratios=ORDER_RATIOS)
        for design in ('authors', 'shared/4'):
            curve_hits, share_hits, image_hits, passes = [], [], [], []
            for c in range(args.curves):
                values = []
                for k in range(args.images):
                    gen = torch.Generator().manual_seed(100_000 * c + k)
                    if design == 'authors':
                        pairs = sample_pairs(GRID, 20, generator=gen)
                        est = estimate_strength(game, N, pairs, ORDERS, num_contexts=24, generator=gen)
                        q = Z95
                    else:
                        pairs = sample_pairs(GRID, plan.num_pairs, generator=gen)
                        est = estimate_shared(game, N, pairs, ORDERS, list(plan.contexts), share=plan.share,
                                              generator=gen)
                        q = stats.t.ppf(0.975, est.stats['I2_df'].clamp(min=1).numpy())
                    own = game.interaction(pairs, ORDERS).pow(2).mean(1).numpy()
                    i2, se = est.stats['I2'].numpy(), est.stats['I2_se'].numpy()
                    image_hits.append((np.abs(i2 - own) <= q * se + 1e-12)[1:-1])
                    values.append(i2)
                    passes.append(est.forwards)
                values = np.asarray(values)
                low, high, _ = bootstrap_images(lambda idx: values[idx].mean(1), len(values), 1000, c)
                curve_hits.append(((low <= truth) & (truth <= high))[1:-1])
                s_low, s_high, _ = bootstrap_images(lambda idx: _share(values[idx].mean(1)), len(values), 1000, c)
                share_hits.append(s_low <= _share(truth) <= s_high)
            curve_rate = np.mean(curve_hits, 0)
            image_rate = np.mean(image_hits, 0)
            row = (f'| {name} | {design} | {np.mean(passes):,.0f} | {100 * curve_rate.min():.0f} / '
                   f'{100 * curve_rate.mean():.0f} % | {100 * np.mean(share_hits):.0f} % | '
                   f'{100 * image_rate.min():.0f} / {100 * image_rate.mean():.0f} % |')
            lines.append(row)
            print(row, flush=True)
    text = '\n'.join(lines) + '\n'
    print(text)
    if args.out:
        atomic_write_text(args.out, text)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
