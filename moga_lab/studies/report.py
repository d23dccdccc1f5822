"""The report of a published seeded study: the tables `moga_lab.studies.runner.publish_study` gathered (curves of
every model or row on every training seed, top-1 per seed, Grad-CAM mass) rendered as figures and ``report.md``.

`seed_study_report` reads, in the study folder:

- ``interaction_seeds.csv``: per-image interaction rows with ``model`` and ``seed`` columns (the same images, pairs
  and design on every seed);
- ``accuracy.csv``: a line per (model, seed) with ``test_top1`` (and ``val_top1``, ``lr`` when present);
- optionally ``gradcam.csv`` (per model and image: ``cam_on_garment``, ``garment_area``), ``gradcam_grid.png``,
  ``claims.csv`` (this study's declared claims, from ``moga-claims --registry``), ``configs.csv`` (each training's
  resolved configuration: the report names what they differ in) and ``units.csv`` (which machine ran each unit);

and writes ``curves.png`` (each model's curve on the seeds' checkpoints, under mean |I| and under the RMS, with
95 % bootstrap bands over the images), ``seed_shares.png`` (the middle share of every (model, seed) with its interval
over images, under both statistics), ``seed_shares.csv`` and ``report.md``.
"""
import os
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from moga_lab.analysis.curves import flat_middle_share, strength_curve
from moga_lab.analysis.tables import STATISTIC_TEXT, describe_contexts, describe_precision
from moga_lab.analysis.gradcam import mass_summary
from moga_lab.analysis.plots import plot_curves_by_statistic, plot_middle_share_by_statistic
from moga_lab.analysis.seeds import middle_share_by_seed
from moga_lab.studies.findings import REPORT_CLAIMS_END, REPORT_CLAIMS_START, report_claims_section
from moga_lab.utils.atomic import atomic_write_csv, atomic_write_text

__all__ = ['seed_study_report', 'REPORT_STATISTICS']

REPORT_STATISTICS = ('mean-abs', 'rms')
"""The two noise-removed statistics every report shows: mean |I| (the paper's estimand) and the root-mean-square."""


def seed_study_report(folder: str, title: str, reference: str, design: str = '', noun: str = 'model',
                      band: Tuple[float, float] = (0.2, 0.6), labels: Optional[Dict[str, str]] = None) -> str:
    """Render a published seeded study into figures and ``report.md`` (see the module docstring for the files).

    Args:
        folder: the published study folder, e.g. ``docs/studies/compare``.
        title: the report's title.
        reference: the model (or row) the others are compared with; first in every table.
        design: a paragraph on the recipe and design (what the tables alone do not say).
        noun: what the compared things are ('model' or 'row').
        band: the middle orders, as fractions of n.
        labels: optional display names.

    Returns:
        The report's Markdown.

    Raises:
        FileNotFoundError: a required table is missing (named).
        ValueError: ``reference`` is not in the tables.
    """
    frame = _read(folder, 'interaction_seeds.csv')
    accuracy = _read(folder, 'accuracy.csv')
    names = list(dict.fromkeys([reference] + list(dict.fromkeys(frame.model))))
    if reference not in set(frame.model):
        raise ValueError(f'reference {reference!r} is not in {folder}/interaction_seeds.csv; accepted: '
                         f'{", ".join(dict.fromkeys(frame.model))}')
    order = {n: k for k, n in enumerate(names)}
    frame = frame.sort_values('model', key=lambda c: c.map(order), kind='stable')
    shares = pd.concat([middle_share_by_seed(frame, *band, statistic=s).assign(statistic=s)
                        for s in REPORT_STATISTICS], ignore_index=True)
    atomic_write_csv(os.path.join(folder, 'seed_shares.csv'), shares)
    curves = {s: strength_curve(frame, s) for s in REPORT_STATISTICS}
    plot_curves_by_statistic(curves, os.path.join(folder, 'curves.png'), _figure_title(title, frame), band)
    plot_middle_share_by_statistic(shares, os.path.join(folder, 'seed_shares.png'),
                                   f'{title}: middle share per training seed (bar: mean over seeds)', band)
    sections = [f'# {title}', '', design.strip(), '' if design else None,
                _accuracy_section(accuracy, names, noun),
                _sweep_section(folder, names),
                _shares_section(shares, names, noun, band, curves, frame),
                _claims_section(folder),
                _gradcam_section(folder, names),
                _recipe_section(folder, names, noun),
                _machines_section(folder)]
    text = '\n'.join(s for s in sections if s is not None).rstrip() + '\n'
    atomic_write_text(os.path.join(folder, 'report.md'), text)
    return text


def _read(folder: str, name: str) -> pd.DataFrame:
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{path}: not there; publish the study first (moga-study publish)')
    return pd.read_csv(path)


def _mean_sd(values) -> str:
    values = np.asarray(values, dtype=float)
    return f'{values.mean():.2f} ± {values.std(ddof=1):.2f}' if len(values) > 1 else f'{values.mean():.2f}'


