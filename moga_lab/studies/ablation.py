"""The paper's ablations (its Fig. 7) at Fashion-MNIST scale: one row per MogaNet variant, one budget, several seeds.

A grid is a YAML file (the package's ``configs/ablation.yaml`` and ``configs/quick.yaml``): a ``budget`` (model,
epochs, batch, lr, image size, seeds), ``rows`` (name -> model switches, e.g. ``no_ca: {channel_aggregation:
false}``) and an ``interaction`` design (images, grid, pairs, contexts, baseline, the middle band).
`load_ablation` reads and checks it; `run_ablation` trains every (row, seed) in its own resumable run folder,
computes each row's interaction curves on the first seed's checkpoint (and on ``curve_seeds``), all rows on the
same images, pairs and contexts, and writes the tables, the report and the figure:

- ``ablation.csv`` (a row per variant: parameters, MACs, top-1 mean and spread over seeds, images/s, the middle
  share under mean |I| with its 95 % bootstrap interval over images, and under the RMS);
- ``accuracy.csv`` (a line per (row, seed)), ``interaction.csv`` (the tidy per-image table), ``curve.csv``;
- ``ablation.md`` (the report) and ``ablation_curves.png``; the seed tables when later seeds have curves.
"""
import dataclasses
import os
import textwrap
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import yaml

from moga_lab.analysis.curves import flat_middle_share, middle_share_difference, middle_share_interval, strength_curve
from moga_lab.analysis.estimate import InteractionSettings, per_image_target
from moga_lab.analysis.game import BASELINES
from moga_lab.analysis.tables import STATISTIC_TEXT, describe_contexts, describe_precision
from moga_lab.analysis.plots import plot_interaction_curves, plot_interaction_panels
from moga_lab.studies.common import (Budget, check_interaction_cache, count_params_macs, interaction_of_checkpoints,
                                     load_study_config, provenance, publish_artefacts, reported_checkpoint,
                                     seed_tables, trained_on, wall_time)
from moga_lab.studies.jobs import JobOptions, TrainJob, run_jobs
from moga_lab.training import ModelConfig, build_model
from moga_lab.utils.atomic import atomic_write_csv, atomic_write_text
from moga_lab.utils.tracking import safe_record

__all__ = ['AblationError', 'AblationPlan', 'AblationResult', 'DEFAULT_CONFIG', 'QUICK_CONFIG', 'load_ablation',
           'check_before_training', 'run_ablation']

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'configs')
DEFAULT_CONFIG = os.path.join(CONFIGS, 'ablation.yaml')
"""The paper's grid (rows of its Fig. 7 at Fashion-MNIST scale), shipped with the package."""
QUICK_CONFIG = os.path.join(CONFIGS, 'quick.yaml')
"""A minutes-long grid (a smoke test of the whole pipeline; used by the tests)."""
DEFAULT_RATIOS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)


class AblationError(ValueError):
    """Bad input to an ablation (a config value, a seed, a cache of another design): one line naming it."""


@dataclass
class AblationPlan:
    """A grid read from its config and checked (`load_ablation`).

    Attributes:
        config: the config file.
        budget: the training budget every (row, seed) shares.
        rows: row name -> model switches (`ModelConfig` fields), in the config's order.
        interaction: keyword arguments of `interaction_of_checkpoints` (images, grid, pairs, contexts, ratios,
            target_ci per image, max_forwards, baseline, design, share).
        band: the middle orders, as fractions of n (default 0.2-0.6).
    """
    config: str
    budget: Budget
    rows: Dict[str, Dict[str, Any]]
    interaction: Dict[str, Any]
    band: Tuple[float, float] = (0.2, 0.6)

    @property
    def design(self) -> InteractionSettings:
        """The interaction design (what a cached curve must have been computed with)."""
        i = self.interaction
        return InteractionSettings(grid=i['grid'], num_pairs=i['pairs'], num_contexts=i['contexts'],
                                   ratios=tuple(i['ratios']), target_ci=i['target_ci'], baseline=i['baseline'],
                                   design='two-phase' if i['target_ci'] is not None else i.get('design', 'fixed'),
                                   share=i.get('share'))

    def model_config(self, row: str) -> ModelConfig:
        """The row's model (lists in YAML become the tuples `ModelConfig` takes)."""
        return ModelConfig(name=self.budget.model, **{k: tuple(v) if isinstance(v, list) else v
                                                      for k, v in (self.rows[row] or {}).items()})

    def run_dir(self, out: str, row: str, seed: int) -> str:
        return os.path.join(out, row, f'seed{seed}')

    @property
    def share_column(self) -> str:
        return f'middle_share_{self.band[0]:g}-{self.band[1]:g}n'

    def budget_text(self) -> str:
        """E.g. '28 px, 3 epochs at batch 128, lr 0.002'."""
        b = self.budget
        return f'{b.image_size or 28} px, {b.describe_epochs()} at batch {b.batch_size}, lr {b.lr:g}'


