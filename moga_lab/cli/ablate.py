"""The paper's ablations at Fashion-MNIST scale: one row per MogaNet-XT variant, one budget, several seeds.

    moga-ablate [--config FILE.yaml] [--out runs/ablation] [--quick]

Rows (the default config, ``moga_lab/studies/configs/ablation.yaml``): full; no gating branch; gate activation
sigmoid / GELU; dilations (1,1,1); channel splits 1:0:0 and 1:1:1; no FD; no CA; no FD + no CA + no gating (the
plain baseline). Columns: parameters, MACs (torch's FlopCounterMode, at the budget's image size), test top-1 (mean
and spread over seeds), training images/s, and the share of interaction strength in the middle orders (0.2n-0.6n
by default) from the interaction tool on the seed-0 checkpoint, all rows on the same images, pairs and contexts.
``--curve-seeds 1 2`` also computes the curves
on those seeds' checkpoints: the report then gives each row's middle share per seed and full minus each row on every
seed and across seeds (``seed_shares.csv``, ``interaction_seeds.csv``; `moga_lab.analysis.seeds`).

Writes ``<out>/ablation.csv`` (a row per variant), ``ablation.md``, ``ablation_curves.png``, ``accuracy.csv`` (a line
per
(row, seed)), ``interaction.csv`` (the tidy per-image table) and ``curve.csv``, and records every row
(seeds as child runs) in the MLflow study store (``runs/mlflow.db`` unless ``--tracking-uri``; see
moga_lab/utils/tracking.py). Every (row, seed) trains in its own run directory: a stopped run resumes where it stopped.
``--executor local --concurrency 2`` runs the (row, seed) jobs as separate processes (one thread each on 2 cores),
``--executor slurm`` submits them as a job array (moga_lab.studies.jobs); the report is written from whatever finished
and names what is missing. ``--quick`` uses the package's ``studies/configs/quick.yaml`` (minutes; used by the tests).
"""
import argparse
import os
import sys
from typing import List, Optional

from moga_lab.cli.common import fail
from moga_lab.studies.ablation import (DEFAULT_CONFIG, QUICK_CONFIG, AblationError, check_before_training,
                                       load_ablation, run_ablation)
from moga_lab.studies.jobs import EXECUTORS, JobOptions, SchedulerError
from moga_lab.utils.tracking import TrackingError, add_tracking_arguments, open_study_store

__all__ = ['build_parser', 'main']


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='moga-ablate', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--config', default=DEFAULT_CONFIG)
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
    p.add_argument('--design', choices=('fixed', 'shared'), default=None,
                   help="interaction design, over the config's interaction.design: fixed (the authors') or shared "
                        '(one drawn context serves every pair that can use it)')
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
    return p


def main(argv: Optional[List[str]] = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    command = sys.argv[1:] if argv is None else list(argv)  # stated in the report
    if args.publish and os.path.exists(args.publish) and not os.path.isdir(args.publish):
        fail(p.prog, f'--publish {args.publish}: a file is there; accepted: a folder (created if missing)')
    options = JobOptions(args.executor, args.concurrency, args.threads, args.partition, args.time, args.gpus,
                         array_parallelism=args.array_parallelism)
    try:
        options.check()  # a scheduler, config or cache that is not right: one line before any work
        plan = load_ablation(QUICK_CONFIG if args.quick else args.config, args.rows, args.data_dir)
        if args.design and plan.interaction.get('target_ci') is None:
            plan.interaction['design'] = args.design
        check_before_training(plan, args.out, args.seeds, args.curve_seeds)
        store = None if args.no_report else open_study_store(args.tracking_uri, args.experiment, not args.no_tracking)
        result = run_ablation(plan, args.out, options, args.seeds, args.curve_seeds, report=not args.no_report,
                              publish=args.publish, store=store, script='experiments/ablate.py', command=command)
    except (AblationError, SchedulerError, TrackingError) as error:
        fail(p.prog, str(error))
    if result.missing:
        print('[ablate] not finished (left out of the tables; run the command again to resume them): '
              f'{", ".join(result.missing)}' + (f'; failed jobs: {", ".join(result.failed)} (logs in '
                                               f'{args.out}/jobs)' if result.failed else ''), file=sys.stderr)
    if result.report:
        print(result.report)
        print(f'wrote {args.out}/{", ".join(result.written)}')
    if result.published:
        print(f'published {", ".join(result.published)} to {args.publish}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
