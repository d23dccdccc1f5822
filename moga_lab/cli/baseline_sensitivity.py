"""How much the interaction curves and a comparison's middle-share gap move with the masking baseline.

    python analysis/baseline_sensitivity.py --checkpoint A/best.ckpt --checkpoint B/best.ckpt --num-images 8 \
        --out runs/baselines

Every model gets the same images, pairs and contexts under each baseline (`moga_lab.analysis.game.BASELINES`:
zero, pixel-mean, black, blur). Writes ``interaction.csv`` (every baseline's per-image rows), ``shares.csv`` (per
baseline and model: the middle share under mean |I| and the RMS with 95 % bootstrap intervals over images; per
baseline, the first model minus each other one, paired over the images), ``report.md`` and
``baseline_curves.png`` (one panel per baseline).
"""
import argparse
import os
import sys

import pandas as pd

from moga_lab.analysis.curves import middle_share_difference, middle_share_interval, strength_curve
from moga_lab.analysis.estimate import InteractionSettings
from moga_lab.analysis.game import BASELINES
from moga_lab.analysis.plots import plot_interaction_panels
from moga_lab.utils.atomic import atomic_write_csv, atomic_write_text
from moga_lab.loaders import load_eval_images, load_models
from moga_lab.studies.model_curves import interaction_of_models


def sensitivity(checkpoints, num_images: int, out: str, contexts: int = 24, pairs: int = 20, seed: int = 0,
                design: str = 'fixed'):
    """The tables and the figure (see the module docstring); returns the shares table."""
    models = load_models([('checkpoint', c) for c in checkpoints])
    ev = load_eval_images(models, num_images, seed=seed)
    frames, rows = [], []
    for baseline in BASELINES:
        settings = InteractionSettings(grid=8 if ev.images.shape[-1] % 8 == 0 else 7, num_pairs=pairs,
                                       num_contexts=contexts, seed=seed, baseline=baseline, design=design)
        frame = interaction_of_models(models, ev.images, ev.labels, ev.ids, settings,
                                      cache=os.path.join(out, 'parts', f'{baseline}.csv'))
        frames.append(frame)
        for statistic in ('mean-abs', 'rms'):
            for r in middle_share_interval(frame, statistic).itertuples():
                rows.append(dict(baseline=baseline, statistic=statistic, model=r.model, share=r.share,
                                 ci_low=r.ci_low, ci_high=r.ci_high, num_images=r.num_images))
            for other in [m.name for m in models[1:]]:
                d = middle_share_difference(frame, models[0].name, other, statistic)
                rows.append(dict(baseline=baseline, statistic=statistic, model=f'{models[0].name} - {other}',
                                 share=d.difference, ci_low=d.ci_low, ci_high=d.ci_high, num_images=d.num_images))
    every = pd.concat(frames, ignore_index=True)
    shares = pd.DataFrame(rows)
    atomic_write_csv(os.path.join(out, 'interaction.csv'), every)
    atomic_write_csv(os.path.join(out, 'shares.csv'), shares)
    curves = pd.concat([strength_curve(f).assign(model=lambda c, b=b: c.model + ' | ' + b)
                        for f, b in zip(frames, BASELINES)], ignore_index=True)
    plot_interaction_panels(curves, os.path.join(out, 'baseline_curves.png'),
                            title=f'Interaction strength (mean |I|) under each masking baseline: {len(ev.ids)} test '
                                  f'images, {pairs} pairs, {contexts} contexts')
    table = shares.pivot_table(index=['statistic', 'model'], columns='baseline', values='share')[list(BASELINES)]
    text = (f'# Masking baseline sensitivity\n\nMiddle-order share (orders 0.2n-0.6n) per model and, for the '
            f'comparison, {models[0].name} minus each other model (paired over the same {len(ev.ids)} test images), '
            f'under each baseline; {design} design, {pairs} pairs, {contexts} contexts per pair and order. 95 % '
            'intervals in shares.csv.\n\n' + table.round(3).to_markdown() + '\n\n![curves](baseline_curves.png)\n')
    atomic_write_text(os.path.join(out, 'report.md'), text)
    print(text)
    return shares


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--checkpoint', action='append', required=True, help='a fit checkpoint; repeat for a comparison')
    p.add_argument('--num-images', type=int, default=8)
    p.add_argument('--contexts', type=int, default=24)
    p.add_argument('--pairs', type=int, default=20)
    p.add_argument('--design', choices=('fixed', 'shared'), default='fixed',
                   help="fixed (the authors') or shared (one drawn context serves every pair that can use it)")
    p.add_argument('--out', required=True)
    args = p.parse_args(argv)
    try:
        sensitivity(args.checkpoint, args.num_images, args.out, args.contexts, args.pairs, design=args.design)
    except (ValueError, FileNotFoundError) as error:
        p.error(str(error))
    return 0


if __name__ == '__main__':
    sys.exit(main())
