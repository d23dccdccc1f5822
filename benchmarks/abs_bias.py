"""The bias of mean |I| (``J_abs``) at the designs the package offers, against its stated bound.

    python benchmarks/abs_bias.py [--draws 200000] [--runs 100] [--out-laws docs/figures/abs_bias.csv]
                                  [--out benchmarks/results/abs_bias.md]

1. **Per pair, over the laws of dv.** A pair's A = sqrt(max(U, 0)) from K draws of dv = I + noise, for normal,
   exponential, log-normal, normal-plus-spike and two-point (rare spike, rate 0.001-0.3, either sign) noise, |I| from
   0 to 5 se: the largest |E A - |I|| / E se_hat over |I| per (law, K), se_hat estimated as the estimator does. This
   is what ``ABS_BIAS_FACTOR`` (the bound, in units of the estimated se) must hold (``--out-laws``).
2. **On known games at the designs used**, pairs and contexts drawn afresh in every run (20 pairs, n = 49): the fixed
   design at K = 8, 24 and 64 and the two-phase mode (its default pilot, a 10 % target on a 32-image curve), on a
   game whose dv vary smoothly (``local``) and one whose dv are rare spikes (``skewed``). Per design: the bias of
   J_abs per order as a share of the truth (range over the inner orders), the bound the runs reported, and the
   middle share's bias (the share of the runs' mean curve against the true one) beside its bound
   (`moga_lab.analysis.curves.share_bias_bound`'s worst case).
"""
import argparse

import numpy as np
import pandas as pd
import torch

from moga_lab.analysis.coalitions import ORDER_RATIOS, sample_pairs
from moga_lab.analysis.interaction import order_grid
from moga_lab.analysis.known_games import KNOWN_GAMES
from moga_lab.analysis.strength import ABS_BIAS_FACTOR, estimate_strength
from moga_lab.utils.atomic import atomic_write_csv, atomic_write_text

KS = (2, 3, 4, 8, 16, 24, 64, 200)


def _laws(rng):
    yield 'normal', lambda size: rng.standard_normal(size)
    yield 'exponential', lambda size: rng.exponential(size=size) - 1
    yield 'log-normal', lambda size: (np.exp(rng.standard_normal(size)) - np.exp(0.5)) / np.sqrt((np.e - 1) * np.e)
    for q in (0.01, 0.05):
        yield f'normal + spike {q}', lambda size, q=q: (rng.standard_normal(size) + 10 * ((rng.random(size) < q) - q)) \
            / np.sqrt(1 + 100 * q * (1 - q))
    for q in (0.001, 0.003, 0.01, 0.03, 0.1, 0.3):
        yield f'spike {q}', lambda size, q=q: ((rng.random(size) < q) - q) / np.sqrt(q * (1 - q))