@dataclass
class AblationResult:
    """What `run_ablation` made.

    Attributes:
        table: ``ablation.csv`` (None when no report was asked for or no row has finished).
        report: the markdown of ``ablation.md`` (or None).
        missing: '<row>/seed<S>' runs not finished (left out of every table).
        failed: jobs that failed (their logs are in ``<out>/jobs``).
        written: the files written into ``out``.
        published: the files copied to ``publish``.
        submitted: Slurm jobs were submitted and are not finished: run again once they are.
    """
    table: Optional[pd.DataFrame] = None
    report: Optional[str] = None
    missing: List[str] = field(default_factory=list)
    failed: List[str] = field(default_factory=list)
    written: List[str] = field(default_factory=list)
    published: List[str] = field(default_factory=list)
    submitted: bool = False


def load_ablation(config: str, rows: Optional[Sequence[str]] = None, data_dir: Optional[str] = None) -> AblationPlan:
    """Read and check a grid: every value that would fail a job hours later is named now.

    Args:
        config: the grid's YAML file.
        rows: only these rows (names in the config).
        data_dir: the Fashion-MNIST folder (default: Debian's).

    Raises:
        AblationError: one line naming the file, the bad value and what is accepted.
    """
    try:
        cfg = load_study_config(config)
        budget = Budget.from_config(cfg.get('budget') or {}, data_dir=data_dir)
    except (OSError, ValueError, yaml.YAMLError) as error:
        raise AblationError(f'{config}: {error}') from None
    grid = cfg.get('rows') or {}
    if not isinstance(grid, dict) or not grid:
        raise AblationError(f'{config}: no rows; a section rows: {{name: {{switch: value}}, ...}} is needed')
    if rows:
        unknown = set(rows) - set(grid)
        if unknown:
            raise AblationError(f'unknown rows {sorted(unknown)}; accepted: {", ".join(grid)}')
        grid = {k: grid[k] for k in rows}
    inter = dict(cfg.get('interaction') or {})
    plan = AblationPlan(config, budget, {k: dict(v or {}) for k, v in grid.items()}, _interaction_kwargs(inter),
                        tuple(inter.get('middle_band', (0.2, 0.6))))
    for name in plan.rows:
        _check_row(plan, name)
    return plan


def _interaction_kwargs(inter: Dict[str, Any]) -> Dict[str, Any]:
    kwargs = dict(num_images=inter.get('num_images', 4), grid=inter.get('grid', 7), pairs=inter.get('pairs', 12),
                  contexts=inter.get('contexts', 12), ratios=inter.get('ratios', DEFAULT_RATIOS),
                  target_ci=inter.get('target_ci'), max_forwards=inter.get('max_forwards'),
                  baseline=inter.get('baseline', 'zero'), design=inter.get('design', 'fixed'),
                  share=inter.get('share'))
    if kwargs['design'] not in ('fixed', 'shared'):
        raise AblationError(f"interaction.design={kwargs['design']!r} in the config is not accepted; accepted: fixed, "
                            'shared (the precision mode: give interaction.target_ci)')
    if kwargs['baseline'] not in BASELINES:
        raise AblationError(f"interaction.baseline={kwargs['baseline']!r} in the config is not accepted; accepted: "
                            f'{", ".join(BASELINES)}')
    if kwargs['target_ci'] is not None and not 0 < float(kwargs['target_ci']) <= 1:
        raise AblationError(f"interaction.target_ci={kwargs['target_ci']} in the config is out of range; accepted: "
                            'a fraction in (0, 1], e.g. 0.05')
    target_over = inter.get('target_over', 'image')
    if target_over not in ('image', 'images'):
        raise AblationError(f'interaction.target_over={target_over!r} in the config is not accepted; accepted: image '
                            '(target_ci per image) or images (target_ci for each curve over its num_images images)')
    kwargs['target_ci'] = per_image_target(kwargs['target_ci'], kwargs['num_images'], target_over)
    return kwargs