def _accuracy_section(accuracy: pd.DataFrame, names: Sequence[str], noun: str) -> str:
    seeds = sorted(accuracy.seed.unique())
    lines = ['## Accuracy', '', f'Test top-1 (%) of each {noun} on each training seed (the best validation checkpoint; '
             'the test split read once per run), with the mean ± s.d. over seeds'
             + (' and the best validation top-1 (which chose the checkpoint)' if 'val_top1' in accuracy else '')
             + '.', '',
             f'| {noun} | lr | ' + ' | '.join(f'seed {s}' for s in seeds) + ' | test top-1 | val top-1 |',
             '| --- | ---: |' + ' ---: |' * (len(seeds) + 2)]
    for name in [n for n in names if n in set(accuracy.model)]:
        sub = accuracy[accuracy.model == name].set_index('seed')
        lr = f'{sub.lr.iloc[0]:g}' if 'lr' in sub else ''
        val = _mean_sd(sub.val_top1) if 'val_top1' in sub else ''
        lines.append(f'| {name} | {lr} | ' + ' | '.join(f'{sub.test_top1[s]:.2f}' if s in sub.index else '–'
                                                     for s in seeds)
                     + f' | {_mean_sd(sub.test_top1)} | {val} |')
    return '\n'.join(lines) + '\n'


def _sweep_section(folder: str, names: Sequence[str]) -> Optional[str]:
    """Validation top-1 of every learning rate tried (all sweep files of a model are one grid), the choice, and
    whether it sits at an end of the grid (where a wider grid might have chosen otherwise)."""
    path = os.path.join(folder, 'sweep.csv')
    if not os.path.isfile(path):
        return None
    sweep = pd.read_csv(path).drop_duplicates(['model', 'lr'])
    lrs = sorted(sweep.lr.unique())
    lines = ['## Learning rates', '', 'Validation top-1 (%) after the sweep\'s epoch at each learning rate (seed 0; '
             'the test split is not read); the training uses the best (bold).', '',
             '| model | ' + ' | '.join(f'{lr:g}' for lr in lrs) + ' | chosen |', '| --- |' + ' ---: |' * (len(lrs) + 1)]
    for name in [n for n in names if n in set(sweep.model)] + sorted(set(sweep.model) - set(names)):
        sub = sweep[sweep.model == name].set_index('lr').val_top1
        best = sub.sort_index().idxmax()  # (the smaller learning rate on a tie, as moga-sweep chooses)
        edge = ' (an end of the grid)' if best in (sub.index.min(), sub.index.max()) else ''
        cells = [('**{:.2f}**' if lr == best else '{:.2f}').format(sub[lr]) if lr in sub.index else '–' for lr in lrs]
        lines.append(f'| {name} | ' + ' | '.join(cells) + f' | {best:g}{edge} |')
    return '\n'.join(lines) + '\n'


def _shares_section(shares, names, noun, band, curves, frame) -> str:
    lines = ['## Multi-order interactions', '',
             f'Middle-order share: the fraction of the normalised interaction strength in orders {band[0]:g}n-'
             f'{band[1]:g}n (a flat curve gives {flat_middle_share(curves["mean-abs"], *band):.3f}), on each training '
             f"seed's checkpoint with its 95 % bootstrap interval over the {frame.image_id.nunique()} test images "
             f'(the same images, pairs and contexts for every {noun} and seed; {describe_contexts(frame)}). '
             f'{describe_precision(frame)}.', '']
    seeds = sorted(shares.seed.unique())
    for statistic in REPORT_STATISTICS:
        sub = shares[shares.statistic == statistic]
        lines += [f'Under {STATISTIC_TEXT[statistic]}:', '',
                  f'| {noun} | ' + ' | '.join(f'seed {s}' for s in seeds) + ' | mean ± s.d. over seeds |',
                  '| --- |' + ' --- |' * len(seeds) + ' ---: |']
        for name in [n for n in names if n in set(sub.model)]:
            by = sub[sub.model == name].set_index('seed')
            cells = [f'{by.share[s]:.3f} [{by.ci_low[s]:.3f}, {by.ci_high[s]:.3f}]' if s in by.index else '–'
                     for s in seeds]
            spread = f' ± {by.share.std(ddof=1):.3f}' if len(by) > 1 else ''
            lines.append(f'| {name} | ' + ' | '.join(cells) + f' | {by.share.mean():.3f}{spread} |')
        lines.append('')
    lines += ['![interaction curves on every training seed\'s checkpoint, mean |I| and RMS, 95 % bands over images]'
              '(curves.png)', '',
              '![middle-order share of every training seed, both statistics, 95 % intervals over images]'
              '(seed_shares.png)', '']
    return '\n'.join(lines)


def _claims_section(folder: str) -> Optional[str]:
    path = os.path.join(folder, 'claims.csv')
    if not os.path.isfile(path):
        return None
    return f'{REPORT_CLAIMS_START}\n{report_claims_section(pd.read_csv(path))}{REPORT_CLAIMS_END}\n'


