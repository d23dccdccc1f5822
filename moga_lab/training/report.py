"""Run artefacts: atomic writes, metrics.csv merged over resumed segments, the learning-curve PNG."""
import glob
import os
from typing import Optional

import pandas as pd

from moga_lab.utils.atomic import atomic_write_csv, atomic_write_text

__all__ = ['atomic_write_text', 'atomic_write_csv', 'merge_metrics', 'plot_learning_curve']


def merge_metrics(run_dir: str) -> Optional[pd.DataFrame]:
    """Lightning's CSVLogger writes one ``logs/version_N/metrics.csv`` per (resumed) segment; merge them
    into ``run_dir/metrics.csv``, a later segment's rows replacing an earlier one's at the same step."""
    parts = []
    for i, path in enumerate(sorted(glob.glob(os.path.join(run_dir, 'logs', 'version_*', 'metrics.csv')),
                                    key=lambda p: int(p.rsplit('version_', 1)[1].split(os.sep)[0]))):
        try:
            frame = pd.read_csv(path)
        except (pd.errors.EmptyDataError, OSError):
            continue
        frame['segment'] = i
        parts.append(frame)
    if not parts:
        return None
    merged = pd.concat(parts, ignore_index=True)
    if 'step' in merged:
        # a resumed segment re-logs steps after its checkpoint: keep the latest segment's values
        resumed = merged.groupby('step')['segment'].transform('max')
        merged = merged[merged['segment'] == resumed].sort_values(['step', 'segment'], kind='stable')
    atomic_write_csv(os.path.join(run_dir, 'metrics.csv'), merged)
    return merged


def plot_learning_curve(metrics: pd.DataFrame, path: str, title: str = '') -> None:
    """Training loss per step (and its epoch mean), validation top-1 per epoch, learning rate."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    ax = axes[0]
    if 'train/loss_step' in metrics:
        d = metrics.dropna(subset=['train/loss_step'])
        ax.plot(d['step'], d['train/loss_step'], lw=0.8, alpha=0.5, marker='.' if len(d) < 30 else None,
                label='per logged step')
        if len(d) > 10:
            ax.plot(d['step'], d['train/loss_step'].rolling(10, min_periods=1).mean(), lw=1.6, label='rolling mean (10 logged steps)')
    if 'train/loss_epoch' in metrics:
        d = metrics.dropna(subset=['train/loss_epoch'])
        ax.plot(d['step'], d['train/loss_epoch'], marker='s', lw=1.6, label='epoch mean')
    ax.set(xlabel='optimizer step', ylabel='training loss (label-smoothed CE)', title='training loss')
    ax.legend(frameon=False)
    ax = axes[1]
    for key, label in (('val/acc1', 'val top-1'), ('val_ema/acc1', 'val top-1 (EMA)')):
        if key in metrics:
            d = metrics.dropna(subset=[key])
            ax.plot(d['step'], 100 * d[key], marker='o', label=label)
            # every value while they fit; on longer runs (labels would collide) the first, the best and the last
            best, last = int(d[key].to_numpy().argmax()), len(d) - 1
            keep = set(range(len(d))) if len(d) <= 10 else {0, best, last}
            for k, (s, v) in enumerate(zip(d['step'], d[key])):
                if k in keep:
                    # best and last side by side on a long run: the last one's label goes below its point
                    below = len(d) > 10 and k == last and best == last - 1
                    ax.annotate(f'{100 * v:.1f}', (s, 100 * v), textcoords='offset points',
                                xytext=(0, -13 if below else 6), ha='center', fontsize=8)
    ax.margins(y=0.08)  # head-room for the labels of the top points
    ax.set(xlabel='optimizer step', ylabel='accuracy (%)', title='validation top-1')
    ax.legend(frameon=False)
    ax = axes[2]
    if 'lr' in metrics:
        d = metrics.dropna(subset=['lr'])
        ax.plot(d['step'], d['lr'], marker='.' if len(d) < 30 else None)
    ax.set(xlabel='optimizer step', ylabel='learning rate', title='schedule (warmup + cosine)')
    ax.ticklabel_format(axis='y', style='sci', scilimits=(-3, 3))
    for a in axes:
        a.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    tmp = path + '.tmp.png'
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