def _check_row(plan: AblationPlan, name: str) -> None:
    """A bad switch is named now, not as a traceback from a job later."""
    known = {f.name for f in dataclasses.fields(ModelConfig)} - {'name', 'extra'}
    unknown = sorted(set(plan.rows[name]) - known)
    if unknown:
        raise AblationError(f'{plan.config}: row {name!r}: unknown switches {unknown}; accepted: '
                            f'{", ".join(sorted(known))}')
    try:
        build_model(plan.model_config(name), 10, 1, plan.budget.image_size or 28)
    except (TypeError, ValueError) as error:
        raise AblationError(f'{plan.config}: row {name!r}: {error}') from None


def check_before_training(plan: AblationPlan, out: str, seeds: Optional[Sequence[int]] = None,
                          curve_seeds: Sequence[int] = ()) -> None:
    """Seeds outside the budget, or cached curves of another design: said now, not after hours of training.

    Args:
        plan: from `load_ablation`.
        out: the study folder.
        seeds: the seeds this call trains (None: all).
        curve_seeds: later seeds whose checkpoints get curves.

    Raises:
        AblationError: one line.
    """
    for flag, chosen in (('--seeds', seeds), ('--curve-seeds', curve_seeds)):
        if chosen and set(chosen) - set(plan.budget.seeds):
            raise AblationError(f'{flag} {sorted(set(chosen) - set(plan.budget.seeds))}: not in the config; '
                                f'accepted: {plan.budget.seeds}')
    for name in plan.rows:
        caches = [os.path.join(out, name, 'interaction.csv')] + [
            os.path.join(plan.run_dir(out, name, seed), 'interaction.csv') for seed in plan.budget.seeds[1:]]
        try:
            for cache in caches:
                check_interaction_cache(cache, plan.design)
        except ValueError as error:
            raise AblationError(str(error)) from None


def run_ablation(plan: AblationPlan, out: str, options: JobOptions = JobOptions(),
                 seeds: Optional[Sequence[int]] = None, curve_seeds: Sequence[int] = (), report: bool = True,
                 publish: Optional[str] = None, store: Optional[Any] = None, script: str = 'moga-ablate',
                 command: Sequence[str] = (), log: Callable[[str], None] = print) -> AblationResult:
    """Train the grid (finished runs are skipped, stopped ones resume), compute its curves and write its tables.

    Args:
        plan: from `load_ablation`.
        out: the study folder (a run folder per (row, seed), the tables, the report).
        options: how the (row, seed) trainings run (inline, local processes, Slurm).
        seeds: only these of the budget's seeds (one job's share of the grid); the rows' curves need the first.
        curve_seeds: also compute each row's curves on these seeds' checkpoints (the report adds the seed tables).
        report: write the tables, report and figure; without it, train and compute curves only (a later call
            with it reads everything back).
        publish: also copy the tables, report and figures (not checkpoints) to this folder.
        store: an MLflow study store (`moga_lab.utils.tracking.open_study_store`), or None.
        script: the command's name as the report states it.
        command: its arguments, as typed.
        log: where the report and progress lines go.

    Raises:
        AblationError: a row whose curves are unfinished and whose checkpoint is missing (e.g. a fresh clone).
    """
    check_before_training(plan, out, seeds, curve_seeds)
    jobs = [TrainJob(plan.run_dir(out, name, seed), dict(plan.budget.__dict__), seed, switches)
            for name, switches in plan.rows.items() for seed in (seeds or plan.budget.seeds)]
    result = AblationResult(failed=run_jobs(jobs, options, os.path.join(out, 'jobs')))
    if options.executor == 'slurm' and any(not os.path.isfile(os.path.join(j.run_dir, 'results.yaml')) for j in jobs):
        result.submitted = True   # run again once the array is done
        return result
    lines, frames, per_seed = [], [], {}
    for name in plan.rows:
        accs, speeds, walls = _seed_results(plan, out, name, per_seed, result.missing)
        _later_seed_curves(plan, out, name, curve_seeds, seeds)
        first_done = os.path.isfile(os.path.join(plan.run_dir(out, name, plan.budget.seeds[0]), 'results.yaml'))
        if not accs or not first_done or (not report and seeds and plan.budget.seeds[0] not in seeds):
            continue  # (the first seed's call computes the row's curves: two calls must not share one cache)
        frames.append(_row_curves(plan, out, name))
        if report:
            lines.append(_row_line(plan, name, accs, speeds, walls))
    if not report:  # check again: a row's curves take minutes, another job may have finished a seed meanwhile
        result.missing = [m for m in result.missing if not os.path.isfile(os.path.join(out, m, 'results.yaml'))]
    if not report or not lines:
        return result
    _write_tables(plan, out, result, lines, frames, per_seed, seeds_command=(script, command))
    if publish:
        result.published = publish_artefacts(out, publish)
    _record(store, plan, out, result.table, per_seed, pd.read_csv(os.path.join(out, 'interaction.csv')), log)
    return result


