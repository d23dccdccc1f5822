"""``moga-ablate``: write the study file of the paper's ablation grid for ``moga-study``
(`moga_lab.studies.generate`).

    moga-ablate [--config FILE.yaml] [--rows full no_gating ...] [--seeds 0 1 2] --study experiments/studies/mine.yaml
    moga-study run experiments/studies/mine.yaml --until 18:00

Rows (the default config, ``moga_lab/studies/configs/ablation.yaml``): full; no gating branch; gate activation
sigmoid / GELU; dilations (1,1,1); channel splits 1:0:0 and 1:1:1; no FD; no CA; no FD + no CA + no gating (the
plain baseline). Every row is MogaNet changed by its switches, trained on every seed at one recipe (the config's
``budget``), its interaction curves on the same images, pairs and contexts (the config's ``interaction``);
``moga-study publish`` gathers accuracy, curves and configs and renders the report. ``--quick`` writes the
minutes-long grid of ``studies/configs/quick.yaml``. ``--run`` starts the study at once (inline).
"""
import argparse
import os
import sys
from typing import Any, Dict, List, Optional

from moga_lab.cli.common import Parser, fail
from moga_lab.cli.compare import refuse_removed

__all__ = ['build_parser', 'main', 'DEFAULT_CONFIG', 'QUICK_CONFIG']

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'studies', 'configs')
DEFAULT_CONFIG = os.path.join(CONFIGS, 'ablation.yaml')
"""The paper's grid at Fashion-MNIST scale."""
QUICK_CONFIG = os.path.join(CONFIGS, 'quick.yaml')
"""The same rows at a minutes-long budget."""
REMOVED = {'--out': '--units-dir (the units\' folders) or moga-study publish --to',
           '--publish': 'moga-study publish STUDY.yaml --to DIR',
           '--curve-seeds': '--seeds (every row\'s curves are computed on every seed)',
           '--executor': 'moga-study run STUDY.yaml --executor inline|local|slurm',
           '--concurrency': 'moga-study run STUDY.yaml --executor local --concurrency N',
           '--partition': 'moga-study run STUDY.yaml --executor slurm --partition P', '--no-report': 'moga-study run',
           '--array-parallelism': 'moga-study run STUDY.yaml --executor slurm'}
"""Options of the ablation driver this command replaced, and what does their job now."""
_BUDGET = {'model', 'epochs', 'batch_size', 'lr', 'lr_from', 'seeds', 'limit_train_batches', 'drop_path',
           'limit_test_batches'}
_INTERACTION = {'num_images', 'grid', 'pairs', 'contexts', 'ratios', 'middle_band', 'design'}


def build_parser() -> Parser:
    p = Parser(prog='moga-ablate', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--config', default=DEFAULT_CONFIG, help='rows, budget and interaction design (YAML)')
    p.add_argument('--quick', action='store_true', help='the minutes-long grid of configs/quick.yaml')
    p.add_argument('--rows', nargs='+', help='only these rows (names in the config)')
    p.add_argument('--seeds', nargs='+', type=int, help="training seeds (default: the config's budget's)")
    p.add_argument('--design', choices=('fixed', 'shared'), default=None,
                   help="interaction design, over the config's interaction.design")
    p.add_argument('--data', help='data set (default Fashion-MNIST)')
    p.add_argument('--data-dir', default=None, help='the data set\'s folder')
    p.add_argument('--name', default='ablation', help='the study\'s name and its published folder')
    p.add_argument('--units-dir', help='the units\' folders (default runs/studies/NAME)')
    p.add_argument('--registry', help='a claims registry publish evaluates on the tables')
    p.add_argument('--tracking-uri', help='an MLflow store every training logs to and every curve records to')
    p.add_argument('--study', required=True, metavar='FILE', help='the study file to write (YAML)')
    p.add_argument('--run', action='store_true', help='then run it here (inline; moga-study run resumes it later)')
    return p


def read_config(path: str) -> Dict[str, Any]:
    """An ablation config (``budget``, ``interaction``, ``rows``), checked; a StudyError names a bad key."""
    import yaml

    from moga_lab.studies.spec import StudyError
    try:
        with open(path) as f:
            cfg = yaml.safe_load(f) or {}
    except OSError as error:
        raise StudyError(f'cannot read ablation config {path}: {error.strerror}') from None
    for section, known in (('budget', _BUDGET), ('interaction', _INTERACTION)):
        unknown = sorted(set(cfg.get(section) or {}) - known)
        if unknown:
            raise StudyError(f'{path}: {section}: unknown keys {unknown}; accepted: {", ".join(sorted(known))}')
    if not cfg.get('rows'):
        raise StudyError(f'{path}: no rows; accepted: rows: {{name: {{switch: value}}}}')
    return cfg


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = build_parser()
    refuse_removed(p.prog, argv, REMOVED)
    args = p.parse_args(argv)
    from moga_lab.studies.generate import ablation_study, write_and_run
    from moga_lab.studies.runner import StudyError
    try:
        cfg = read_config(QUICK_CONFIG if args.quick else args.config)
        rows = cfg['rows']
        if args.rows:
            unknown = [r for r in args.rows if r not in rows]
            if unknown:
                raise StudyError(f'--rows {unknown} are not in the config; accepted: {", ".join(rows)}')
            rows = {r: rows[r] for r in args.rows}
        b, i = cfg.get('budget') or {}, cfg.get('interaction') or {}
        study = ablation_study(rows, b.get('model', 'moganet_xtiny'), args.seeds or b.get('seeds', [0, 1]),
                               b.get('epochs', 2), b.get('batch_size', 64), float(b.get('lr', 2e-3)), b.get('lr_from'),
                               b.get('limit_train_batches') or 1.0, b.get('drop_path', 0.0), i.get('num_images', 32),
                               i.get('pairs', 20), i.get('contexts', 8), args.design or i.get('design', 'fixed'),
                               i.get('grid'), i.get('ratios'), args.data, args.data_dir, args.name,
                               args.units_dir or f'runs/studies/{args.name}', args.registry,
                               tracking_uri=args.tracking_uri)
        return write_and_run(study, args.study, args.run)
    except StudyError as error:
        fail(p.prog, str(error))
    return 0


if __name__ == '__main__':
    sys.exit(main())
