"""The paper's ablations at Fashion-MNIST scale: one row per MogaNet-XT variant, one budget, several seeds.

    moga-ablate [--config FILE.yaml] [--out runs/ablation] [--quick]

Rows (the default config, ``moga_lab/studies/configs/ablation.yaml``): full; no gating branch; gate activation sigmoid / GELU; dilations
(1,1,1); channel splits 1:0:0 and 1:1:1; no FD; no CA; no FD + no CA + no gating (the plain baseline).
Columns: parameters, MACs (torch's FlopCounterMode, at the budget's image size), test top-1 (mean and spread over seeds), training images/s, and
the share of interaction strength in the middle orders (0.2n-0.6n by default) from the interaction tool on
the seed-0 checkpoint, all rows on the same images, pairs and contexts. ``--curve-seeds 1 2`` also computes the curves
on those seeds' checkpoints: the report then gives each row's middle share per seed and full minus each row on every
seed and across seeds (``seed_shares.csv``, ``interaction_seeds.csv``; `moga_lab.analysis.seeds`).

Writes ``<out>/ablation.csv`` (a row per variant), ``ablation.md``, ``ablation_curves.png``, ``accuracy.csv`` (a line per
(row, seed)), ``interaction.csv`` (the tidy per-image table) and ``curve.csv``, and records every row
(seeds as child runs) in the MLflow study store (``runs/mlflow.db`` unless ``--tracking-uri``; see
moga_lab/utils/tracking.py). Every (row, seed) trains in its own run directory: a stopped run resumes where it stopped.
``--executor local --concurrency 2`` runs the (row, seed) jobs as separate processes (one thread each on 2 cores),
``--executor slurm`` submits them as a job array (moga_lab.studies.jobs); the report is written from whatever finished
and names what is missing. ``--quick`` uses the package's ``studies/configs/quick.yaml`` (minutes; used by the tests).
"""
import argparse
import dataclasses
import os
import sys
import textwrap

import numpy as np
import pandas as pd
import yaml


from moga_lab.analysis.games import (BASELINES, STATISTIC_TEXT, InteractionSettings, describe_contexts,
                                     describe_precision, flat_middle_share, middle_share_difference,
                                     middle_share_interval, per_image_target, strength_curve)
from moga_lab.analysis.plots import plot_interaction_curves, plot_interaction_panels
from moga_lab import studies
from moga_lab.studies.jobs import EXECUTORS, JobOptions, TrainJob, run_jobs
from moga_lab.studies.common import (Budget, check_interaction_cache, count_params_macs,
                              interaction_of_checkpoints, load_study_config, provenance, publish_artefacts,
                              reported_checkpoint, seed_tables, trained_on, wall_time)
from moga_lab.utils.tracking import TrackingError, add_tracking_arguments, open_study_store, safe_record
from moga_lab.training import ModelConfig, build_model
from moga_lab.utils.atomic import atomic_write_csv, atomic_write_text

