"""The authors' naive strength moves with the Monte-Carlo budget; the debiased one does not. One figure and table.

    python analysis/naive_vs_debiased.py --checkpoint runs/xt/best.ckpt --num-images 6 --out docs/figures/naive_vs_debiased

For a fit checkpoint: the interaction table at a low and a high number of contexts per pair and order (the same test
images and pairs), both statistics' normalised curves with their 95 % bootstrap bands over images (the naive ones
with their noise floor, dashed), the middle-order shares, and ``curves.csv`` / ``interaction.csv``. The naive curve
is the mean |I| and the debiased one the root-mean-square of I, so their shapes differ even without noise: compare
each statistic with itself across budgets.
"""
import argparse
import os
import sys

import pandas as pd


from moga_lab.analysis.curves import middle_order_share, strength_curve
from moga_lab.analysis.estimate import InteractionSettings, default_settings, evaluation_model, interaction_strength
from moga_lab.analysis.plots import save_figure
from moga_lab.cli.common import int_at_least
from moga_lab.loaders import load_classifier, load_eval_images
from moga_lab.utils.atomic import atomic_write_csv


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--checkpoint', required=True)
    p.add_argument('--num-images', type=int_at_least(1), default=6)
    p.add_argument('--low-contexts', type=int_at_least(2), default=12, help='the study scripts\' budget')
    p.add_argument('--high-contexts', type=int_at_least(2), default=100)
    p.add_argument('--pairs', type=int_at_least(1), default=20)
    p.add_argument('--design', choices=('fixed', 'shared'), default='fixed',
                   help="fixed (the authors') or shared (one drawn context serves every pair that can use it)")
    p.add_argument('--out', required=True)
    args = p.parse_args(argv)
    if not os.path.isfile(args.checkpoint):
        p.error(f'--checkpoint {args.checkpoint!r} does not exist')
    trained = load_classifier(args.checkpoint)
    images, labels, ids, info, _ = load_eval_images(trained, args.num_images, seed=0)
    base = default_settings(images.shape[-1])
    base.num_pairs, base.design = args.pairs, args.design
    runner = evaluation_model(trained.model, base)
    frames, curves = [], []
    for K in (args.low_contexts, args.high_contexts):
        settings = InteractionSettings(**{**base.__dict__, 'num_contexts': K})
        frame = interaction_strength(runner, images, labels, settings, model_name=f'{K} contexts', image_ids=ids)
        frames.append(frame)
        for statistic in ('naive', 'rms'):
            curve = strength_curve(frame, statistic)
            curve['model'] = f'{statistic}, {K} contexts'
            curves.append(curve)
    curve = pd.concat(curves, ignore_index=True)
    os.makedirs(args.out, exist_ok=True)
    atomic_write_csv(os.path.join(args.out, 'interaction.csv'), pd.concat(frames, ignore_index=True))
    atomic_write_csv(os.path.join(args.out, 'curves.csv'), curve)
    png = os.path.join(args.out, 'naive_vs_debiased.png')
    shares = middle_order_share(curve)
    plot_two_panels(curve, shares, png, f'{trained.name} on {info.name}: {len(ids)} test images, '
                                        f'{base.grid}x{base.grid} patches, {args.pairs} pairs; bands: 95 % bootstrap')
    for name, share in shares.items():
        print(f'{name}: middle share (0.2n-0.6n) {share:.3f}')
    print(f'wrote {png}')
    return 0


def plot_two_panels(curve: pd.DataFrame, shares, path: str, title: str) -> None:
    """Left the naive statistic, right the debiased one; in each, the low and the high budget (one figure of
    four overlapping bands is unreadable)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, statistic in zip(axes, ('naive', 'rms')):
        ax.axvspan(0.2, 0.6, color='0.93', zorder=0)
        for color, (name, sub) in zip(('C1', 'C0'), curve[curve.statistic == statistic].groupby('model', sort=False)):
            sub = sub.sort_values('ratio')
            contexts = name.split(', ')[1]
            ax.plot(sub.ratio, sub.J_norm, color=color, marker='o', ms=3, lw=1.6,
                    label=f'{contexts}: middle share {shares[name]:.3f}')
            ax.fill_between(sub.ratio, sub.ci_low, sub.ci_high, color=color, alpha=0.18, lw=0)
            if sub.noise_floor_norm.notna().any():
                ax.plot(sub.ratio, sub.noise_floor_norm, color=color, lw=1.0, ls='--', label=f'{contexts}: noise floor')
        ax.axhline(1.0, color='0.5', lw=0.6, ls=':')
        ax.set_title({'naive': "naive: mean |I(m)| (the authors')", 'rms': 'RMS of I(m), noise removed'}
                     [statistic], fontsize=10)
        ax.set_xlabel('interaction order  m / n')
        ax.set_xlim(0, 1)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(frameon=False, fontsize=8, loc='upper right')
    axes[0].set_ylabel('relative strength\nJ(m) / its mean over m')
    fig.suptitle(title + '; shaded: middle orders 0.2n-0.6n', fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


if __name__ == '__main__':
    sys.exit(main())
