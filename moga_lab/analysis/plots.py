"""Figures (PNG, written atomically): interaction-strength curves with confidence bands."""
import os
from typing import TYPE_CHECKING, Mapping, Optional, Tuple

import pandas as pd

__all__ = ['plot_interaction_curves', 'plot_interaction_panels', 'plot_interaction_evolution', 'plot_middle_share_by_seed',
           'plot_curves_by_statistic', 'plot_middle_share_by_statistic', 'save_figure', 'STATISTIC_LABELS']

STATISTIC_LABELS = {'mean-abs': 'mean |I| (noise removed)', 'rms': 'RMS of I (noise removed)', 'naive': 'mean |I| as computed'}
"""Short names of the curve statistics, for panel titles."""

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _plt():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def _interval_arms(value: float, low: float, high: float):
    """Error-bar arms of an interval around ``value``. A percentile bootstrap interval need not contain the point
    estimate (few images, a skewed statistic): the arm on that side is then 0, not negative (matplotlib refuses)."""
    return [[max(value - low, 0.0)], [max(high - value, 0.0)]]


def _seed_markers(ax, shares: pd.DataFrame, models, seeds, colors) -> None:
    """For each model (an x position) one marker per training seed with its interval, and a bar at the mean."""
    width = 0.5 / max(1, len(seeds) - 1) if len(seeds) > 1 else 0.0
    for x, model in enumerate(models):
        sub = shares[shares.model == model]
        placed = []
        for k, seed in enumerate(seeds):
            row = sub[sub.seed == seed]
            if row.empty:
                continue
            r = row.iloc[0]
            placed.append(x - 0.25 + k * width)
            ax.errorbar(placed[-1], r.share, yerr=_interval_arms(r.share, r.ci_low, r.ci_high), fmt='o',
                        ms=5, color=colors(k % 10), capsize=3, lw=1.2, label=f'seed {seed}')
        if placed:  # the bar spans the seeds it averages (a model with fewer seeds gets a shorter bar)
            ax.hlines(sub.share.mean(), min(placed) - 0.1, max(placed) + 0.1, color='k', lw=2, label='mean over seeds')


def save_figure(fig: 'Figure', path: str, dpi: int = 130) -> None:
    """Save a matplotlib figure as PNG atomically (a temporary file in the folder, then a rename).

    Args:
        fig: the figure.
        path: the PNG path.
        dpi: resolution.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f'{path}.tmp.png'
    fig.savefig(tmp, dpi=dpi, bbox_inches='tight')
    os.replace(tmp, path)


def _ylabel(curve: pd.DataFrame) -> str:
    statistics = set(curve.statistic) if 'statistic' in curve else {'rms'}
    if statistics == {'naive'}:
        return 'relative strength (naive)\nmean|Î(m)| / its mean over m'
    if statistics == {'mean-abs'}:
        return 'relative strength (noise removed)\nmean|I(m)| / its mean over m'
    if statistics == {'rms'}:
        return 'relative strength (noise removed)\nRMS I(m) / its mean over m'
    return 'relative strength\nJ(m) / its mean over m'


def _noise_floor(ax, sub: pd.DataFrame, color) -> None:
    """The naive curve's noise floor (how much of it Monte-Carlo noise alone would give), dashed."""
    if 'noise_floor_norm' in sub and sub.noise_floor_norm.notna().any():
        ax.plot(sub.ratio, sub.noise_floor_norm, color=color, lw=1.0, ls='--', alpha=0.8)