CONFIGS = os.path.dirname(os.path.abspath(studies.__file__))  # the grids shipped with the package: configs/*.yaml


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--config', default=os.path.join(CONFIGS, 'configs', 'ablation.yaml'))
    p.add_argument('--quick', action='store_true', help='the minutes-long grid of configs/quick.yaml')
    p.add_argument('--out', default='runs/ablation')
    p.add_argument('--publish', metavar='DIR', help='also copy the tables, report and figures (not checkpoints) to DIR, '
                   'e.g. docs/studies/ablation')
    p.add_argument('--rows', nargs='+', help='only these rows (names in the config)')
    p.add_argument('--seeds', nargs='+', type=int, help="only these of the budget's seeds (e.g. one (row, seed) job per "
                   'call); the interactions need the first seed, the tables read back every finished seed')
    p.add_argument('--curve-seeds', nargs='+', type=int, default=[], metavar='S',
                   help="also compute each row's curves on these seeds' checkpoints (cached in <row>/seed<S>/"
                        "interaction.csv; the first seed's are always computed): the report adds the middle share per "
                        'seed and full minus each row across seeds. A report reads the finished caches without it')
    p.add_argument('--data-dir', default=None, help='Fashion-MNIST folder (default: Debian\'s)')
    p.add_argument('--no-report', action='store_true',
                   help='train the rows and compute their interactions, but write no tables (a later run without it '
                        'reads everything back and writes the tables and figure)')
    g = p.add_argument_group('jobs (moga_lab.studies.jobs, submitit)')
    g.add_argument('--executor', choices=EXECUTORS, default='inline',
                   help='inline: one row after another in this process (default); local: each (row, seed) its own '
                        'process on this machine; slurm: a job array')
    g.add_argument('--concurrency', type=int, default=1, help='local: jobs at once (2 on 2 cores, one thread each)')
    g.add_argument('--threads', type=int, help='local: threads per job (default cores / concurrency)')
    g.add_argument('--partition', help='slurm partition')
    g.add_argument('--time', type=int, default=120, help='slurm/local: time limit per job, minutes')
    g.add_argument('--gpus', type=int, default=0, help='slurm: GPUs per job')
    g.add_argument('--array-parallelism', type=int, default=16, help='slurm: array jobs at once')
    add_tracking_arguments(p, 'ablation')
    args = p.parse_args(argv)
    command = sys.argv[1:] if argv is None else list(argv)  # stated in the report
    if args.publish and os.path.exists(args.publish) and not os.path.isdir(args.publish):
        p.error(f'--publish {args.publish}: a file is there; accepted: a folder (created if missing)')
    options = JobOptions(args.executor, args.concurrency, args.threads, args.partition, args.time, args.gpus,
                         array_parallelism=args.array_parallelism)
    try:
        options.check()  # a scheduler or store that is not there: one line before any work
        store = None if args.no_report else open_study_store(args.tracking_uri, args.experiment, not args.no_tracking)
    except (ValueError, TrackingError) as error:
        p.exit(2, f'{p.prog}: error: {error}\n')
    args.config = os.path.join(CONFIGS, 'configs', 'quick.yaml') if args.quick else args.config
    try:
        cfg = load_study_config(args.config)
        budget = Budget.from_config(cfg.get('budget') or {}, data_dir=args.data_dir)
    except (OSError, ValueError, yaml.YAMLError) as error:
        p.error(f'{args.config}: {error}')
    inter = dict(cfg.get('interaction') or {})
    band = tuple(inter.pop('middle_band', (0.2, 0.6)))
    rows = cfg.get('rows') or {}
    if not isinstance(rows, dict) or not rows:
        p.error(f'{args.config}: no rows; a section rows: {{name: {{switch: value}}, ...}} is needed')
    if args.rows:
        unknown = set(args.rows) - set(rows)
        if unknown:
            p.error(f'unknown rows {sorted(unknown)}; accepted: {", ".join(rows)}')
        rows = {k: rows[k] for k in args.rows}
    for name, switches in rows.items():  # a bad switch is named now, not as a traceback from a job later
        known = {f.name for f in dataclasses.fields(ModelConfig)} - {'name', 'extra'}
        unknown = sorted(set(switches or {}) - known)
        if unknown:
            p.error(f'{args.config}: row {name!r}: unknown switches {unknown}; accepted: {", ".join(sorted(known))}')
        try:
            build_model(ModelConfig(name=budget.model, **{k: tuple(v) if isinstance(v, list) else v
                                                          for k, v in (switches or {}).items()}),
                        10, 1, budget.image_size or 28)
        except (TypeError, ValueError) as error:
            p.error(f'{args.config}: row {name!r}: {error}')

    inter_kwargs = dict(num_images=inter.get('num_images', 4), grid=inter.get('grid', 7), pairs=inter.get('pairs', 12),
                        contexts=inter.get('contexts', 12),
                        ratios=inter.get('ratios', (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)),
                        target_ci=inter.get('target_ci'), max_forwards=inter.get('max_forwards'),
                        baseline=inter.get('baseline', 'zero'))
    if inter_kwargs['baseline'] not in BASELINES:
        p.error(f"interaction.baseline={inter_kwargs['baseline']!r} in the config is not accepted; accepted: "
                f'{", ".join(BASELINES)}')
    if inter_kwargs['target_ci'] is not None and not 0 < float(inter_kwargs['target_ci']) <= 1:
        p.error(f"interaction.target_ci={inter_kwargs['target_ci']} in the config is out of range; accepted: a "
                'fraction in (0, 1], e.g. 0.05')
    target_over = inter.get('target_over', 'image')
    if target_over not in ('image', 'images'):
        p.error(f'interaction.target_over={target_over!r} in the config is not accepted; accepted: image (target_ci '
                'per image) or images (target_ci for each curve over its num_images images)')
    inter_kwargs['target_ci'] = per_image_target(inter_kwargs['target_ci'], inter_kwargs['num_images'], target_over)
    design = InteractionSettings(grid=inter_kwargs['grid'], num_pairs=inter_kwargs['pairs'],
                                 num_contexts=inter_kwargs['contexts'], ratios=tuple(inter_kwargs['ratios']),
                                 target_ci=inter_kwargs['target_ci'], baseline=inter_kwargs['baseline'])
    for name in rows:  # cached results of another design: said now, not after hours of training
        try:
            for cache in [os.path.join(args.out, name, 'interaction.csv')] + [
                    os.path.join(args.out, name, f'seed{seed}', 'interaction.csv') for seed in budget.seeds[1:]]:
                check_interaction_cache(cache, design)
        except ValueError as error:
            p.error(str(error))
    for flag, seeds in (('--seeds', args.seeds), ('--curve-seeds', args.curve_seeds)):
        if seeds and set(seeds) - set(budget.seeds):
            p.error(f'{flag} {sorted(set(seeds) - set(budget.seeds))}: not in the config; accepted: {budget.seeds}')
    budget_dict = {k: v for k, v in budget.__dict__.items()}
    jobs = [TrainJob(os.path.join(args.out, name, f'seed{seed}'), budget_dict, seed, switches)
            for name, switches in rows.items() for seed in (args.seeds or budget.seeds)]
    failed = run_jobs(jobs, options, os.path.join(args.out, 'jobs'))
    if options.executor == 'slurm' and any(not os.path.isfile(os.path.join(j.run_dir, 'results.yaml')) for j in jobs):
        return  # submitted; run again once the array is done
    table, frames, missing, per_seed = [], [], [], {}
    for name, switches in rows.items():
        accs, speeds, walls = [], [], []
        for seed in budget.seeds:
            results = os.path.join(args.out, name, f'seed{seed}', 'results.yaml')
            if not os.path.isfile(results):
                missing.append(f'{name}/seed{seed}')
                continue
            with open(results) as f:
                r = yaml.safe_load(f)
            accs.append(100 * r['test/acc1'])
            speeds.append(r['train_images_per_second'])
            walls.append(r.get('wall_seconds', float('nan')))
            per_seed[(name, seed)] = r
        first = reported_checkpoint(os.path.join(args.out, name, f'seed{budget.seeds[0]}'))
        # curves on later seeds' checkpoints (--curve-seeds; each (row, seed) call computes its own seed's)
        for seed in args.curve_seeds:
            run = os.path.join(args.out, name, f'seed{seed}')
            if seed == budget.seeds[0] or (args.seeds and seed not in args.seeds) or not os.path.isfile(
                    os.path.join(run, 'results.yaml')):
                continue
            try:
                interaction_of_checkpoints({name: reported_checkpoint(run)},
                                           cache=os.path.join(run, 'interaction.csv'), wall_times=args.out,
                                           **inter_kwargs)
            except FileNotFoundError as error:
                p.exit(2, f'{p.prog}: error: row {name!r} seed {seed}: curves unfinished and {error}\n')
        if not accs or not os.path.isfile(os.path.join(args.out, name, f'seed{budget.seeds[0]}', 'results.yaml')):
            continue
        if args.no_report and args.seeds and budget.seeds[0] not in args.seeds:
            continue  # the first seed's call computes this row's curves (two calls must not share one cache)
        # interaction on the first seed's checkpoint; every row uses the same test images, pairs and contexts
        # (they depend on the seed and the data only); cached per row
        try:
            frames.append(interaction_of_checkpoints({name: first}, cache=os.path.join(args.out, name, 'interaction.csv'),
                                                     wall_times=args.out, **inter_kwargs))
        except FileNotFoundError as error:  # e.g. a fresh clone: results.yaml committed, curves unfinished, no checkpoint
            p.exit(2, f'{p.prog}: error: row {name!r}: curves unfinished and {error}; delete '
                      f'{os.path.join(args.out, name, f"seed{budget.seeds[0]}")} to train that seed again\n')
        interaction_wall = wall_time(args.out, 'interaction')  # (added per image: a stopped run loses nothing)
        if args.no_report:
            continue
        model_cfg = ModelConfig(name=budget.model, **{k: tuple(v) if isinstance(v, list) else v
                                                      for k, v in switches.items()})
        params, macs = count_params_macs(model_cfg, image_size=budget.image_size or 28)
        table.append(dict(row=name, switches=', '.join(f'{k}={v}' for k, v in switches.items()) or '(paper default)',
                          params_M=params / 1e6, MMACs=macs / 1e6, top1_mean=float(np.mean(accs)),
                          top1_spread=float(np.std(accs, ddof=1)) if len(accs) > 1 else float('nan'),
                          seeds=len(accs), train_images_per_s=float(np.mean(speeds)),
                          wall_min=float(np.sum(walls)) / 60))
    if args.no_report:  # no tables: check again (a row's curves take minutes; another job may have finished a seed)
        missing = [m for m in missing if not os.path.isfile(os.path.join(args.out, m, 'results.yaml'))]
    if missing:
        print(f'[ablate] not finished (left out of the tables; run the command again to resume them): '
              f'{", ".join(missing)}' + (f'; failed jobs: {", ".join(failed)} (logs in {args.out}/jobs)' if failed else ''),
              file=sys.stderr)
    if args.no_report or not table:
        return
    frame = pd.concat(frames, ignore_index=True)
    curve = strength_curve(frame)
    flat = flat_middle_share(curve, *band)
    result = pd.DataFrame(table)
    share_col = f'middle_share_{band[0]:g}-{band[1]:g}n'
    intervals = middle_share_interval(frame, 'mean-abs', *band).set_index('model')  # 95 % bootstrap over images
    result[share_col] = result.row.map(intervals.share)
    result[f'{share_col}_ci_low'] = result.row.map(intervals.ci_low)
    result[f'{share_col}_ci_high'] = result.row.map(intervals.ci_high)
    rms = middle_share_interval(frame, 'rms', *band).set_index('model')  # the other statistic, beside it
    result[f'{share_col}_rms'] = result.row.map(rms.share)
    os.makedirs(args.out, exist_ok=True)
    atomic_write_csv(os.path.join(args.out, 'ablation.csv'), result)
    atomic_write_csv(os.path.join(args.out, 'curve.csv'), curve)
    atomic_write_csv(os.path.join(args.out, 'interaction.csv'), frame)   # the tidy per-image table of every row
    # one line per (row, seed): what other scripts read (first column the row, a seed column, top-1 in percent)
    atomic_write_csv(os.path.join(args.out, 'accuracy.csv'), pd.DataFrame([
        dict(row=name, seed=seed, test_top1=round(100 * r['test/acc1'], 2), test_top5=round(100 * r['test/acc5'], 2),
             train_images_per_s=r['train_images_per_second'], wall_min=round(r.get('wall_seconds', float('nan')) / 60, 1),
             machine=r.get('machine', 'not recorded'), threads=r.get('threads'))
        for (name, seed), r in per_seed.items() if name in set(result.row)]))
    shown = result.copy()
    shown['top-1 (%)'] = [f'{m:.2f} ± {s:.2f}' if s == s else f'{m:.2f}' for m, s in zip(result.top1_mean,
                                                                                        result.top1_spread)]
    shown['middle share (95 % CI)'] = [f'{v:.3f} ({lo:.3f}-{hi:.3f})' for v, lo, hi in zip(
        result[share_col], result[f'{share_col}_ci_low'], result[f'{share_col}_ci_high'])]
    shown['rms'] = result[f'{share_col}_rms'].map(lambda v: f'{v:.3f}')
    shown = shown[['row', 'switches', 'params_M', 'MMACs', 'seeds', 'top-1 (%)', 'train_images_per_s',
                   'middle share (95 % CI)', 'rms']]
    md = (f'MogaNet-XT ablations on Fashion-MNIST: {budget.describe_epochs()}, batch {budget.batch_size}, '
          f'lr {budget.lr}, {budget.image_size or 28} px, '
          f'seeds {budget.seeds}; top-1 = mean ± sample std over seeds; middle share = fraction of the normalised '
          f'interaction strength in orders {band[0]:g}n-{band[1]:g}n ({frame.image_id.nunique()} test images, '
          f'{describe_contexts(frame)}; baseline {frame.baseline.iloc[0]}; strength: {STATISTIC_TEXT["mean-abs"]}, with '
          f'the root-mean-square beside it (column "rms"); a flat '
          f'curve gives {flat:.3f}; 95 % interval by bootstrap over the images); images/s as measured by each training '
          f'process (with whatever else ran on the machine at the time). {describe_precision(frame)}.\n\n'
          + shown.to_markdown(index=False, floatfmt='.3f') + '\n')
    if missing:  # a grid published while some of its (row, seed) runs still train says which ones the tables lack
        md += f'\nNot finished yet, so left out of every table and figure here: {", ".join(missing)}.\n'
    md += _claims(frame, result, band, budget.seeds[0])
    budget_text = (f'{budget.image_size or 28} px, {budget.describe_epochs()} at batch {budget.batch_size}, '
                   f'lr {budget.lr:g}')
    md += seed_tables(args.out, frame, budget.seeds, inter_kwargs['num_images'], band, 'full',
                      f'MogaNet-XT ablations: middle-order share on each training seed ({budget_text})', budget_text)
    machines = sorted({trained_on(r) for (name, _), r in per_seed.items() if name in set(result.row)})
    md += (f'\nTrained on: {"; ".join(machines)}. Wall time: training {result.wall_min.sum() / 60:.1f} h (summed over '
           f'the (row, seed) jobs), interactions {interaction_wall / 60:.0f} min (each image as it '
           f'finished, summed across resumed runs). {provenance("experiments/ablate.py", command)}\n\n'
           f'![interaction curves of every row ({frame.image_id.nunique()} test images, seed-{budget.seeds[0]} '
           f'checkpoints; {budget.image_size or 28} px, {budget.describe_epochs()} at batch {budget.batch_size}, '
           f'lr {budget.lr:g})]'
           f'(ablation_curves.png)\n')
    atomic_write_text(os.path.join(args.out, 'ablation.md'), md)
    title = (f'MogaNet-XT ablations: multi-order interaction strength\n{budget.image_size or 28} px, '
             f'{budget.describe_epochs()}, seed-{budget.seeds[0]} checkpoints')
    if curve.model.nunique() > 4:  # more overlapping bands than one axes can show: one panel per row
        labels = {name: f'{name}\n' + textwrap.fill(', '.join(f'{k}={v}' for k, v in sw.items()) or 'paper default', 34)
                  for name, sw in rows.items()}
        plot_interaction_panels(curve, os.path.join(args.out, 'ablation_curves.png'), title=title, middle_band=band,
                                labels=labels)
    else:
        plot_interaction_curves(curve, os.path.join(args.out, 'ablation_curves.png'), title=title, middle_band=band)
    print(md)
    print(f'wrote {args.out}/ablation.csv, ablation.md, ablation_curves.png, accuracy.csv, interaction.csv, curve.csv')
    if args.publish:
        print(f'published {", ".join(publish_artefacts(args.out, args.publish))} to {args.publish}')
    _record(store, args, budget, rows, result, per_seed, band, frame)


