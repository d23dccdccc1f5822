"""Forward passes at equal precision: each interaction design judged by its spread over repeated runs with pairs *and*
contexts drawn afresh (the same images), against the authors' fixed design.

    python benchmarks/design_cost.py --games local skewed cnn gated-cnn --runs 200 --out benchmarks/results/design_cost
    python benchmarks/design_cost.py --games --checkpoint runs/bench/moganet_xtiny/best.ckpt ... --runs 20 --images 2 \\
        --out benchmarks/results/design_cost_trained

Targets: ``--games`` (28 px, n = 49): ``local`` and ``skewed`` (`moga_lab.analysis.known_games`), ``cnn`` and
``gated-cnn`` (small random conv nets on a Fashion-MNIST test image, the second with a SiLU gate: the noise of a
network's dv); and ``--checkpoint`` trained models (28 px, ``--images`` test images). Designs per target:

  authors      the fixed design at 20 pairs x 24 contexts (the authors' at 28 px)
  realloc      the fixed design at 40 pairs x 3 contexts (a quarter of the authors' passes: reallocation alone)
  shared/4     the shared design planned for the RMS within a quarter of the authors' passes
  shared/10    the same within a tenth

(the plans come from `moga_lab.analysis.planner`'s pilot on the target's first image, on pairs and contexts apart from
the runs'). Per design: forward passes per image; the spread (s.d. over runs, pooled over the images) of the image's
middle share (0.2n-0.6n) under the RMS and under mean |I|; the worst order's relative s.d. of the RMS curve; the mean
share under each statistic (mean |I| moves with the design's contexts per pair: its bias); and the **passes at equal
precision** against the authors' design, (passes x variance of the authors) / (passes x variance of the design), with
a bootstrap over runs for its Monte-Carlo error (the ratio assumes a design's variance falls as 1 / passes when its
pairs and contexts grow together). Rows are written per run, atomically; a stopped run resumes.
"""
import argparse
import os
import sys
import time
from typing import Callable, Dict, List, Tuple

import numpy as np
import pandas as pd
import torch

from moga_lab.analysis.coalitions import ORDER_RATIOS, sample_pairs
from moga_lab.analysis.estimate import InteractionSettings, evaluation_model
from moga_lab.analysis.game import ImageGame
from moga_lab.analysis.interaction import order_grid
from moga_lab.analysis.known_games import KNOWN_GAMES
from moga_lab.analysis.planner import plan_shared, run_pilot
from moga_lab.analysis.shared import estimate_shared
from moga_lab.analysis.strength import estimate_strength
from moga_lab.utils.atomic import atomic_write_csv, atomic_write_text

AUTHORS = dict(pairs=20, contexts=24)
BAND = (0.2, 0.6)
RATIOS = np.asarray(ORDER_RATIOS)


def _share(curve: np.ndarray) -> float:
    band = (RATIOS >= BAND[0]) & (RATIOS <= BAND[1])
    return float(curve[band].sum() / curve.sum())


class _ConvGame:
    """v(S) of a small random conv net on one image (7 x 7 patches of 4 px): ``gated`` multiplies a SiLU branch in."""

    def __init__(self, gated: bool, seed: int = 0):
        from moga_lab.data import FashionMNISTDataModule
        torch.manual_seed(seed)
        dm = FashionMNISTDataModule()
        dm.setup('test')
        self.image = dm.test_set[seed][0]
        conv = lambda i, o: torch.nn.Conv2d(i, o, 3, padding=1)  # noqa: E731
        self.a, self.b, self.c, self.gate = conv(1, 16), conv(16, 32), conv(32, 32), conv(16, 32)
        self.head = torch.nn.Linear(32, 1)
        self.gated = gated
        rows = torch.arange(28) * 7 // 28
        self.patch = rows[:, None] * 7 + rows[None, :]

    @torch.inference_mode()
    def __call__(self, masks: torch.Tensor) -> torch.Tensor:
        x = torch.where(masks[:, self.patch].unsqueeze(1), self.image.unsqueeze(0), torch.zeros(()))
        h = torch.relu(self.a(x))
        y = torch.relu(self.b(h))
        if self.gated:
            y = y * torch.nn.functional.silu(self.gate(h))
        y = torch.relu(self.c(torch.nn.functional.max_pool2d(y, 2)))
        return self.head(y.mean((2, 3))).squeeze(1).double() * 4


def _targets(args) -> Dict[str, Tuple[List[Callable], int]]:
    """name -> (one value function per image, grid)."""
    out = {}
    for name in args.games:
        if name in KNOWN_GAMES:
            out[name] = ([KNOWN_GAMES[name](7, seed=3)], 7)
        else:
            out[name] = ([_ConvGame(gated=name == 'gated-cnn')], 7)
    for path, label in zip(args.checkpoint, args.label or [None] * len(args.checkpoint)):
        from moga_lab.loaders import load_classifier, load_eval_images
        trained = load_classifier(path)
        images, labels, ids, info, _ = load_eval_images(trained, args.images, seed=args.seed)
        runner = evaluation_model(trained.model.eval(), InteractionSettings())
        games = [ImageGame(runner, image, int(label_), 7) for image, label_ in zip(images, labels)]
        out[label or trained.name] = (games, 7)
    return out


