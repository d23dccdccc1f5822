"""``moga-compare``: write the study file of a model comparison for ``moga-study`` (`moga_lab.studies.generate`).

    moga-compare --models moganet_xtiny convnext_atto swin_femto --seeds 0 1 2 3 4 --study experiments/studies/mine.yaml
    moga-study run experiments/studies/mine.yaml --until 18:00     # resumable; status, export / import, publish

Each model's learning rate is chosen on the validation split (``moga-sweep`` over ``--lrs``), it is trained on every
seed, its interaction curves are computed on the same test images, pairs and contexts for every model and seed, and
Grad-CAM on the first seed's checkpoints; ``moga-study publish`` gathers the tables, evaluates a claims registry on them
and renders the report. ``--run`` starts the study at once (inline). Released weights are compared with
``moga-validate``, ``moga-interaction`` and ``moga-gradcam`` on the same images (each takes several --model/--weights).
"""
import argparse
import sys
from typing import List, Optional

from moga_lab.cli.common import Parser, fail, int_at_least, positive_float, unit_fraction

REMOVED = {'--weights': 'released weights: moga-validate, moga-interaction and moga-gradcam take --model/--weights',
           '--train-seeds': '--seeds (every model is trained and analysed on each)',
           '--publish': 'moga-study publish STUDY.yaml --to DIR', '--only': 'moga-study run STUDY.yaml --only UNITS',
           '--out': '--units-dir (the units\' folders) or moga-study publish --to', '--quick': 'small --epochs, '
           '--limit-train-batches and --num-images', '--lr': '--lrs (one rate: no sweep)',
           '--target-ci': '--design (fixed or shared)', '--seed': '--seeds'}
"""Options of the comparison driver this command replaced, and what does their job now."""


def build_parser() -> Parser:
    p = Parser(prog='moga-compare', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--models', nargs='+', default=['moganet_xtiny', 'convnext_atto', 'swin_femto'],
                   help='timm names; the first is the reference of the report')
    p.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2, 3, 4], help='training seeds')
    p.add_argument('--epochs', type=int_at_least(1), default=2)
    p.add_argument('--batch-size', type=int_at_least(1), default=128)
    p.add_argument('--lrs', nargs='+', type=positive_float, default=[1e-3, 2e-3, 4e-3],
                   help='the learning rates the validation split chooses from (one: that rate)')
    p.add_argument('--limit-train-batches', type=positive_float, default=1.0,
                   help='fraction (<= 1) or number of training batches per epoch')
    p.add_argument('--drop-path', type=unit_fraction, default=0.0)
    p.add_argument('--num-images', type=int_at_least(1), default=32, help='test images of the interaction curves')
    p.add_argument('--pairs', type=int_at_least(1), default=20)
    p.add_argument('--contexts', type=int_at_least(1), default=8)
    p.add_argument('--design', choices=('fixed', 'shared'), default='fixed', help='the interaction design')
    p.add_argument('--grid', type=int_at_least(1), help='patch grid (default: the image size\'s)')
    p.add_argument('--cam-images', type=int_at_least(2), default=256, help='test images of the Grad-CAM mass')
    p.add_argument('--data', help='data set (default Fashion-MNIST)')
    p.add_argument('--data-dir')
    p.add_argument('--name', default='compare', help='the study\'s name and its published folder')
    p.add_argument('--units-dir', help='the units\' folders (default runs/studies/NAME)')
    p.add_argument('--registry', help='a claims registry publish evaluates on the tables')
    p.add_argument('--title', help='the report\'s title')
    p.add_argument('--tracking-uri', help='an MLflow store every training logs to and every curve records to')
    p.add_argument('--study', required=True, metavar='FILE', help='the study file to write (YAML)')
    p.add_argument('--run', action='store_true', help='then run it here (inline; moga-study run resumes it later)')
    return p


def refuse_removed(prog: str, argv: List[str], removed) -> None:
    """One line naming the replacement of an option the study drivers had."""
    for token in argv:
        key = token.split('=', 1)[0]
        if key in removed:
            fail(prog, f'{key} is no longer an option: this command writes a study file for moga-study; use '
                       f'{removed[key]}')


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = build_parser()
    refuse_removed(p.prog, argv, REMOVED)
    args = p.parse_args(argv)
    from moga_lab.studies.generate import comparison_study, write_and_run
    from moga_lab.studies.runner import StudyError
    try:
        study = comparison_study(args.models, args.seeds, args.epochs, args.batch_size, args.lrs,
                                 args.limit_train_batches, args.drop_path, args.num_images, args.pairs, args.contexts,
                                 args.design, args.grid, None, args.cam_images, args.data, args.data_dir, args.name,
                                 args.units_dir or f'runs/studies/{args.name}', args.registry, args.title,
                                 tracking_uri=args.tracking_uri)
        return write_and_run(study, args.study, args.run)
    except StudyError as error:
        fail(p.prog, str(error))
    return 0


if __name__ == '__main__':
    sys.exit(main())
