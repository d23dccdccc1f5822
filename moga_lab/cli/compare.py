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
seed and the first model minus each other on every seed and across seeds (Welch over the seeds' shares;
``interaction_seeds.csv``, ``seed_shares.csv``, ``seed_shares.png``), and ``accuracy.csv`` a line per (model, seed).
"""
import argparse
import dataclasses
import os
import sys
import types

import pandas as pd
import torch
import yaml


from moga_lab.cli.common import (MIN_IMAGE_SIZE, add_model_arguments, fail, int_at_least, model_sources,
                          positive_float, unit_fraction, user_errors)
from moga_lab.analysis.games import (BASELINES, STATISTICS, STATISTIC_TEXT, describe_contexts,
                                     describe_precision, resolve_statistic, flat_middle_share, InteractionSettings,
                                     default_settings, middle_share_interval, per_image_target, strength_curve)
from moga_lab.analysis.gradcam import (explained_layer, grad_cam, mass_inside, mass_summary,
                                       plot_gradcam_grid)
from moga_lab.analysis.plots import plot_interaction_curves

from moga_lab.loaders import load_classifier, load_eval_images, load_models, write_image_list
from moga_lab.studies.common import (Budget, check_interaction_cache, count_params_macs,
                              finished_interaction, interaction_of_models, provenance, publish_artefacts,
                              reported_checkpoint, seed_tables, shared_from, train_variant, trained_on, wall_time)
from moga_lab.utils.tracking import TrackingError, add_tracking_arguments, open_study_store, safe_record
from moga_lab.models.factory import SMALL_IMAGE_MAX
from moga_lab.training import ModelConfig
from moga_lab.utils.atomic import atomic_write_csv, atomic_write_text


FAMILIES = {'moganet': 'MogaNet', 'convnext': 'ConvNeXt', 'swin': 'Swin'}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    p.add_argument('--grid', type=int, help='patch grid (default 7 at 28 px, 14 at 224 px)')
    p.add_argument('--pairs', type=int, help='pairs per image (default 12 trained here, 50 for --weights)')
    p.add_argument('--contexts', type=int, help='contexts per pair and order (default 12 trained here, 50 for --weights)')
    p.add_argument('--ratios', type=lambda v: tuple(float(r) for r in v.split(',')), default=None,
                   help="order ratios m/(n-2), comma-separated (default the authors' 13)")
    p.add_argument('--bf16', action='store_true', help='bf16 autocast for the masked forward passes (2x faster on '
                   'AVX-512-bf16 / AMX CPUs; see docs/interaction.md)')
    p.add_argument('--statistic', choices=tuple(STATISTICS) + ('debiased',), default='mean-abs',
                   help="curve statistic: mean-abs (mean |I|, the paper's estimand, noise removed; default), rms "
                        "(root-mean-square of I, noise removed; 'debiased' is its older name) or naive (the authors' "
                        'mean |I| as computed); the middle share under the other noise-removed statistic is reported '
                        'beside it')
    p.add_argument('--baseline', choices=BASELINES, default='zero',
                   help="what masked patches show: zero (the mean colour, the authors'; default), pixel-mean (each "
                        "pixel's mean over the training split), black, blur")
    add_tracking_arguments(p, 'compare')
    return p, p.parse_args(argv)


def main(argv=None):
    parser, args = parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)  # the exact command, stated in the report
    if args.publish and os.path.exists(args.publish) and not os.path.isdir(args.publish):
        parser.error(f'--publish {args.publish}: a file is there; accepted: a folder (created if missing)')
    if args.sources and args.train_seeds:
        parser.error(f'--train-seeds {" ".join(map(str, args.train_seeds))}: trains the models again; accepted: no '
                     f'--train-seeds with --checkpoint or --model/--weights (nothing is trained there)')
    if args.seed in args.train_seeds:
        parser.error(f'--train-seeds {args.seed}: that is --seed, the compared runs\' own training seed; accepted: '
                     f'other seeds')
    if args.sources and args.cam_images is not None:  # the garment mask exists for Fashion-MNIST only
        parser.error(f'--cam-images {args.cam_images}: the Grad-CAM mass on the object (Fashion-MNIST garment masks) is '
                     f'computed for the models this script trains only; accepted: no --cam-images with --checkpoint '
                     f'or --model/--weights (their Grad-CAM grid shows --gradcam-images images)')
    try:
        args.store = open_study_store(args.tracking_uri, args.experiment, not args.no_tracking)
    except TrackingError as error:
        fail(os.path.basename(__file__), str(error))
    try:
        return compare_named(args) if args.sources else train_and_compare(args)
    except user_errors() as error:
        fail(os.path.basename(__file__), str(error))


def record(args, accuracy, frame, params):
    """Each compared model an MLflow run of the study store: the budget as parameters, its row of accuracy.csv as
    metrics, the study's report, tables and figures as artifacts of every run."""
    if args.store is None:
        return
    files = [os.path.join(args.out, n) for n in ('report.md', 'accuracy.csv', 'curve.csv', 'interaction_curves.png',
                                                 'gradcam_grid.png', 'images.csv', 'seed_shares.csv', 'seed_shares.png')]
    for row in accuracy.to_dict('records'):
        metrics = {k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        low, high = (float(x) for x in row['middle_share_95ci'].split('-'))
        metrics.update(middle_share_ci_low=low, middle_share_ci_high=high)
        model_params = {**params, 'model': row['model'], 'weights': row.get('weights', '')}
        safe_record(args.store, f'{os.path.abspath(args.out)}:{row["model"]}', model_params, metrics, artifacts=files,
                    name=row['model'], tags=dict(study='compare'))
    print(f'recorded {len(accuracy)} models in {args.store.uri} (experiment {args.store.experiment!r})')


def compare_named(args):
    """The paper's comparison on models the user named (released weights or fit checkpoints): nothing trained."""
    models = load_models(model_sources(args), args.label, use_ema=not args.no_ema, trust=args.trust_weights)
    data = None if models[0].is_fit_checkpoint else 'imagefolder'
    count = max(args.num_images, args.gradcam_images)
    ev = load_eval_images(models, count, data, args.data_dir, args.seed, per_class=args.one_per_class,
                          transform=args.eval_transform)
    n_inter = args.num_images
    settings = default_settings(ev.images.shape[-1])
    for key, value in (('grid', args.grid), ('num_pairs', args.pairs), ('num_contexts', args.contexts),
                       ('ratios', args.ratios), ('target_ci', args.target_ci), ('max_forwards', args.max_forwards)):
        if value is not None:
            setattr(settings, key, value)
    settings.bf16, settings.seed, settings.baseline = args.bf16, args.seed, args.baseline
    if args.quick:  # a smoke test of the whole pipeline, not a measurement
        settings.grid, settings.num_pairs, settings.num_contexts, settings.ratios = 4, 2, 2, (0.0, 0.3, 0.6, 1.0)
    settings.target_ci = per_image_target(settings.target_ci, n_inter, args.target_over)
    os.makedirs(args.out, exist_ok=True)
    write_image_list(os.path.join(args.out, 'images.csv'), ev.ids, ev.labels, ev.info, ev.paths)
    rows = []
    for m in models:
        with torch.no_grad():
            pred = torch.cat([m.model(ev.images[k:k + 16]) for k in range(0, len(ev.ids), 16)]).argmax(1)
        rows.append(dict(model=m.name, weights=m.source, params_M=round(sum(p.numel() for p in m.model.parameters()) / 1e6, 2),
                         top1_on_images=round(100 * float((pred == ev.labels).float().mean()), 1),
                         images=len(ev.ids)))
    accuracy = pd.DataFrame(rows)
    frame = interaction_of_models(models, ev.images[:n_inter], ev.labels[:n_inter], ev.ids[:n_inter], settings,
                                  cache=os.path.join(args.out, 'interaction.csv'), wall_times=args.out,
                                  data_dir=args.data_dir, eval_transform=args.eval_transform)
    wall = wall_time(args.out, 'interaction')  # (added per image: a stopped run loses nothing)
    title = f'{ev.info.name}, {n_inter} images at {ev.images.shape[-1]} px'
    caption = (f'{frame.image_id.nunique()} images, {settings.grid}x{settings.grid} patches, {settings.num_pairs} pairs, '
               f'{describe_contexts(frame)}')
    curve, shares, flat = _curves(args, frame, accuracy, title)
    gradcam_images = ev.images[:args.gradcam_images]
    layers = _gradcam(args.out, models, gradcam_images, ev.labels[:args.gradcam_images], ev.info)
    atomic_write_csv(os.path.join(args.out, 'accuracy.csv'), accuracy)
    report = f"""# {' vs '.join(m.name for m in models)} on {ev.info.name}

Weights: {'; '.join(f'{m.name}: {m.source}' for m in models)}.
Images: {len(ev.ids)} drawn with seed {args.seed}{' (one per class)' if args.one_per_class else ''} from {args.data_dir}
(list in `images.csv`); every model sees the same pixels: {ev.info.transform}.

## Top-1 on these images and interactions

{accuracy.to_markdown(index=False)}

`middle_share` (with its 95 % bootstrap interval over images): fraction of the normalised multi-order interaction strength
in orders 0.2n-0.6n ({caption}; statistic: {STATISTIC_TEXT[args.statistic]}); a flat curve (no preferred order) gives
{flat:.3f}. {_separation(shares)} {describe_precision(frame)}. Interaction wall time: {wall / 60:.1f} min in all
(each image as it finished, summed across resumed runs).

{provenance('analysis/compare_models.py', args.argv)}

![interaction curves ({caption})](interaction_curves.png)

## Grad-CAM

Layers: {'; '.join(layers)}. Explained class: the top-1 prediction.

![Grad-CAM](gradcam_grid.png)
"""
    atomic_write_text(os.path.join(args.out, 'report.md'), report)
    print(accuracy.to_markdown(index=False))
    print(f'wrote {args.out}/report.md')
    _publish(args)
    record(args, accuracy, frame, dict(images=len(ev.ids), data_dir=args.data_dir, transform=ev.info.transform,
                                       interaction=caption, statistic=args.statistic, seed=args.seed,
                                       interaction_wall_min=round(wall / 60, 2)))


def _curves(args, frame, accuracy, title):
    """curve.csv, interaction_curves.png and the middle shares (with intervals) added to ``accuracy``."""
    curve = strength_curve(frame, args.statistic)
    atomic_write_csv(os.path.join(args.out, 'curve.csv'), curve)
    plot_interaction_curves(curve, os.path.join(args.out, 'interaction_curves.png'),
                            title=f'Interaction strength ({args.statistic}): {title} (same images and pairs)')
    shares = middle_share_interval(frame, args.statistic)
    by_model = shares.set_index('model')
    accuracy['middle_share'] = accuracy.model.map(by_model.share).round(3)
    accuracy['middle_share_95ci'] = accuracy.model.map(
        lambda m: f'{by_model.ci_low[m]:.3f}-{by_model.ci_high[m]:.3f}')
    other = 'rms' if resolve_statistic(args.statistic) != 'rms' else 'mean-abs'  # the verdict under both statistics
    accuracy[f'middle_share_{other}'] = accuracy.model.map(
        middle_share_interval(frame, other).set_index('model').share).round(3)
    return curve, shares, flat_middle_share(curve)


def _publish(args):
    if args.publish:
        names = publish_artefacts(args.out, args.publish)
        print(f'published {", ".join(names)} to {args.publish}')


def _separation(shares) -> str:
    """Which pairs of models' middle-share intervals do not overlap, in words."""
    rows = list(shares.itertuples())
    apart = [f'{a.model} vs {b.model}' for i, a in enumerate(rows) for b in rows[i + 1:]
             if a.ci_high < b.ci_low or b.ci_high < a.ci_low]
    if not apart:
        return 'No two models\' intervals separate: the data do not decide an ordering of the middle shares.'
    return 'Intervals separate for: ' + ', '.join(apart) + '.'


def _gradcam(out, models, images, labels, info):
    maps, preds, layers = [], [], []
    for m in models:
        with torch.no_grad():
            pred = m.model(images).argmax(1)
        layer_name, layer, size = explained_layer(m.model, images)
        maps.append(grad_cam(m.model, images, pred, layer=layer))
        preds.append(pred)
        layers.append(f'{m.name}: `{layer_name}` ({size} map)')
    plot_gradcam_grid(images, maps, [m.name for m in models], labels, preds, info.class_names, info.mean, info.std,
                      os.path.join(out, 'gradcam_grid.png'))
    return layers


def _later_seeds(args, rates) -> pd.DataFrame:
    """A line per finished later-seed run (``<out>/<model>/seed<S>/results.yaml``) of the compared models."""
    rows = []
    for name in args.models:
        folder = os.path.join(args.out, name)
        seeds = sorted(int(d[4:]) for d in os.listdir(folder) if d.startswith('seed') and d[4:].isdigit()
                       and os.path.isfile(os.path.join(folder, d, 'results.yaml')))
        for seed in seeds:
            with open(os.path.join(folder, f'seed{seed}', 'results.yaml')) as f:
                r = yaml.safe_load(f)
            rows.append(dict(model=name, seed=seed, lr=rates[name], test_top1=round(100 * r['test/acc1'], 2),
                             test_top5=round(100 * r['test/acc5'], 2), train_images_per_s=r['train_images_per_second'],
                             train_wall_min=round(r.get('wall_seconds', float('nan')) / 60, 1)))
    return pd.DataFrame(rows, columns=['model', 'seed', 'lr', 'test_top1', 'test_top5', 'train_images_per_s',
                                       'train_wall_min'])


def _seed_accuracy(accuracy, seed_rows) -> str:
    """Test top-1 of every model on each training seed, with the mean and s.d. over its seeds."""
    table = pd.concat([accuracy[['model', 'seed', 'test_top1']], seed_rows[['model', 'seed', 'test_top1']]])
    seeds = sorted(table.seed.unique())
    lines = ['Test top-1 (%, 10k images) on each training seed:', '',
             '| model | ' + ' | '.join(f'seed {s}' for s in seeds) + ' | mean ± s.d. |', '| --- |' + ' ---: |' * (len(seeds) + 1)]
    for name, sub in table.groupby('model', sort=False):
        by = sub.set_index('seed').test_top1
        spread = f' ± {by.std(ddof=1):.2f}' if len(by) > 1 else ''
        lines.append(f'| {name} | ' + ' | '.join(f'{by[s]:.2f}' if s in by.index else '–' for s in seeds)
                     + f' | {by.mean():.2f}{spread} |')
    return '\n'.join(lines) + '\n'


def _garment_masks(images, info, threshold: float = 0.1):
    """Fashion-MNIST's garments on their black background: pixels brighter than ``threshold`` of full scale before
    normalisation ([B, H, W] bool)."""
    mean = torch.tensor(info.mean, dtype=images.dtype).view(1, -1, 1, 1)
    std = torch.tensor(info.std, dtype=images.dtype).view(1, -1, 1, 1)
    return (images * std + mean).amax(1) > threshold


def _analysed(run_dir: str) -> bool:
    return os.path.isfile(os.path.join(run_dir, 'analysis.pt'))


def _analyse_trained(args, m, settings, num_images: int, n_cam: int) -> None:
    """Everything the report needs from one trained model ``m``, kept in its run folder so that the report needs no
    checkpoint: its interaction rows (``interaction.csv``, cached per image), and in ``analysis.pt`` its Grad-CAM maps
    of the grid images and, per image of ``n_cam`` others, the share of its Grad-CAM mass on the garment. Every model
    draws the same test images (same data, same seeds)."""
    run_dir = os.path.join(args.out, m.name)
    ev = load_eval_images(m, num_images, seed=args.seed)
    interaction_of_models([m], ev.images, ev.labels, ev.ids, settings, cache=os.path.join(run_dir, 'interaction.csv'),
                          wall_times=args.out)
    grid = load_eval_images(m, args.gradcam_images, seed=args.seed + 1)
    with torch.no_grad():
        preds = m.model(grid.images).argmax(1)
    layer_name, layer, size = explained_layer(m.model, grid.images)
    maps = grad_cam(m.model, grid.images, preds, layer=layer)
    cam = load_eval_images(m, n_cam, seed=args.seed + 2)
    masks = _garment_masks(cam.images, cam.info)
    # (batches of 64: captum keeps the layer's activations and gradients; grad_cam explains the top-1 class)
    cam_maps = torch.cat([grad_cam(m.model, cam.images[i:i + 64], layer=layer) for i in range(0, len(cam.ids), 64)])
    result = dict(layer=f'{m.name}: `{layer_name}` ({size} map)', grid_ids=[int(i) for i in grid.ids], grid_images=grid.images,
                  grid_labels=grid.labels, maps=maps, preds=preds, cam_ids=[int(i) for i in cam.ids],
                  cam=mass_inside(cam_maps, masks), garment_area=masks.float().mean((1, 2)),
                  class_names=list(grid.info.class_names), mean=tuple(grid.info.mean), std=tuple(grid.info.std))
    path = os.path.join(run_dir, 'analysis.pt')
    torch.save(result, path + '.tmp')  # then renamed: a stopped run never leaves half a file
    os.replace(path + '.tmp', path)


def _cam_text(first, diffs, area, n, seed):
    if n < 2:
        return (f'`cam_on_garment`: not measured; every model\'s Grad-CAM map is non-zero on {n} of the drawn test '
                f'images (seed {seed + 2}), and an interval needs at least 2.')
    parts = [f'{first} - {k}: {d:+.3f} ({lo:+.3f} to {hi:+.3f}, '
             + ('decided' if lo > 0 or hi < 0 else 'not decided') + ')' for k, (d, lo, hi) in diffs.items()]
    return (f'`cam_on_garment` (with its 95 % bootstrap interval over images): the share of each model\'s Grad-CAM '
            f'mass on the garment (energy-based pointing game; the grid\'s layer, explaining the top-1 class; {n} test '
            f'images drawn with seed {seed + 2}; garment = pixels above 10 % of full scale, {area:.3f} of the image on '
            f'average, which is what an evenly spread map gets). Paired differences on the same images: '
            + '; '.join(parts) + '.')


def _title(models) -> str:
    """'MogaNet vs ConvNeXt vs Swin' for the models compared (each family once, in their order)."""
    families = []
    for name in models:
        family = FAMILIES.get(name.split('_')[0], name)
        families += [family] if family not in families else []
    return ' vs '.join(families)


def _stems(size: int) -> str:
    """The stems moga_lab.models.factory chose at this input size, as the report states them."""
    if size <= SMALL_IMAGE_MAX:
        return ('Small-image stems: MogaNet stride 2, ConvNeXt patch 1, Swin patch 2 and a window that tiles the token '
                'grid (see moga_lab/models/factory.py).')
    return 'The reference stems (stride 4 / patch 4).'


def learning_rates(values, models):
    """['4e-3'] or ['moganet_xtiny=4e-3', ...] -> {model: lr}; ValueError naming the accepted forms."""
    rates = {m: 2e-3 for m in models}
    for v in values:
        name, _, rate = v.rpartition('=')
        try:
            lr = float(rate)
        except ValueError:
            raise ValueError(f'--lr {v!r} is not accepted; accepted: a number, or NAME=NUMBER for a model of --models')
        if not name:
            rates = {m: lr for m in models}
        elif name not in rates:
            raise ValueError(f'--lr {v!r} names no model of --models ({", ".join(models)})')
        else:
            rates[name] = lr
    return rates


def train_and_compare(args):
    """Train each model with the same recipe on Fashion-MNIST (each at its own learning rate when --lr names one),
    analyse each as soon as it is trained, then compare them."""
    rates = learning_rates(args.lr, args.models)
    if args.quick:
        budget = Budget(epochs=1, batch_size=32, limit_train_batches=6, limit_test_batches=2, data_dir=args.data_dir,
                        image_size=args.image_size)
        settings = InteractionSettings(grid=4, num_pairs=2, num_contexts=2, ratios=(0.0, 0.3, 0.6, 1.0), seed=args.seed,
                                       baseline=args.baseline)
        num_images = 2
    else:
        budget = Budget(epochs=args.epochs, batch_size=args.batch_size, limit_train_batches=args.limit_train_batches,
                        data_dir=args.data_dir, image_size=args.image_size, drop_path_rate=args.drop_path)
        settings = default_settings(args.image_size or 28)
        for key, value in (('grid', args.grid), ('num_pairs', args.pairs), ('num_contexts', args.contexts),
                           ('ratios', args.ratios), ('target_ci', args.target_ci),
                           ('max_forwards', args.max_forwards)):
            if value is not None:
                setattr(settings, key, value)
        settings.bf16, settings.seed, settings.baseline = args.bf16, args.seed, args.baseline
        num_images = args.num_images
    settings.target_ci = per_image_target(settings.target_ci, num_images, args.target_over)
    unknown = sorted(set(args.only or ()) - set(args.models))
    if unknown:
        raise ValueError(f'--only {" ".join(unknown)}: not among --models; accepted: {", ".join(args.models)}')
    # cached interaction results of another design: said now, not after hours of training
    for name in args.models:
        for seed_dir in [''] + [f'seed{seed}' for seed in args.train_seeds]:
            check_interaction_cache(os.path.join(args.out, name, seed_dir, 'interaction.csv'), settings)
    n_cam = 8 if args.quick else (args.cam_images or 256)

    rows, missing = [], []
    for name in args.models:
        run_dir = os.path.join(args.out, name)
        if args.only and name not in args.only:
            if not _analysed(run_dir):
                missing.append(name)
            continue
        train_variant(run_dir, dataclasses.replace(budget, lr=rates[name]), args.seed, model_name=name)
        if not _analysed(run_dir):
            _analyse_trained(args, load_classifier(reported_checkpoint(run_dir), name), settings, num_images, n_cam)
        for seed in args.train_seeds:  # the same recipe on another training seed; curves on the same images and design
            seed_dir = os.path.join(run_dir, f'seed{seed}')
            train_variant(seed_dir, dataclasses.replace(budget, lr=rates[name]), seed, model_name=name)
            cache = os.path.join(seed_dir, 'interaction.csv')
            if finished_interaction(cache, [name], num_images) is None:
                m = load_classifier(reported_checkpoint(seed_dir), name)
                ev = load_eval_images(m, num_images, seed=args.seed)
                interaction_of_models([m], ev.images, ev.labels, ev.ids, settings, cache=cache, wall_times=args.out)
    if args.only:
        if missing:
            print(f'[compare] not analysed yet (the report waits for them): {", ".join(missing)}', file=sys.stderr)
        return
    machines = []
    for name in args.models:
        with open(os.path.join(args.out, name, 'results.yaml')) as f:
            r = yaml.safe_load(f)
        machine = trained_on(r)
        machines += [machine] if machine not in machines else []
        params, macs = count_params_macs(ModelConfig(name=name), image_size=args.image_size or 28)
        rows.append(dict(model=name, seed=args.seed, lr=rates[name], params_M=round(params / 1e6, 2),
                         MMACs=round(macs / 1e6, 1),
                         test_top1=round(100 * r['test/acc1'], 2), test_top5=round(100 * r['test/acc5'], 2),
                         train_images_per_s=r['train_images_per_second'],
                         train_wall_min=round(r.get('wall_seconds', float('nan')) / 60, 1)))
    accuracy = pd.DataFrame(rows)
    seed_rows = _later_seeds(args, rates)
    os.makedirs(args.out, exist_ok=True)
    results = {name: torch.load(os.path.join(args.out, name, 'analysis.pt')) for name in args.models}
    for name, res in results.items():  # every model on the same images (drawn from the same test set and seeds)
        first = results[args.models[0]]
        if res['cam_ids'] != first['cam_ids'] or res['grid_ids'] != first['grid_ids']:
            raise ValueError(f'{name} was analysed on other test images than {args.models[0]} (another data set or '
                             f'image size?); accepted: models analysed on the same images')
    frame = pd.concat([pd.read_csv(os.path.join(args.out, name, 'interaction.csv')) for name in args.models],
                      ignore_index=True)
    atomic_write_csv(os.path.join(args.out, 'interaction.csv'), frame)  # the tidy per-image table of every model
    wall = wall_time(args.out, 'interaction')  # (added per image: a stopped run loses nothing)
    size = args.image_size or 28
    curve, shares, flat = _curves(args, frame, accuracy, f'Fashion-MNIST at {size} px')

    grid = results[args.models[0]]
    images, labels = grid['grid_images'], grid['grid_labels']
    info = types.SimpleNamespace(mean=grid['mean'], std=grid['std'], class_names=grid['class_names'])
    plot_gradcam_grid(images, [results[m]['maps'] for m in args.models], list(args.models), labels,
                      [results[m]['preds'] for m in args.models], info.class_names, info.mean, info.std,
                      os.path.join(args.out, 'gradcam_grid.png'))
    layers = [results[m]['layer'] for m in args.models]
    cam_table = pd.concat([pd.DataFrame(dict(model=m, image_id=results[m]['cam_ids'],
                                             cam_on_garment=results[m]['cam'].numpy(),
                                             garment_area=results[m]['garment_area'].numpy())) for m in args.models],
                          ignore_index=True)
    atomic_write_csv(os.path.join(args.out, 'gradcam.csv'), cam_table)
    cam, cam_diffs, area, n_cam = mass_summary(cam_table, args.models, args.seed)
    accuracy['cam_on_garment'] = [round(cam[m][0], 3) for m in args.models]
    accuracy['cam_on_garment_95ci'] = [f'{cam[m][1]:.3f}-{cam[m][2]:.3f}' for m in args.models]
    # a line per (model, seed): the compared runs' first, then the later training seeds' (top-1 and speed only)
    atomic_write_csv(os.path.join(args.out, 'accuracy.csv'), pd.concat([accuracy, seed_rows], ignore_index=True))
    budget_text = f'{size} px, {budget.describe_epochs()} at batch {budget.batch_size}'
    seeds = [args.seed] + sorted(set(seed_rows.seed)) if len(seed_rows) else [args.seed]
    seed_md = (_seed_accuracy(accuracy, seed_rows) if len(seed_rows) else '') + seed_tables(
        args.out, frame, seeds, frame.image_id.nunique(), (0.2, 0.6), args.models[0],
        f'Middle-order share of each model on each training seed ({budget_text})', budget_text, noun='model')
    seed_wall = (f', and {seed_rows.train_wall_min.sum():.0f} min for the later training seeds' if len(seed_rows)
                 else '')
    # runs copied in from another study (e.g. the ablation grid's full row): their curves were computed, and timed,
    # there; their training time is in the table as that study measured it
    shared = [(f'{name} seed {seed}', source) for name, seed, folder in
              [(m, args.seed, os.path.join(args.out, m)) for m in args.models]
              + [(m, s, os.path.join(args.out, m, f'seed{s}')) for m, s in zip(seed_rows.model, seed_rows.seed)]
              for source in [shared_from(folder)] if source]
    shared_wall = ('' if not shared else '; the curves of runs copied from another study were computed and timed '
                   'there, not in this total: ' + ', '.join(f'{run} (`{source}`)' for run, source in shared))

    note = args.note + chr(10) * 2 if args.note else ''
    report = f"""# {_title(args.models)} on Fashion-MNIST

{note}Same recipe and budget for every model: {budget.describe_epochs()}, batch {budget.batch_size}, AdamW (lr per model in
the table), cosine schedule, label smoothing 0.1, stochastic depth {budget.drop_path_rate:g}, seed {args.seed},
{size} px. {_stems(size)}

## Accuracy (10k test images) and interactions

{accuracy.to_markdown(index=False)}

`middle_share` (with its 95 % bootstrap interval over images): fraction of the normalised multi-order interaction
strength in orders 0.2n-0.6n ({frame.image_id.nunique()} test images, {settings.grid}x{settings.grid} patches,
{settings.num_pairs} pairs, {describe_contexts(frame)}; statistic: {STATISTIC_TEXT[args.statistic]}); a flat curve (no
preferred order) gives {flat:.3f}. {_separation(shares)} {describe_precision(frame)}.

`train_images_per_s` is what each training process measured (with whatever else ran on the machine at the time);
benchmarks/study_speed.py measures the models side by side. Trained on: {'; '.join(machines)}. Wall time: training
{accuracy.train_wall_min.sum():.0f} min (`train_wall_min` per model){seed_wall}, interactions {wall / 60:.0f} min (each image as it
finished, summed across resumed runs{shared_wall}). {provenance('analysis/compare_models.py', args.argv)}

![interaction curves ({frame.image_id.nunique()} test images; models trained {budget.describe_epochs()} at batch
{budget.batch_size})](interaction_curves.png)
{'' if not seed_md else chr(10) + '## Training seeds' + chr(10) * 2 + seed_md}
## Grad-CAM

Layers: {'; '.join(layers)}. Explained class: the top-1 prediction; {len(images)} test images (seed {args.seed + 1}).

{_cam_text(args.models[0], cam_diffs, area, n_cam, args.seed)}

![Grad-CAM ({len(images)} test images; models trained {budget.describe_epochs()} at batch
{budget.batch_size})](gradcam_grid.png)
"""
    atomic_write_text(os.path.join(args.out, 'report.md'), report)
    print(accuracy.to_markdown(index=False))
    print(f'wrote {args.out}/report.md')
    _publish(args)
    record(args, accuracy, frame, dict(budget=budget.describe_epochs(), batch_size=budget.batch_size,
                                       image_size=size, seed=args.seed,
                                       interaction=describe_contexts(frame), statistic=args.statistic))


if __name__ == '__main__':
    main()