def plot_interaction_curves(curve: pd.DataFrame, path: str, title: Optional[str] = None,
                            middle_band: Tuple[float, float] = (0.2, 0.6)) -> None:
    """One line per model: normalised strength J(m)/mean J against the order ratio m/n with its 95 % bootstrap band;
    for the naive statistic also its noise floor (dashed), the part of the curve Monte-Carlo noise alone would give.

    Args:
        curve: a curve of `moga_lab.analysis.curves.strength_curve`.
        path: the PNG to write.
        title: the figure title (say the budget here).
        middle_band: the shaded middle-order band, as fractions of n.
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    if middle_band:
        ax.axvspan(*middle_band, color='0.92', zorder=0, label=f'middle orders ({middle_band[0]:g}n-{middle_band[1]:g}n)')
    for model, sub in curve.groupby('model', sort=False):
        sub = sub.sort_values('ratio')
        line, = ax.plot(sub.ratio, sub.J_norm, marker='o', ms=4, lw=1.8, label=f'{model} ({int(sub.num_images.iloc[0])} img)')
        ax.fill_between(sub.ratio, sub.ci_low, sub.ci_high, color=line.get_color(), alpha=0.2, lw=0)
        _noise_floor(ax, sub, line.get_color())
    ax.axhline(1.0, color='0.5', lw=0.8, ls=':')
    ax.set_xlabel('interaction order  m / n')
    ax.set_ylabel(_ylabel(curve))
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8, loc='upper left', bbox_to_anchor=(1.01, 1.0))  # never over the curves
    ax.set_title(title or 'Multi-order interaction strength (Deng et al. 2022)', fontsize=10)
    save_figure(fig, path)
    plt.close(fig)


def plot_interaction_panels(curve: pd.DataFrame, path: str, reference: Optional[str] = None,
                            title: Optional[str] = None, middle_band: Tuple[float, float] = (0.2, 0.6), ncols: int = 4,
                            labels: Optional[Mapping[str, str]] = None) -> None:
    """Small multiples: one panel per model (its curve and 95 % band), each over the ``reference`` model's curve in
    grey. For ablation grids, where ten overlapping bands in one axes are unreadable. All panels share both axes,
    so heights compare across panels.

    Args:
        curve: a curve of `moga_lab.analysis.curves.strength_curve`.
        path: the PNG to write.
        reference: the model drawn in grey in every panel; None = the first model.
        title: the figure title.
        middle_band: the shaded middle-order band.
        ncols: panels per row.
        labels: model name -> panel title (may hold a line break); default the name.
    """
    plt = _plt()
    models = list(dict.fromkeys(curve.model))
    labels = {m: (labels or {}).get(m, m) for m in models}
    reference = reference if reference is not None else models[0]
    if reference not in models:
        raise ValueError(f'reference model {reference!r} is not in the curve; accepted: {", ".join(models)}')
    ref = curve[curve.model == reference].sort_values('ratio')
    ncols = max(1, min(ncols, len(models)))
    nrows = -(-len(models) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 2.2 * nrows + 0.5), sharex=True, sharey=True,
                             squeeze=False)
    top = max(float(curve.ci_high.max()), float(curve.J_norm.max())) * 1.05
    for ax, model in zip(axes.flat, models):
        sub = curve[curve.model == model].sort_values('ratio')
        if middle_band:
            ax.axvspan(*middle_band, color='0.93', zorder=0)
        if model != reference:
            ax.plot(ref.ratio, ref.J_norm, color='0.55', lw=1.2, ls='--', label=reference)
        ax.plot(sub.ratio, sub.J_norm, color='C0', marker='o', ms=3, lw=1.6, label=model)
        ax.fill_between(sub.ratio, sub.ci_low, sub.ci_high, color='C0', alpha=0.2, lw=0)
        _noise_floor(ax, sub, 'C0')
        ax.axhline(1.0, color='0.5', lw=0.6, ls=':')
        ax.set_title(labels[model], fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, top)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(models):]:
        ax.set_visible(False)
    for col in range(ncols):  # x labels under the lowest panel of each column (the last row may be short)
        lowest = axes[(len(models) - 1 - col) // ncols, col] if col < len(models) else None
        if lowest is not None:
            lowest.xaxis.set_tick_params(labelbottom=True)
            lowest.set_xlabel('order  m / n', fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel('J(m) / mean J', fontsize=8)
    band = f'; shaded: middle orders {middle_band[0]:g}n-{middle_band[1]:g}n' if middle_band else ''
    statistic = '/'.join(sorted(set(curve.statistic))) if 'statistic' in curve else 'rms'
    floor = '; dashed blue: noise floor' if curve.get('noise_floor_norm', pd.Series(dtype=float)).notna().any() else ''
    fig.suptitle((title or 'Multi-order interaction strength (Deng et al. 2022)') + f' [{statistic}]'
                 + f'\ndashed grey: {labels[reference].splitlines()[0]}{band}; bands: 95 % bootstrap{floor}', fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def plot_interaction_evolution(frame: pd.DataFrame, path: str, title: Optional[str] = None) -> None:
    """Curves logged during training: one line per epoch, light to dark.

    Args:
        frame: columns epoch, ratio, J_norm (``interaction_by_epoch.csv`` of ``fit --interaction-every``).
        path: the PNG to write.
        title: the figure title.
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    epochs = sorted(frame.epoch.unique())
    cmap = plt.get_cmap('viridis')
    for k, epoch in enumerate(epochs):
        sub = frame[frame.epoch == epoch].sort_values('ratio')
        ax.plot(sub.ratio, sub.J_norm, marker='o', ms=3, color=cmap(k / max(1, len(epochs) - 1)), label=f'epoch {epoch}')
    ax.set_xlabel('interaction order  m / n')
    ax.set_ylabel(_ylabel(frame))
    ax.set_xlim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8, ncol=2)
    ax.set_title(title or 'Interaction strength during training', fontsize=10)
    save_figure(fig, path)
    plt.close(fig)


