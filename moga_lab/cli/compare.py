"""MogaNet vs ConvNeXt vs Swin: interaction curves, Grad-CAM and top-1 of several models on the same images.

Trained here, with the same budget on Fashion-MNIST::

    python analysis/compare_models.py [--models moganet_xtiny convnext_atto swin_femto] [--epochs 2]
                                      [--out runs/compare] [--quick]

Released ImageNet weights at 224 px (the paper's setting), nothing trained::

    python analysis/compare_models.py --model moganet_small --weights moganet_small_sz224_8xbs128_ep300.pth.tar \
        --model convnext_small --weights convnext_small.pth --model swin_small_patch4_window7_224 --weights swin_s.pth \
        --data-dir IMAGENET --num-images 50 --one-per-class --target-ci 0.05 --out runs/compare_in1k

(``--checkpoint FILE`` instead of ``--model/--weights`` compares fit checkpoints without training.) Training is
resumable (a run directory that already holds results.yaml is reused, so the runs of benchmarks/fit_fashion_mnist.py
can be pointed at with --out). Each trained model is analysed as soon as it is trained and its results are kept in
its run folder (``<out>/<model>/interaction.csv``, cached per image, and ``analysis.pt``: Grad-CAM maps and the
per-image mass on the garment), so the report needs no checkpoint: the models of one comparison can be trained on
different days or machines (``--only``). Writes to ``<out>``:
``accuracy.csv``, interaction curves with 95 % bootstrap bands on the same images / pairs / contexts
(``interaction.csv``, ``curve.csv``, ``interaction_curves.png``), a Grad-CAM grid (``gradcam_grid.png``),
``gradcam.csv`` (per model and image: the share of the Grad-CAM mass on the garment), ``images.csv`` and
``report.md`` tying them together.

``--train-seeds 1 2`` also trains each model on those training seeds (``<out>/<model>/seed<S>/``) and computes its
curves there, on the same images, pairs and design: one checkpoint per model says nothing about how much a model's
middle share moves from one training seed to the next. The report then adds each model's top-1 and middle share per
seed and the first model minus each other on every seed and across seeds (over seeds and images;
``interaction_seeds.csv``, ``seed_shares.csv``, ``seed_shares.png``), and ``accuracy.csv`` a line per (model, seed).
"""
import argparse
import dataclasses
import os
import sys
from typing import List, Optional

from moga_lab.analysis.game import BASELINES
from moga_lab.analysis.tables import STATISTICS
from moga_lab.cli.common import (MIN_IMAGE_SIZE, add_model_arguments, fail, int_at_least, model_sources,
                                 positive_float, unit_fraction, user_errors)
from moga_lab.studies.comparison import ComparisonSpec, run_comparison
from moga_lab.utils.tracking import TrackingError, add_tracking_arguments, open_study_store