def _plans(games: List[Callable], grid: int, budgets: Dict[str, float], seed: int):
    n = grid * grid
    orders = order_grid(n, ORDER_RATIOS)
    g = torch.Generator().manual_seed(10_000 + seed)
    pairs = [sample_pairs(grid, 40, generator=g)]
    comp = run_pilot(games[:1], n, pairs, orders, ratios=ORDER_RATIOS, generator=g)
    plans = {}
    for name, b in budgets.items():
        try:
            plans[name] = plan_shared(comp, n, grid, budget=b, ratios=ORDER_RATIOS)
        except ValueError as e:  # the budget is below the smallest plan (8 pairs, 4 contexts): the design is not run
            plans[name] = str(e)
    return plans, comp.forwards


def _covered(game, pairs, orders, stats) -> Dict[str, float]:
    """Known games: whether each order's 95 % interval of I2 holds the truth for the run's pairs (t with the design's
    degrees of freedom where it has them, 1.96 otherwise)."""
    if not hasattr(game, 'interaction'):
        return {}
    from scipy import stats as scipy_stats
    truth = game.interaction(pairs, orders).pow(2).mean(1)
    df = stats.get('I2_df')
    q = (torch.as_tensor(scipy_stats.t.ppf(0.975, df.clamp(min=1).numpy())) if df is not None
         else torch.full_like(truth, 1.959963984540054))
    half = q * stats['I2_se']
    inside = (stats['I2'] - half <= truth + 1e-12) & (truth - 1e-12 <= stats['I2'] + half)
    return {f'cover_{k}': float(v) for k, v in enumerate(inside.double())}


def _run_once(game, grid: int, design: str, plan, generator) -> Dict[str, object]:
    n = grid * grid
    orders = order_grid(n, ORDER_RATIOS)
    if design == 'authors':  # (pairs is what every branch draws; the known games' truth reads it)
        pairs = sample_pairs(grid, AUTHORS['pairs'], generator=generator)
        est = estimate_strength(game, n, pairs, orders, num_contexts=AUTHORS['contexts'], generator=generator)
    elif design == 'realloc':
        pairs = sample_pairs(grid, 40, generator=generator)
        est = estimate_strength(game, n, pairs, orders, num_contexts=3, generator=generator)
    else:
        pairs = sample_pairs(grid, plan.num_pairs, generator=generator)
        est = estimate_shared(game, n, pairs, orders, list(plan.contexts), share=plan.share, generator=generator)
    rms = est.stats['I2'].clamp(min=0).sqrt().numpy()
    mean_abs = est.stats['J_abs'].numpy()
    return dict(forwards=est.forwards, share_rms=_share(rms), share_mean_abs=_share(mean_abs),
                **{f'rms_{k}': float(v) for k, v in enumerate(rms)}, **_covered(game, pairs, orders, est.stats))


def _resample(frame: pd.DataFrame, rng) -> pd.DataFrame:
    """The runs of each image resampled with replacement (the bootstrap of a ratio's Monte-Carlo error)."""
    return pd.concat([g.iloc[rng.integers(len(g), size=len(g))] for _, g in frame.groupby('image')])