def plot_middle_share_by_seed(shares: pd.DataFrame, path: str, title: Optional[str] = None,
                              band: Tuple[float, float] = (0.2, 0.6)) -> None:
    """Middle-order share per training seed: for each model (row) one marker per seed with its 95 % interval over
    images, and a bar at the mean over seeds, so the seed-to-seed spread sits beside the within-checkpoint intervals.

    Args:
        shares: the table of `moga_lab.analysis.seeds.middle_share_by_seed` (model, seed, share, ci_low, ci_high).
        path: the PNG to write.
        title: the figure title (say the budget here).
        band: the middle orders the share covers, as fractions of n (for the axis label).
    """
    plt = _plt()
    models = list(dict.fromkeys(shares.model))
    seeds = sorted(shares.seed.unique())
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(models) + 2.0), 3.8))
    _seed_markers(ax, shares, models, seeds, plt.get_cmap('tab10'))
    ax.set_xticks(range(len(models)), models)
    ax.set_xlim(-0.6, len(models) - 0.4)
    ax.set_ylabel(f'middle-order share ({band[0]:g}n-{band[1]:g}n)')
    ax.grid(axis='y', alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))  # one entry per seed, not per marker; the seeds first
    order = [f'seed {s}' for s in seeds if f'seed {s}' in unique] + ['mean over seeds']
    ax.legend([unique[k] for k in order], order, frameon=False, fontsize=8, loc='upper left', bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title or 'Middle-order share on each training seed (95 % intervals over images)', fontsize=10)
    save_figure(fig, path)
    plt.close(fig)


def plot_curves_by_statistic(curves: Mapping[str, pd.DataFrame], path: str, title: Optional[str] = None,
                             middle_band: Tuple[float, float] = (0.2, 0.6)) -> None:
    """One panel per statistic (e.g. mean |I| and RMS), each with every model's normalised curve and its 95 % band,
    so a reader sees whether a verdict depends on the statistic.

    Args:
        curves: statistic -> a curve of `moga_lab.analysis.curves.strength_curve` under it.
        path: the PNG to write.
        title: the figure title (say the images, seeds and budget here).
        middle_band: the shaded middle-order band, as fractions of n.
    """
    plt = _plt()
    fig, axes = plt.subplots(1, len(curves), figsize=(5.2 * len(curves), 4.2), sharey=True, squeeze=False)
    for ax, (statistic, curve) in zip(axes[0], curves.items()):
        if middle_band:
            ax.axvspan(*middle_band, color='0.92', zorder=0)
        for model, sub in curve.groupby('model', sort=False):
            sub = sub.sort_values('ratio')
            line, = ax.plot(sub.ratio, sub.J_norm, marker='o', ms=3.5, lw=1.6, label=model)
            ax.fill_between(sub.ratio, sub.ci_low, sub.ci_high, color=line.get_color(), alpha=0.18, lw=0)
        ax.axhline(1.0, color='0.5', lw=0.8, ls=':')
        ax.set_title(STATISTIC_LABELS.get(statistic, statistic), fontsize=10)
        ax.set_xlabel('interaction order  m / n')
        ax.set_xlim(0, 1)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel('strength / its mean over orders')
    axes[0][0].legend(fontsize=8, loc='best')
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def plot_middle_share_by_statistic(shares: pd.DataFrame, path: str, title: Optional[str] = None,
                                   band: Tuple[float, float] = (0.2, 0.6)) -> None:
    """`plot_middle_share_by_seed` with one panel per statistic: for each model one marker per training seed with
    its 95 % interval over images, and a bar at the mean over seeds.

    Args:
        shares: `moga_lab.analysis.seeds.middle_share_by_seed` tables with a ``statistic`` column.
        path: the PNG to write.
        title: the figure title.
        band: the middle orders the share covers (for the axis label).
    """
    plt = _plt()
    stats = list(dict.fromkeys(shares.statistic))
    models = list(dict.fromkeys(shares.model))
    seeds = sorted(shares.seed.unique())
    fig, axes = plt.subplots(1, len(stats), figsize=(max(4.0, 1.0 * len(models) + 1.8) * len(stats), 4.0),
                             sharey=True, squeeze=False)
    for ax, statistic in zip(axes[0], stats):
        _seed_markers(ax, shares[shares.statistic == statistic], models, seeds, plt.get_cmap('tab10'))
        ax.set_xticks(range(len(models)))
        ax.set_xticklabels(models, rotation=20, ha='right', fontsize=8)
        ax.set_title(STATISTIC_LABELS.get(statistic, statistic), fontsize=10)
        ax.grid(axis='y', alpha=0.3)
    axes[0][0].set_ylabel(f'middle-order share ({band[0]:g}n-{band[1]:g}n)')
    handles, labels = axes[0][0].get_legend_handles_labels()
    unique = dict(zip(labels, handles))  # one entry per seed, not per marker; on the first panel only
    axes[0][0].legend(list(unique.values()), list(unique), fontsize=7, ncol=2, loc='best')
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