def _seed_results(plan, out, name, per_seed, missing):
    """Top-1 (%), images/s and wall seconds of the row's finished seeds; unfinished ones go to ``missing``."""
    accs, speeds, walls = [], [], []
    for seed in plan.budget.seeds:
        results = os.path.join(plan.run_dir(out, name, seed), 'results.yaml')
        if not os.path.isfile(results):
            missing.append(f'{name}/seed{seed}')
            continue
        with open(results) as f:
            r = yaml.safe_load(f)
        accs.append(100 * r['test/acc1'])
        speeds.append(r['train_images_per_second'])
        walls.append(r.get('wall_seconds', float('nan')))
        per_seed[(name, seed)] = r
    return accs, speeds, walls


def _later_seed_curves(plan, out, name, curve_seeds, seeds):
    """Curves on later seeds' checkpoints (each (row, seed) call computes its own seed's), cached per run."""
    for seed in curve_seeds:
        run = plan.run_dir(out, name, seed)
        if seed == plan.budget.seeds[0] or (seeds and seed not in seeds) or not os.path.isfile(
                os.path.join(run, 'results.yaml')):
            continue
        try:
            interaction_of_checkpoints({name: reported_checkpoint(run)}, cache=os.path.join(run, 'interaction.csv'),
                                       wall_times=out, **plan.interaction)
        except FileNotFoundError as error:
            raise AblationError(f'row {name!r} seed {seed}: curves unfinished and {error}') from None


def _row_curves(plan, out, name) -> pd.DataFrame:
    """The row's curves on the first seed's checkpoint; every row uses the same test images, pairs and contexts
    (they depend on the seed and the data only); cached per row, per image (a stopped run loses nothing)."""
    first = plan.run_dir(out, name, plan.budget.seeds[0])
    try:
        return interaction_of_checkpoints({name: reported_checkpoint(first)},
                                          cache=os.path.join(out, name, 'interaction.csv'), wall_times=out,
                                          **plan.interaction)
    except FileNotFoundError as error:  # e.g. a fresh clone: results.yaml committed, curves unfinished, no checkpoint
        raise AblationError(f'row {name!r}: curves unfinished and {error}; delete {first} to train that seed '
                            'again') from None


def _row_line(plan, name, accs, speeds, walls) -> Dict[str, Any]:
    switches = plan.rows[name]
    params, macs = count_params_macs(plan.model_config(name), image_size=plan.budget.image_size or 28)
    return dict(row=name, switches=', '.join(f'{k}={v}' for k, v in switches.items()) or '(paper default)',
                params_M=params / 1e6, MMACs=macs / 1e6, top1_mean=float(np.mean(accs)),
                top1_spread=float(np.std(accs, ddof=1)) if len(accs) > 1 else float('nan'),
                seeds=len(accs), train_images_per_s=float(np.mean(speeds)), wall_min=float(np.sum(walls)) / 60)


def _write_tables(plan, out, result, lines, frames, per_seed, seeds_command):
    """ablation.csv, curve.csv, interaction.csv, accuracy.csv, ablation.md and the figure."""
    frame = pd.concat(frames, ignore_index=True)
    curve = strength_curve(frame)
    table = pd.DataFrame(lines)
    col = plan.share_column
    intervals = middle_share_interval(frame, 'mean-abs', *plan.band).set_index('model')  # 95 % bootstrap over images
    table[col] = table.row.map(intervals.share)
    table[f'{col}_ci_low'] = table.row.map(intervals.ci_low)
    table[f'{col}_ci_high'] = table.row.map(intervals.ci_high)
    rms = middle_share_interval(frame, 'rms', *plan.band).set_index('model')  # the other statistic, beside it
    table[f'{col}_rms'] = table.row.map(rms.share)
    os.makedirs(out, exist_ok=True)
    atomic_write_csv(os.path.join(out, 'ablation.csv'), table)
    atomic_write_csv(os.path.join(out, 'curve.csv'), curve)
    atomic_write_csv(os.path.join(out, 'interaction.csv'), frame)   # the tidy per-image table of every row
    atomic_write_csv(os.path.join(out, 'accuracy.csv'), _accuracy_table(per_seed, set(table.row)))
    md = _report(plan, out, table, frame, curve, per_seed, result.missing, *seeds_command)
    atomic_write_text(os.path.join(out, 'ablation.md'), md)
    _figure(plan, out, curve)
    result.table, result.report = table, md
    result.written = ['ablation.csv', 'ablation.md', 'ablation_curves.png', 'accuracy.csv', 'interaction.csv',
                      'curve.csv']