def law_table(draws: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for K in KS:
        R = max(2000, draws // K)
        for name, law in _laws(rng):
            z = law((R, K))
            worst = 0.0
            for sign in (1, -1):
                for delta in np.linspace(0, 5, 41):
                    x = delta / np.sqrt(K) + sign * z
                    u = (x.sum(1) ** 2 - (x ** 2).sum(1)) / (K * (K - 1))
                    bias = np.sqrt(np.clip(u, 0, None)).mean() - delta / np.sqrt(K)
                    worst = max(worst, abs(bias) / (x.std(1, ddof=1) / np.sqrt(K)).mean())
            rows.append(dict(K=K, law=name, bias_per_estimated_se=worst))
    return pd.DataFrame(rows)


def _share(curve):
    band = (np.asarray(ORDER_RATIOS) >= 0.2) & (np.asarray(ORDER_RATIOS) <= 0.6)
    return curve[band].sum() / curve.sum()


def game_table(runs: int) -> pd.DataFrame:
    orders = order_grid(49, ORDER_RATIOS)
    designs = {'fixed K = 8': dict(num_contexts=8), 'fixed K = 24': dict(num_contexts=24),
               'fixed K = 64': dict(num_contexts=64), 'two-phase': dict(target_ci=0.566)}
    rows = []
    for game_name, make in KNOWN_GAMES.items():
        game = make(7, seed=3)
        for design, kw in designs.items():
            n_runs = runs if 'K = 64' not in design else max(runs // 3, 10)
            est, truth, bound = [], [], []
            for r in range(n_runs):
                g = torch.Generator().manual_seed(r)
                pairs = sample_pairs(7, 20, generator=g)
                stats = estimate_strength(game, 49, pairs, orders, generator=g, **kw).stats
                est.append(stats['J_abs'].numpy())
                truth.append(game.interaction(pairs, orders).abs().mean(1).numpy())
                bound.append(stats['J_abs_bias_bound'].numpy())
            est, truth, bound = (np.mean(x, 0) for x in (est, truth, bound))
            inner = slice(1, -1)
            rel = (est - truth)[inner] / truth[inner]
            band = (np.asarray(ORDER_RATIOS) >= 0.2) & (np.asarray(ORDER_RATIOS) <= 0.6)
            up = (truth[band] + bound[band]).sum() / ((truth[band] + bound[band]).sum()
                                                      + np.clip(truth[~band] - bound[~band], 0, None).sum())
            down = np.clip(truth[band] - bound[band], 0, None).sum() / (
                np.clip(truth[band] - bound[band], 0, None).sum() + (truth[~band] + bound[~band]).sum())
            share_bound = max(up - _share(truth), _share(truth) - down)
            rows.append(dict(game=game_name, design=design, runs=n_runs, bias_pct_min=100 * rel.min(),
                             bias_pct_max=100 * rel.max(), bound_pct_max=100 * (bound[inner] / truth[inner]).max(),
                             share_bias=_share(est) - _share(truth), share_bound=share_bound))
    return pd.DataFrame(rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--draws', type=int, default=1_600_000, help='dv draws per (law, K), split into runs of K')
    p.add_argument('--runs', type=int, default=100, help='runs per (game, design); a third at K = 64')
    p.add_argument('--out-laws', help='write the per-law table (CSV) here')
    p.add_argument('--out', help='write the Markdown tables here')
    args = p.parse_args(argv)
    laws = law_table(args.draws)
    wide = laws.pivot(index='law', columns='K', values='bias_per_estimated_se').loc[list(dict.fromkeys(laws.law))]
    lines = [f'Largest |bias| of a pair\'s sqrt(max(U, 0)) per unit of its estimated se, over |I| / se in 0-5 '
             f'(ABS_BIAS_FACTOR = {ABS_BIAS_FACTOR}):', '', '| law of dv | ' + ' | '.join(f'K = {k}' for k in KS) + ' |',
             '| --- |' + ' ---: |' * len(KS)]
    lines += [f'| {law} | ' + ' | '.join(f'{v:.2f}' for v in row) + ' |' for law, row in wide.iterrows()]
    games = game_table(args.runs)
    lines += ['', 'J_abs on known games (n = 49, 20 pairs drawn afresh per run), bias per inner order as a share of '
              'the true mean |I|, the largest bound the runs reported, and the middle share\'s bias (0.2n-0.6n) beside '
              'its worst-case bound:', '',
              '| game | design | runs | bias per order | bound, largest | share bias | share bound |',
              '| --- | --- | ---: | ---: | ---: | ---: | ---: |']
    lines += [f'| {r.game} | {r.design} | {r.runs} | {r.bias_pct_min:+.0f} % to {r.bias_pct_max:+.0f} % | '
              f'{r.bound_pct_max:.0f} % | {r.share_bias:+.3f} | ±{r.share_bound:.3f} |' for r in games.itertuples()]
    text = '\n'.join(lines) + '\n'
    print(text)
    if args.out_laws:
        atomic_write_csv(args.out_laws, laws)
    if args.out:
        atomic_write_text(args.out, text)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