def summarise(runs: pd.DataFrame, boot: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for target, sub in runs.groupby('target', sort=False):
        authors = sub[sub.design == 'authors']

        def pooled_var(frame, column):
            return float(np.mean([g[column].var(ddof=1) for _, g in frame.groupby('image')]))

        def worst(frame):
            cols = [c for c in frame.columns if c.startswith('rms_')][1:-1]
            return float(max(np.mean([g[c].std(ddof=1) / g[c].mean() for _, g in frame.groupby('image')]) for c in cols))

        for design, d in sub.groupby('design', sort=False):
            row = dict(target=target, design=design, runs=int(d.groupby('image').size().min()), images=d.image.nunique(),
                       forwards=float(d.forwards.mean()), sd_share_rms=np.sqrt(pooled_var(d, 'share_rms')),
                       sd_share_mean_abs=np.sqrt(pooled_var(d, 'share_mean_abs')), worst_order_rsd=worst(d),
                       share_rms=float(d.share_rms.mean()), share_mean_abs=float(d.share_mean_abs.mean()))
            for stat in ('rms', 'mean_abs'):
                def ratio(a, b):
                    return (a.forwards.mean() * pooled_var(a, f'share_{stat}')) / (
                        b.forwards.mean() * pooled_var(b, f'share_{stat}'))
                value = ratio(authors, d)
                draws = []
                for _ in range(boot):
                    draws.append(ratio(_resample(authors, rng), _resample(d, rng)))
                row[f'ratio_{stat}'] = value
                row[f'ratio_{stat}_se'] = float(np.std(draws))
            row['worst_ratio'] = worst(authors) ** 2 * authors.forwards.mean() / (worst(d) ** 2 * d.forwards.mean())
            cover = [c for c in d.columns if c.startswith('cover_')][1:-1]       # m = 0 and n - 2 are exact
            rates = d[cover].mean() if cover and d[cover].notna().all().all() else None
            row['coverage_min'] = float(rates.min()) if rates is not None else float('nan')
            row['coverage_mean'] = float(rates.mean()) if rates is not None else float('nan')
            rows.append(row)
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame, plans: Dict[str, str], cpu: str) -> str:
    lines = [f'Measured on {cpu}; forward passes are counted, so the ratios hold on any CPU. Passes at equal precision: '
             'the authors\' passes x variance over the design\'s (above 1: the design needs fewer passes), ± its '
             'bootstrap s.e. over runs; "worst" compares the worst order\'s relative s.d. of the RMS curve the same '
             'way. Designs: authors, the fixed design at 20 pairs x 24 contexts; realloc, the fixed design at 40 x 3; '
             'shared/4 and shared/10, the shared design planned for the RMS within a quarter and a tenth of the authors\' '
             'passes. Coverage: of each run\'s own truth by the per-image 95 % interval of I2 (known games only).', '',
             '| target | design | runs x images | passes / image | s.d. share (RMS) | s.d. share (mean \\|I\\|) | '
             'worst order r.s.d. | mean share RMS / mean \\|I\\| | equal precision, RMS | mean \\|I\\| | worst | '
             'I2 interval coverage, min / mean over orders |',
             '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |']
    for r in table.itertuples():
        coverage = '' if r.coverage_min != r.coverage_min else f'{100 * r.coverage_min:.0f} / {100 * r.coverage_mean:.0f} %'
        lines.append(f'| {r.target} | {r.design} | {r.runs} x {r.images} | {r.forwards:,.0f} | {r.sd_share_rms:.4f} | '
                     f'{r.sd_share_mean_abs:.4f} | {100 * r.worst_order_rsd:.0f} % | {r.share_rms:.3f} / '
                     f'{r.share_mean_abs:.3f} | {r.ratio_rms:.2f}x ± {r.ratio_rms_se:.2f} | {r.ratio_mean_abs:.2f}x ± '
                     f'{r.ratio_mean_abs_se:.2f} | {r.worst_ratio:.2f}x | {coverage} |')
    lines += ['', 'Plans (from each target\'s pilot, set aside):', ''] + [f'- {k}: {v}' for k, v in plans.items()]
    return '\n'.join(lines) + '\n'


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--games', nargs='*', default=['local', 'skewed', 'cnn', 'gated-cnn'],
                   choices=list(KNOWN_GAMES) + ['cnn', 'gated-cnn'])
    p.add_argument('--checkpoint', action='append', default=[], help='a trained model (repeatable)')
    p.add_argument('--label', action='append', help='a name per --checkpoint')
    p.add_argument('--images', type=int, default=2, help='test images per trained model')
    p.add_argument('--runs', type=int, default=100, help='repeated runs per design and image')
    p.add_argument('--designs', nargs='+', default=['authors', 'realloc', 'shared/4', 'shared/10'])
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out', required=True, help='folder for runs.csv, design_cost.csv and design_cost.md')
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, 'runs.csv')
    runs = pd.read_csv(path) if os.path.isfile(path) else pd.DataFrame()
    done = set(zip(runs.target, runs.design, runs.image, runs.run)) if len(runs) else set()
    plans_text = {}
    authors_cost = None
    for target, (games, grid) in _targets(args).items():
        authors_cost = 4 * AUTHORS['pairs'] * AUTHORS['contexts'] * (len(ORDER_RATIOS) - 2) + 4 * AUTHORS['pairs']
        budgets = {d: authors_cost / int(d.split('/')[1]) for d in args.designs if d.startswith('shared/')}
        plans, pilot = _plans(games, grid, budgets, args.seed) if budgets else ({}, 0)
        for d, plan in plans.items():
            plans_text[f'{target} {d}'] = plan if isinstance(plan, str) else plan.describe().replace('\n', ' ')
        for design in args.designs:
            if isinstance(plans.get(design), str):
                continue
            for k, game in enumerate(games):
                t0 = time.time()
                for r in range(args.runs):
                    if (target, design, k, r) in done:
                        continue
                    g = torch.Generator().manual_seed(1_000_003 * (args.seed + 1) + 1009 * r + 17 * k)
                    row = dict(target=target, design=design, image=k, run=r,
                               **_run_once(game, grid, design, plans.get(design), g))
                    runs = pd.concat([runs, pd.DataFrame([row])], ignore_index=True)
                    atomic_write_csv(path, runs)
                print(f'{target} {design} image {k}: {time.time() - t0:.0f} s', file=sys.stderr, flush=True)
    from moga_lab.utils.runtime import describe_machine
    table = summarise(runs)
    atomic_write_csv(os.path.join(args.out, 'design_cost.csv'), table)
    text = markdown(table, plans_text, describe_machine())
    atomic_write_text(os.path.join(args.out, 'design_cost.md'), text)
    print(text)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