def _accuracy_table(per_seed, rows) -> pd.DataFrame:
    """One line per (row, seed): what other tools read (first column the row, a seed column, top-1 in percent)."""
    return pd.DataFrame([
        dict(row=name, seed=seed, test_top1=round(100 * r['test/acc1'], 2), test_top5=round(100 * r['test/acc5'], 2),
             train_images_per_s=r['train_images_per_second'], wall_min=round(r.get('wall_seconds', float('nan')) / 60, 1),
             machine=r.get('machine', 'not recorded'), threads=r.get('threads'))
        for (name, seed), r in per_seed.items() if name in rows])


def _report(plan, out, table, frame, curve, per_seed, missing, script, command) -> str:
    b, band, col = plan.budget, plan.band, plan.share_column
    shown = table.copy()
    shown['top-1 (%)'] = [f'{m:.2f} ± {s:.2f}' if s == s else f'{m:.2f}' for m, s in zip(table.top1_mean,
                                                                                        table.top1_spread)]
    shown['middle share (95 % CI)'] = [f'{v:.3f} ({lo:.3f}-{hi:.3f})' for v, lo, hi in zip(
        table[col], table[f'{col}_ci_low'], table[f'{col}_ci_high'])]
    shown['rms'] = table[f'{col}_rms'].map(lambda v: f'{v:.3f}')
    shown = shown[['row', 'switches', 'params_M', 'MMACs', 'seeds', 'top-1 (%)', 'train_images_per_s',
                   'middle share (95 % CI)', 'rms']]
    md = (f'MogaNet-XT ablations on Fashion-MNIST: {b.describe_epochs()}, batch {b.batch_size}, '
          f'lr {b.lr}, {b.image_size or 28} px, '
          f'seeds {b.seeds}; top-1 = mean ± sample std over seeds; middle share = fraction of the normalised '
          f'interaction strength in orders {band[0]:g}n-{band[1]:g}n ({frame.image_id.nunique()} test images, '
          f'{describe_contexts(frame)}; baseline {frame.baseline.iloc[0]}; strength: {STATISTIC_TEXT["mean-abs"]}, with '
          f'the root-mean-square beside it (column "rms"); a flat '
          f'curve gives {flat_middle_share(curve, *band):.3f}; 95 % interval by bootstrap over the images); images/s '
          f'as measured by each training process (with whatever else ran on the machine at the time). '
          f'{describe_precision(frame)}.\n\n' + shown.to_markdown(index=False, floatfmt='.3f') + '\n')
    if missing:  # a grid published while some of its (row, seed) runs still train says which ones the tables lack
        md += f'\nNot finished yet, so left out of every table and figure here: {", ".join(missing)}.\n'
    md += _differences(frame, table, band, b.seeds[0])
    md += seed_tables(out, frame, b.seeds, plan.interaction['num_images'], band, 'full',
                      f'MogaNet-XT ablations: middle-order share on each training seed ({plan.budget_text()})',
                      plan.budget_text())
    machines = sorted({trained_on(r) for (name, _), r in per_seed.items() if name in set(table.row)})
    md += (f'\nTrained on: {"; ".join(machines)}. Wall time: training {table.wall_min.sum() / 60:.1f} h (summed over '
           f'the (row, seed) jobs), interactions {wall_time(out, "interaction") / 60:.0f} min (each image as it '
           f'finished, summed across resumed runs). {provenance(script, command)}\n\n'
           f'![interaction curves of every row ({frame.image_id.nunique()} test images, seed-{b.seeds[0]} '
           f'checkpoints; {b.image_size or 28} px, {b.describe_epochs()} at batch {b.batch_size}, lr {b.lr:g})]'
           f'(ablation_curves.png)\n')
    return md