def _claims(frame, result, band, seed) -> str:
    """The paper's claim (gating and channel aggregation raise middle-order interactions), tested row by row against
    'full' with a paired bootstrap over the shared images of the ``seed`` checkpoints: does removing the part lower
    the middle share?"""
    rows = list(result.row)
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
        verdict = ('yes: full higher' if d['ci_low'] > 0 else 'yes: full lower' if d['ci_high'] < 0
                   else 'no (interval contains 0)')
        lines.append(f"| {row} | {d['difference']:+.3f} | {d['ci_low']:+.3f} to {d['ci_high']:+.3f} | {verdict} | "
                     f"{other['difference']:+.3f} |")
    return '\n'.join(lines) + '\n'


def _record(store, args, budget, rows, result, per_seed, band, frame):
    """Each row an MLflow run (switches and budget as parameters; top-1 mean/spread, middle share, images/s, wall
    time as metrics), its seeds child runs, and the study's tables and figure on a summary run."""
    if store is None:
        return
    share_col = f'middle_share_{band[0]:g}-{band[1]:g}n'
    common = dict(model=budget.model, epochs=budget.epochs, batch_size=budget.batch_size, lr=budget.lr,
                  image_size=budget.image_size or 28, limit_train_batches=budget.limit_train_batches,
                  seeds=budget.seeds, out=os.path.abspath(args.out), interaction=describe_contexts(frame))
    for r in result.to_dict('records'):
        name, switches = r['row'], rows[r['row']]
        metrics = {k: r[k] for k in ('top1_mean', 'top1_spread', 'train_images_per_s', 'wall_min', 'params_M', 'MMACs')}
        metrics.update(middle_share=r[share_col], middle_share_ci_low=r[f'{share_col}_ci_low'],
                       middle_share_ci_high=r[f'{share_col}_ci_high'])
        parent = safe_record(store, f'{args.out}:{name}', {**common, **{f'switch.{k}': v for k, v in switches.items()}},
                             metrics, name=name, tags=dict(row=name, study='ablation'))
        for seed in budget.seeds:
            res = per_seed.get((name, seed))
            if res is None or parent is None:
                continue
            run_dir = os.path.join(args.out, name, f'seed{seed}')
            safe_record(store, f'{args.out}:{name}:seed{seed}', {**common, 'seed': seed},
                        {'top1': 100 * res['test/acc1'], 'top5': 100 * res.get('test/acc5', float('nan')),
                         'train_images_per_s': res['train_images_per_second'],
                         'wall_min': res.get('wall_seconds', float('nan')) / 60},
                        artifacts=[os.path.join(run_dir, 'config.yaml'), os.path.join(run_dir, 'results.yaml'),
                                   os.path.join(run_dir, 'learning_curve.png')],
                        parent_run_id=parent, name=f'{name} seed {seed}', tags=dict(row=name, seed=seed))
    safe_record(store, f'{args.out}:summary', common, {'rows': len(result)},
                artifacts=[os.path.join(args.out, n) for n in ('ablation.csv', 'ablation.md', 'ablation_curves.png',
                                                               'curve.csv', 'accuracy.csv', 'seed_shares.csv',
                                                               'seed_shares.png')] + [args.config],
                name='summary', tags=dict(study='ablation'))
    print(f'recorded {len(result)} rows in {store.uri} (experiment {store.experiment!r}); browse: mlflow ui '
          f'--backend-store-uri {store.uri}')


if __name__ == '__main__':
    main()