def _gradcam_section(folder: str, names: Sequence[str]) -> Optional[str]:
    path = os.path.join(folder, 'gradcam.csv')
    if not os.path.isfile(path):
        return None
    table = pd.read_csv(path)
    present = [n for n in names if n in set(table.model)]
    per_model, diffs, area, n = mass_summary(table, present)
    lines = ['## Grad-CAM', '',
             f'The share of each model\'s Grad-CAM mass on the garment (pixels above 10 % of full scale; an evenly '
             f'spread map gets the garment\'s area, {area:.3f} on average) over {n} test images whose maps are '
             'non-zero for every model; 95 % bootstrap intervals over the images, differences paired on them.', '',
             '| model | mass on the garment | ' + f'{present[0]} minus it |', '| --- | --- | --- |']
    for name in present:
        mean, low, high = per_model[name]
        d = '' if name == present[0] else '{:+.3f} ({:+.3f} to {:+.3f})'.format(*diffs[name])
        lines.append(f'| {name} | {mean:.3f} ({low:.3f}-{high:.3f}) | {d} |')
    wide = table.pivot_table(index='image_id', columns='model', values='cam_on_garment')
    pairs = [f'{int(wide[[present[0], name]].notna().all(axis=1).sum())} for {name}' for name in present[1:]]
    if pairs:  # the Grad-CAM claims pair two models on the images both maps cover, not only those all maps cover
        lines += ['', f'A declared Grad-CAM claim pairs its two models on the images where both of their maps are '
                      f'non-zero ({", ".join(pairs)}), so its estimate can differ slightly from this table\'s.']
    if os.path.isfile(os.path.join(folder, 'gradcam_grid.png')):
        lines += ['', '![Grad-CAM of the seed-0 checkpoints on test images](gradcam_grid.png)']
    return '\n'.join(lines) + '\n'


def _recipe_section(folder: str, names: Sequence[str], noun: str) -> Optional[str]:
    """What the trainings' resolved configurations (``configs.csv``) differ in, besides the seed: a reader checks
    that the compared models or rows share one recipe but for what they compare."""
    path = os.path.join(folder, 'configs.csv')
    if not os.path.isfile(path):
        return None
    configs = pd.read_csv(path, keep_default_na=False)
    same = {'model', 'seed', 'trainer.seed', 'trainer.run_dir'}
    varying = [c for c in configs.columns if c not in same and configs[c].astype(str).nunique() > 1]
    listed = set(configs.model) if 'model' in configs else set()   # (a study of one model has no model column)
    shown = [n for n in names if n in listed]
    lines = ['## Recipe', '', f'`configs.csv` holds the resolved configuration of each of the {len(configs)} trainings '
             'published here. Apart from the seed, ' + ('they differ only in ' + ', '.join(f'`{c}`' for c in varying)
                                                       if varying else 'they are the same') + '.']
    absent = [n for n in names if n not in listed] if listed else []
    if absent:
        many = len(absent) > 1
        lines[-1] += (f' The {", ".join(absent)} {noun}{"s" if many else ""} came from another published study: '
                      f'{"their" if many else "its"} commands are in `units.csv`.')
    if varying and shown:
        lines += ['', f'| {noun} | ' + ' | '.join(f'`{c}`' for c in varying) + ' |', '| --- |' + ' --- |' * len(varying)]
        for name in shown:
            sub = configs[configs.model == name]
            lines.append(f'| {name} | ' + ' | '.join(' / '.join(dict.fromkeys(sub[c].astype(str))) for c in varying)
                         + ' |')
    return '\n'.join(lines) + '\n'


def _unit_ranges(units: Sequence[str]) -> str:
    """``fit-a-s0, fit-a-s1, fit-a-s2`` as ``fit-a-s0..2``: which units ran where, in a line."""
    groups: Dict[str, list] = {}
    for unit in units:
        stem, _, seed = unit.rpartition('-s')
        if stem and seed.isdigit():
            groups.setdefault(stem, []).append(int(seed))
        else:
            groups.setdefault(unit, [])
    parts = []
    for stem, seeds in groups.items():
        seeds = sorted(seeds)
        if not seeds:
            parts.append(stem)
        elif seeds == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 1:
            parts.append(f'{stem}-s{seeds[0]}..{seeds[-1]}')
        else:
            parts.append(', '.join(f'{stem}-s{k}' for k in seeds))
    return ', '.join(parts)


def _machines_section(folder: str) -> Optional[str]:
    path = os.path.join(folder, 'units.csv')
    if not os.path.isfile(path):
        return None
    units = pd.read_csv(path)
    lines = ['## Where it ran', '']
    for machine, sub in units.groupby('machine', sort=True):
        lines.append(f'- {machine}: {len(sub)} units, {sub.minutes.sum() / 60:.1f} h: {_unit_ranges(list(sub.unit))}')
    return '\n'.join(lines) + '\n'


def _figure_title(title: str, frame: pd.DataFrame) -> str:
    return (f'{title}\n{frame.image_id.nunique()} test images x {frame.seed.nunique()} training seeds (curves averaged '
            'over the seeds; band: 95 % over images)')