def _differences(frame, table, band, seed) -> str:
    """The paper's claim (gating and channel aggregation raise middle-order interactions), row by row against
    'full' with a paired bootstrap over the shared images of the ``seed`` checkpoints: exploratory (not adjusted;
    the verdicts are those of the claims registry)."""
    rows = list(table.row)
    if 'full' not in rows:
        return ''
    lines = ['', f"Middle share (mean |I|) of 'full' minus that of each row on the seed-{seed} checkpoints (paired 95 % "
             'bootstrap interval over the same images; training-seed variation is not in it; not adjusted over the '
             'rows: exploratory, the verdicts are those of the claims registry); the paper predicts > 0 where the '
             'row removes gating or channel aggregation:', '',
             '| row | full - row | 95 % interval | interval excludes 0 | rms: full - row |', '| --- | ---: | --- | --- | ---: |']
    for row in rows:
        if row == 'full':
            continue
        d = middle_share_difference(frame, 'full', row, 'mean-abs', *band)
        other = middle_share_difference(frame, 'full', row, 'rms', *band)
        verdict = ('yes: full higher' if d.ci_low > 0 else 'yes: full lower' if d.ci_high < 0
                   else 'no (interval contains 0)')
        lines.append(f"| {row} | {d.difference:+.3f} | {d.ci_low:+.3f} to {d.ci_high:+.3f} | {verdict} | "
                     f"{other.difference:+.3f} |")
    return '\n'.join(lines) + '\n'


def _figure(plan, out, curve) -> None:
    b = plan.budget
    title = (f'MogaNet-XT ablations: multi-order interaction strength\n{b.image_size or 28} px, '
             f'{b.describe_epochs()}, seed-{b.seeds[0]} checkpoints')
    path = os.path.join(out, 'ablation_curves.png')
    if curve.model.nunique() > 4:  # more overlapping bands than one axes can show: one panel per row
        labels = {name: f'{name}\n' + textwrap.fill(', '.join(f'{k}={v}' for k, v in sw.items()) or 'paper default', 34)
                  for name, sw in plan.rows.items()}
        plot_interaction_panels(curve, path, title=title, middle_band=plan.band, labels=labels)
    else:
        plot_interaction_curves(curve, path, title=title, middle_band=plan.band)


def _record(store, plan, out, table, per_seed, frame, log) -> None:
    """Each row an MLflow run (switches and budget as parameters; top-1 mean/spread, middle share, images/s, wall
    time as metrics), its seeds child runs, and the study's tables and figure on a summary run."""
    if store is None:
        return
    b, col = plan.budget, plan.share_column
    common = dict(model=b.model, epochs=b.epochs, batch_size=b.batch_size, lr=b.lr, image_size=b.image_size or 28,
                  limit_train_batches=b.limit_train_batches, seeds=b.seeds, out=os.path.abspath(out),
                  interaction=describe_contexts(frame))
    for r in table.to_dict('records'):
        name, switches = r['row'], plan.rows[r['row']]
        metrics = {k: r[k] for k in ('top1_mean', 'top1_spread', 'train_images_per_s', 'wall_min', 'params_M', 'MMACs')}
        metrics.update(middle_share=r[col], middle_share_ci_low=r[f'{col}_ci_low'],
                       middle_share_ci_high=r[f'{col}_ci_high'])
        parent = safe_record(store, f'{out}:{name}', {**common, **{f'switch.{k}': v for k, v in switches.items()}},
                             metrics, name=name, tags=dict(row=name, study='ablation'))
        for seed in b.seeds:
            res = per_seed.get((name, seed))
            if res is None or parent is None:
                continue
            run_dir = plan.run_dir(out, name, seed)
            safe_record(store, f'{out}:{name}:seed{seed}', {**common, 'seed': seed},
                        {'top1': 100 * res['test/acc1'], 'top5': 100 * res.get('test/acc5', float('nan')),
                         'train_images_per_s': res['train_images_per_second'],
                         'wall_min': res.get('wall_seconds', float('nan')) / 60},
                        artifacts=[os.path.join(run_dir, n) for n in ('config.yaml', 'results.yaml',
                                                                      'learning_curve.png')],
                        parent_run_id=parent, name=f'{name} seed {seed}', tags=dict(row=name, seed=seed))
    safe_record(store, f'{out}:summary', common, {'rows': len(table)},
                artifacts=[os.path.join(out, n) for n in ('ablation.csv', 'ablation.md', 'ablation_curves.png',
                                                          'curve.csv', 'accuracy.csv', 'seed_shares.csv',
                                                          'seed_shares.png')] + [plan.config],
                name='summary', tags=dict(study='ablation'))
    log(f'recorded {len(table)} rows in {store.uri} (experiment {store.experiment!r}); browse: mlflow ui '
        f'--backend-store-uri {store.uri}')