__all__ = ['build_parser', 'main']


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='moga-compare', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--models', nargs='+', default=['moganet_xtiny', 'convnext_atto', 'swin_femto'],
                   help='models to train and compare (when no --checkpoint / --weights is given)')
    add_model_arguments(p)
    p.add_argument('--epochs', type=int_at_least(1), default=2)
    p.add_argument('--batch-size', type=int_at_least(1), default=64)
    p.add_argument('--lr', nargs='+', default=['2e-3'], metavar='LR|NAME=LR',
                   help='learning rate for every model, or per model (e.g. moganet_xtiny=4e-3 convnext_atto=2e-3; '
                        'models not named take 2e-3)')
    p.add_argument('--image-size', type=int_at_least(MIN_IMAGE_SIZE), default=None,
                   help='train and analyse at this size (Fashion-MNIST resized, bicubic; default its 28 px)')
    p.add_argument('--limit-train-batches', type=positive_float, default=None,
                   help='fraction of the training set per epoch (default: all of it)')
    p.add_argument('--drop-path', type=unit_fraction, default=0.05, help='stochastic depth rate for every model')
    p.add_argument('--seed', type=int, default=0, help='training seed of the compared runs, and the seed that draws '
                   'the test images, pairs and contexts')
    p.add_argument('--train-seeds', nargs='+', type=int, default=[], metavar='S',
                   help='models trained here: also train each model on these training seeds (<out>/<model>/seed<S>/) '
                        'and compute its curves on the same images, pairs and design (no Grad-CAM); with --only, '
                        'just those models. The report reads every finished seed folder without it')
    p.add_argument('--out', default='runs/compare')
    p.add_argument('--note', help='a paragraph for the report, under its title (e.g. why a model of the study is '
                   'not in this report)')
    p.add_argument('--publish', metavar='DIR', help='also copy the tables, report and figures (not checkpoints) to DIR, '
                   'e.g. docs/studies/compare')
    p.add_argument('--num-images', type=int_at_least(1), default=8, help='images for the interaction curves')
    p.add_argument('--gradcam-images', type=int_at_least(1), default=6)
    p.add_argument('--cam-images', type=int_at_least(2), default=None,
                   help='models trained here: test images for the Grad-CAM mass on the garment (with its interval); '
                        'default 256, --quick: 8')
    p.add_argument('--only', nargs='+', metavar='MODEL',
                   help='train and analyse only these of --models now and write no report (e.g. one model per '
                        'process or per machine); a later run without --only writes the report from what they cached')
    p.add_argument('--quick', action='store_true', help='a few steps per model and a tiny interaction budget')
    p.add_argument('--data-dir', default=None, help='Fashion-MNIST folder, or the ImageFolder for --weights')
    p.add_argument('--target-ci', type=positive_float, default=None,
                   help='interaction precision mode: contexts until every order\'s 95 %% interval is within this '
                        'fraction of its value (default: the fixed budget)')
    p.add_argument('--target-over', choices=('image', 'images'), default='image',
                   help='--target-ci per image (default) or for each curve over the --num-images images (each image '
                        'then needs sqrt(N) x less precision; the precision reached is in the report)')
    p.add_argument('--max-forwards', type=int, default=None,
                   help='precision mode: cap on masked forward passes per image (default: the fixed design\'s cost)')
    p.add_argument('--design', choices=('fixed', 'shared'), default='fixed',
                   help="interaction design: fixed (the authors') or shared (one drawn context serves every pair "
                        'that can use it; see moga-interaction --help); --target-ci chooses the precision mode')
    p.add_argument('--share', type=int, default=None, help='shared design: pairs per group that share draws (default all)')
    p.add_argument('--grid', type=int, help='patch grid (default 7 at 28 px, 14 at 224 px)')
    p.add_argument('--pairs', type=int, help='pairs per image (default 12 trained here, 50 for --weights)')
    p.add_argument('--contexts', type=int, help='contexts per pair and order (default 12 trained here, 50 for --weights)')
    p.add_argument('--ratios', type=lambda v: tuple(float(r) for r in v.split(',')), default=None,
                   help="order ratios m/(n-2), comma-separated (default the authors' 13)")
    p.add_argument('--bf16', action='store_true', help='bf16 autocast for the masked forward passes (2x faster on '
                   'AVX-512-bf16 / AMX CPUs; see docs/interaction.md)')
    p.add_argument('--statistic', choices=tuple(STATISTICS), default='mean-abs',
                   help="curve statistic: mean-abs (mean |I|, the paper's estimand, noise removed; default), rms "
                        "(root-mean-square of I, noise removed) or naive (the authors' "
                        'mean |I| as computed); the middle share under the other noise-removed statistic is reported '
                        'beside it')
    p.add_argument('--baseline', choices=BASELINES, default='zero',
                   help="what masked patches show: zero (the mean colour, the authors'; default), pixel-mean (each "
                        "pixel's mean over the training split), black, blur")
    add_tracking_arguments(p, 'compare')
    return p


def main(argv: Optional[List[str]] = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.publish and os.path.exists(args.publish) and not os.path.isdir(args.publish):
        fail(p.prog, f'--publish {args.publish}: a file is there; accepted: a folder (created if missing)')
    try:
        spec = ComparisonSpec(**{f.name: getattr(args, f.name) for f in dataclasses.fields(ComparisonSpec)
                                 if f.name not in ('sources', 'argv', 'store')},
                              sources=model_sources(args) if args.sources else [],
                              argv=sys.argv[1:] if argv is None else list(argv))  # the exact command, in the report
        spec.check()
        spec.store = open_study_store(args.tracking_uri, args.experiment, not args.no_tracking)
        result = run_comparison(spec)
    except (TrackingError,) + user_errors() as error:
        fail(p.prog, str(error))
    if result.missing:
        print(f'[compare] not analysed yet (the report waits for them): {", ".join(result.missing)}', file=sys.stderr)
    if result.report:
        print(result.accuracy.to_markdown(index=False))
        print(f'wrote {result.report}')
    if result.published:
        print(f'published {", ".join(result.published)} to {args.publish}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
