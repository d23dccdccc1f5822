"""MogaNet vs ConvNeXt vs Swin (the paper's Fig. 3): interaction curves, Grad-CAM and top-1 of several models on the
same images, either trained here with one recipe on Fashion-MNIST (`ComparisonSpec.models`) or named by the user
(released weights or fit checkpoints, `ComparisonSpec.sources`: nothing trained). `run_comparison` does either and
writes ``accuracy.csv``, ``interaction.csv``, ``curve.csv``, ``interaction_curves.png``, ``gradcam_grid.png``,
``gradcam.csv`` (trained models), ``images.csv`` (named models) and ``report.md`` into ``ComparisonSpec.out``.

Training is resumable, and each trained model is analysed as soon as it is trained, its results kept in its run
folder (``<out>/<model>/interaction.csv``, cached per image, and ``analysis.pt``: Grad-CAM maps and the per-image
mass on the garment), so the report needs no checkpoint: the models of one comparison can be trained on different
machines (``only``).
"""
import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import pandas as pd
import torch
import yaml

from moga_lab.analysis.curves import flat_middle_share, middle_share_interval, strength_curve
from moga_lab.analysis.estimate import InteractionSettings, default_settings, per_image_target
from moga_lab.analysis.tables import STATISTIC_TEXT, describe_contexts, describe_precision, resolve_statistic
from moga_lab.analysis.gradcam import explained_layer, grad_cam, mass_inside, mass_summary, plot_gradcam_grid
from moga_lab.analysis.plots import plot_interaction_curves
from moga_lab.loaders import load_classifier, load_eval_images, load_models, write_image_list
from moga_lab.models.factory import SMALL_IMAGE_MAX
from moga_lab.studies.common import (Budget, check_interaction_cache, count_params_macs, finished_interaction,
                                     interaction_of_models, provenance, publish_artefacts, reported_checkpoint,
                                     seed_tables, shared_from, train_variant, trained_on, wall_time)
from moga_lab.training import ModelConfig
from moga_lab.utils.atomic import atomic_write_csv, atomic_write_text
from moga_lab.utils.tracking import safe_record

__all__ = ['ComparisonResult', 'ComparisonSpec', 'learning_rates', 'run_comparison']

FAMILIES = {'moganet': 'MogaNet', 'convnext': 'ConvNeXt', 'swin': 'Swin'}


@dataclass
class ComparisonSpec:
    """One comparison, typed (``moga-compare``'s options).

    Attributes:
        out: the study folder (a run folder per trained model, the tables, the report).
        models: models to train here and compare (timm names), when ``sources`` is empty.
        sources: ``[('checkpoint', path) | ('model', name, weights_file), ...]``: compare these, nothing trained.
        label: display names of ``sources``, in order.
        no_ema: load the raw weights of a file holding EMA weights.
        trust_weights: unpickle a weights file fully (only for files you trust).
        one_per_class: draw each image from another class.
        eval_transform: the eval transform of named models on an ImageFolder (`moga_lab.loaders.EVAL_TRANSFORMS`).
        epochs: epochs of every trained model (one recipe for all).
        batch_size: batch size of every trained model.
        lr: ``['4e-3']`` for all or ``['NAME=4e-3', ...]`` per model (see `learning_rates`).
        image_size: train and analyse at this size (None: the data's own).
        limit_train_batches: fraction of the training set per epoch (None: all).
        drop_path: stochastic depth rate of every model.
        seed: the compared runs' training seed, and the seed that draws the test images, pairs and contexts.
        train_seeds: also train each model on these seeds and compute its curves there (no Grad-CAM).
        num_images: images for the interaction curves.
        gradcam_images: images in the Grad-CAM grid.
        cam_images: trained models: test images for the Grad-CAM mass on the garment (None: 256, ``quick``: 8).
        grid: patch grid (None: the default at the image size).
        pairs: pairs per image (None: the default).
        contexts: contexts per pair and order (None: the default).
        ratios: order ratios m/(n-2) (None: the authors' 13).
        target_ci: the precision mode's target (None: the fixed design).
        design: the interaction design (`moga_lab.analysis.estimate.DESIGNS`; the precision mode is chosen by
            ``target_ci``).
        share: the shared design's pairs per group (None: all).
        target_over: ``target_ci`` per 'image' or over the 'images' of a curve.
        max_forwards: the precision mode's cap on forward passes per image.
        bf16: bf16 autocast for the masked forward passes.
        statistic: the curve statistic (mean-abs, rms or naive); the other noise-removed one is reported beside it.
        baseline: what masked patches show (`moga_lab.analysis.game.BASELINES`).
        only: train and analyse only these of ``models`` now and write no report.
        quick: a few steps per model and a tiny interaction budget (a smoke test, not a measurement).
        data_dir: the Fashion-MNIST folder, or the ImageFolder of named models.
        note: a paragraph for the report, under its title.
        publish: also copy the tables, report and figures (not checkpoints) to this folder.
        argv: the command as typed (stated in the report).
        store: an MLflow study store (`moga_lab.utils.tracking.open_study_store`) or None.
    """
    out: str = 'runs/compare'
    models: Sequence[str] = ('moganet_xtiny', 'convnext_atto', 'swin_femto')
    sources: List[tuple] = field(default_factory=list)
    label: Optional[List[str]] = None
    no_ema: bool = False
    trust_weights: bool = False
    one_per_class: bool = False
    eval_transform: str = 'auto'
    epochs: int = 2
    batch_size: int = 64
    lr: Sequence[str] = ('2e-3',)
    image_size: Optional[int] = None
    limit_train_batches: Optional[float] = None
    drop_path: float = 0.05
    seed: int = 0
    train_seeds: Sequence[int] = ()
    num_images: int = 8
    gradcam_images: int = 6
    cam_images: Optional[int] = None
    grid: Optional[int] = None
    pairs: Optional[int] = None
    contexts: Optional[int] = None
    ratios: Optional[Tuple[float, ...]] = None
    target_ci: Optional[float] = None
    design: str = 'fixed'
    share: Optional[int] = None
    target_over: str = 'image'
    max_forwards: Optional[int] = None
    bf16: bool = False
    statistic: str = 'mean-abs'
    baseline: str = 'zero'
    only: Optional[Sequence[str]] = None
    quick: bool = False
    data_dir: Optional[str] = None
    note: Optional[str] = None
    publish: Optional[str] = None
    argv: Sequence[str] = ()
    store: Any = None

    def check(self) -> None:
        """Options that contradict each other: ValueError naming them and what is accepted."""
        if self.sources and self.train_seeds:
            raise ValueError(f'--train-seeds {" ".join(map(str, self.train_seeds))}: trains the models again; '
                             'accepted: no --train-seeds with --checkpoint or --model/--weights (nothing is trained '
                             'there)')
        if self.seed in self.train_seeds:
            raise ValueError(f"--train-seeds {self.seed}: that is --seed, the compared runs' own training seed; "
                             'accepted: other seeds')
        if self.sources and self.cam_images is not None:  # the garment mask exists for Fashion-MNIST only
            raise ValueError(f'--cam-images {self.cam_images}: the Grad-CAM mass on the object (Fashion-MNIST garment '
                             'masks) is computed for the models trained here only; accepted: no --cam-images with '
                             '--checkpoint or --model/--weights (their Grad-CAM grid shows --gradcam-images images)')


@dataclass
class ComparisonResult:
    """What `run_comparison` made.

    Attributes:
        accuracy: the compared models' table (``accuracy.csv`` adds a line per later training seed); None when
            ``only`` left the report for later.
        report: ``report.md``'s path, or None.
        params: what the study store records with every model.
        missing: models not analysed yet.
        published: the files copied to ``publish``.
    """
    accuracy: Optional[pd.DataFrame] = None
    report: Optional[str] = None
    params: Dict[str, Any] = field(default_factory=dict)
    missing: List[str] = field(default_factory=list)
    published: List[str] = field(default_factory=list)


def run_comparison(c: ComparisonSpec, log: Callable[[str], None] = print) -> ComparisonResult:
    """Compare ``c.sources`` (nothing trained) or train ``c.models`` and compare them.

    Args:
        c: the comparison.
        log: where progress lines go.

    Raises:
        ValueError, FileNotFoundError: bad input, one line naming it.
    """
    c.check()
    result = _compare_named(c) if c.sources else _train_and_compare(c)
    if result.report:
        if c.publish:
            result.published = publish_artefacts(c.out, c.publish)
        _record(c, result, log)
    return result


def _record(c, result, log):
    """Each compared model an MLflow run of the study store: the study's parameters, its row of accuracy.csv as
    metrics, the study's report, tables and figures as artifacts of every run."""
    if c.store is None:
        return
    files = [os.path.join(c.out, n) for n in ('report.md', 'accuracy.csv', 'curve.csv', 'interaction_curves.png',
                                              'gradcam_grid.png', 'images.csv', 'seed_shares.csv', 'seed_shares.png')]
    for row in result.accuracy.to_dict('records'):
        metrics = {k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        low, high = (float(x) for x in row['middle_share_95ci'].split('-'))
        metrics.update(middle_share_ci_low=low, middle_share_ci_high=high)
        model_params = {**result.params, 'model': row['model'], 'weights': row.get('weights', '')}
        safe_record(c.store, f'{os.path.abspath(c.out)}:{row["model"]}', model_params, metrics, artifacts=files,
                    name=row['model'], tags=dict(study='compare'))
    log(f'recorded {len(result.accuracy)} models in {c.store.uri} (experiment {c.store.experiment!r})')


def _settings(c, size: int, num_images: int) -> InteractionSettings:
    """The interaction design: the defaults at this image size, with what ``c`` sets."""
    settings = default_settings(size)
    for key, value in (('grid', c.grid), ('num_pairs', c.pairs), ('num_contexts', c.contexts),
                       ('ratios', c.ratios), ('target_ci', c.target_ci), ('max_forwards', c.max_forwards)):
        if value is not None:
            setattr(settings, key, value)
    settings.bf16, settings.seed, settings.baseline = c.bf16, c.seed, c.baseline
    settings.design = 'two-phase' if c.target_ci is not None else c.design
    settings.share = c.share
    if c.quick:  # a smoke test of the whole pipeline, not a measurement
        settings.grid, settings.num_pairs, settings.num_contexts, settings.ratios = 4, 2, 2, (0.0, 0.3, 0.6, 1.0)
    settings.target_ci = per_image_target(settings.target_ci, num_images, c.target_over)
    return settings


def _compare_named(c) -> 'ComparisonResult':
    """The paper's comparison on models the user named (released weights or fit checkpoints): nothing trained."""
    models = load_models(c.sources, c.label, use_ema=not c.no_ema, trust=c.trust_weights)
    data = None if models[0].is_fit_checkpoint else 'imagefolder'
    ev = load_eval_images(models, max(c.num_images, c.gradcam_images), data, c.data_dir, c.seed,
                          per_class=c.one_per_class, transform=c.eval_transform)
    n = c.num_images
    settings = _settings(c, ev.images.shape[-1], n)
    os.makedirs(c.out, exist_ok=True)
    write_image_list(os.path.join(c.out, 'images.csv'), ev.ids, ev.labels, ev.info, ev.paths)
    accuracy = _top1_on_images(models, ev)
    frame = interaction_of_models(models, ev.images[:n], ev.labels[:n], ev.ids[:n], settings,
                                  cache=os.path.join(c.out, 'interaction.csv'), wall_times=c.out,
                                  data_dir=c.data_dir, eval_transform=c.eval_transform)
    wall = wall_time(c.out, 'interaction')  # (added per image: a stopped run loses nothing)
    caption = (f'{frame.image_id.nunique()} images, {settings.grid}x{settings.grid} patches, {settings.num_pairs} pairs, '
               f'{describe_contexts(frame)}')
    _, shares, flat = _curves(c, frame, accuracy, f'{ev.info.name}, {n} images at {ev.images.shape[-1]} px')
    layers = _gradcam(c.out, models, ev.images[:c.gradcam_images], ev.labels[:c.gradcam_images], ev.info)
    atomic_write_csv(os.path.join(c.out, 'accuracy.csv'), accuracy)
    report = f"""# {' vs '.join(m.name for m in models)} on {ev.info.name}

Weights: {'; '.join(f'{m.name}: {m.source}' for m in models)}.
Images: {len(ev.ids)} drawn with seed {c.seed}{' (one per class)' if c.one_per_class else ''} from {c.data_dir}
(list in `images.csv`); every model sees the same pixels: {ev.info.transform}.

## Top-1 on these images and interactions

{accuracy.to_markdown(index=False)}

`middle_share` (with its 95 % bootstrap interval over images): fraction of the normalised multi-order interaction strength
in orders 0.2n-0.6n ({caption}; statistic: {STATISTIC_TEXT[c.statistic]}); a flat curve (no preferred order) gives
{flat:.3f}. {_separation(shares)} {describe_precision(frame)}. Interaction wall time: {wall / 60:.1f} min in all
(each image as it finished, summed across resumed runs).

{provenance('analysis/compare_models.py', c.argv)}

![interaction curves ({caption})](interaction_curves.png)

## Grad-CAM

Layers: {'; '.join(layers)}. Explained class: the top-1 prediction.

![Grad-CAM](gradcam_grid.png)
"""
    path = os.path.join(c.out, 'report.md')
    atomic_write_text(path, report)
    return ComparisonResult(accuracy, path, params=dict(
        images=len(ev.ids), data_dir=c.data_dir, transform=ev.info.transform, interaction=caption,
        statistic=c.statistic, seed=c.seed, interaction_wall_min=round(wall / 60, 2)))


def _top1_on_images(models, ev) -> pd.DataFrame:
    rows = []
    for m in models:
        with torch.no_grad():
            pred = torch.cat([m.model(ev.images[k:k + 16]) for k in range(0, len(ev.ids), 16)]).argmax(1)
        rows.append(dict(model=m.name, weights=m.source,
                         params_M=round(sum(p.numel() for p in m.model.parameters()) / 1e6, 2),
                         top1_on_images=round(100 * float((pred == ev.labels).float().mean()), 1), images=len(ev.ids)))
    return pd.DataFrame(rows)


def _curves(c, frame, accuracy, title):
    """curve.csv, interaction_curves.png and the middle shares (with intervals) added to ``accuracy``."""
    curve = strength_curve(frame, c.statistic)
    atomic_write_csv(os.path.join(c.out, 'curve.csv'), curve)
    plot_interaction_curves(curve, os.path.join(c.out, 'interaction_curves.png'),
                            title=f'Interaction strength ({c.statistic}): {title} (same images and pairs)')
    shares = middle_share_interval(frame, c.statistic)
    by_model = shares.set_index('model')
    accuracy['middle_share'] = accuracy.model.map(by_model.share).round(3)
    accuracy['middle_share_95ci'] = accuracy.model.map(
        lambda m: f'{by_model.ci_low[m]:.3f}-{by_model.ci_high[m]:.3f}')
    other = 'rms' if resolve_statistic(c.statistic) != 'rms' else 'mean-abs'  # the verdict under both statistics
    accuracy[f'middle_share_{other}'] = accuracy.model.map(
        middle_share_interval(frame, other).set_index('model').share).round(3)
    return curve, shares, flat_middle_share(curve)


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


def _later_seeds(c, rates) -> pd.DataFrame:
    """A line per finished later-seed run (``<out>/<model>/seed<S>/results.yaml``) of the compared models."""
    rows = []
    for name in c.models:
        folder = os.path.join(c.out, name)
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


def _analyse_trained(c, m, settings, num_images: int, n_cam: int) -> None:
    """Everything the report needs from one trained model ``m``, kept in its run folder so that the report needs no
    checkpoint: its interaction rows (``interaction.csv``, cached per image), and in ``analysis.pt`` its Grad-CAM maps
    of the grid images and, per image of ``n_cam`` others, the share of its Grad-CAM mass on the garment. Every model
    draws the same test images (same data, same seeds)."""
    run_dir = os.path.join(c.out, m.name)
    ev = load_eval_images(m, num_images, seed=c.seed)
    interaction_of_models([m], ev.images, ev.labels, ev.ids, settings, cache=os.path.join(run_dir, 'interaction.csv'),
                          wall_times=c.out)
    grid = load_eval_images(m, c.gradcam_images, seed=c.seed + 1)
    with torch.no_grad():
        preds = m.model(grid.images).argmax(1)
    layer_name, layer, size = explained_layer(m.model, grid.images)
    maps = grad_cam(m.model, grid.images, preds, layer=layer)
    cam = load_eval_images(m, n_cam, seed=c.seed + 2)
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


def learning_rates(values: Sequence[str], models: Sequence[str]) -> Dict[str, float]:
    """['4e-3'] or ['moganet_xtiny=4e-3', ...] -> {model: lr}; ValueError naming the accepted forms.

    Args:
        values: one rate for every model, or NAME=RATE entries (models not named take 2e-3).
        models: the compared models.
    """
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


def _train_and_compare(c) -> 'ComparisonResult':
    """Train each model with the same recipe on Fashion-MNIST (each at its own learning rate when ``lr`` names one),
    analyse each as soon as it is trained, then compare them."""
    rates = learning_rates(c.lr, c.models)
    budget, settings, num_images = _trained_design(c)
    unknown = sorted(set(c.only or ()) - set(c.models))
    if unknown:
        raise ValueError(f'--only {" ".join(unknown)}: not among --models; accepted: {", ".join(c.models)}')
    # cached interaction results of another design: said now, not after hours of training
    for name in c.models:
        for seed_dir in [''] + [f'seed{seed}' for seed in c.train_seeds]:
            check_interaction_cache(os.path.join(c.out, name, seed_dir, 'interaction.csv'), settings)
    missing = _train_and_analyse(c, budget, rates, settings, num_images)
    if c.only:
        return ComparisonResult(missing=missing)
    accuracy, machines = _trained_accuracy(c, rates)
    seed_rows = _later_seeds(c, rates)
    os.makedirs(c.out, exist_ok=True)
    results = _analyses(c)
    frame = pd.concat([pd.read_csv(os.path.join(c.out, name, 'interaction.csv')) for name in c.models],
                      ignore_index=True)
    atomic_write_csv(os.path.join(c.out, 'interaction.csv'), frame)  # the tidy per-image table of every model
    size = c.image_size or 28
    _, shares, flat = _curves(c, frame, accuracy, f'Fashion-MNIST at {size} px')
    cam_text = _trained_gradcam(c, results, accuracy)
    # a line per (model, seed): the compared runs' first, then the later training seeds' (top-1 and speed only)
    atomic_write_csv(os.path.join(c.out, 'accuracy.csv'), pd.concat([accuracy, seed_rows], ignore_index=True))
    report = _trained_report(c, budget, settings, accuracy, seed_rows, frame, shares, flat, machines,
                             [results[m]['layer'] for m in c.models], len(results[c.models[0]]['grid_images']),
                             cam_text)
    path = os.path.join(c.out, 'report.md')
    atomic_write_text(path, report)
    return ComparisonResult(accuracy, path, params=dict(
        budget=budget.describe_epochs(), batch_size=budget.batch_size, image_size=size, seed=c.seed,
        interaction=describe_contexts(frame), statistic=c.statistic))


def _trained_design(c):
    """The one recipe (a `Budget`), the interaction design and the number of images for the curves."""
    if c.quick:
        budget = Budget(epochs=1, batch_size=32, limit_train_batches=6, limit_test_batches=2, data_dir=c.data_dir,
                        image_size=c.image_size)
        settings = InteractionSettings(grid=4, num_pairs=2, num_contexts=2, ratios=(0.0, 0.3, 0.6, 1.0), seed=c.seed,
                                       baseline=c.baseline)
        settings.target_ci = per_image_target(settings.target_ci, 2, c.target_over)
        return budget, settings, 2
    budget = Budget(epochs=c.epochs, batch_size=c.batch_size, limit_train_batches=c.limit_train_batches,
                    data_dir=c.data_dir, image_size=c.image_size, drop_path_rate=c.drop_path)
    return budget, _settings(c, c.image_size or 28, c.num_images), c.num_images


def _train_and_analyse(c, budget, rates, settings, num_images) -> List[str]:
    """Train (or resume) each model of ``c.only`` (all without it) and analyse it; its later training seeds get their
    curves on the same images and design. Returns the models left for another call, not analysed yet."""
    n_cam = 8 if c.quick else (c.cam_images or 256)
    missing = []
    for name in c.models:
        run_dir = os.path.join(c.out, name)
        if c.only and name not in c.only:
            if not _analysed(run_dir):
                missing.append(name)
            continue
        train_variant(run_dir, dataclasses.replace(budget, lr=rates[name]), c.seed, model_name=name)
        if not _analysed(run_dir):
            _analyse_trained(c, load_classifier(reported_checkpoint(run_dir), name), settings, num_images, n_cam)
        for seed in c.train_seeds:
            seed_dir = os.path.join(run_dir, f'seed{seed}')
            train_variant(seed_dir, dataclasses.replace(budget, lr=rates[name]), seed, model_name=name)
            cache = os.path.join(seed_dir, 'interaction.csv')
            if finished_interaction(cache, [name], num_images) is None:
                m = load_classifier(reported_checkpoint(seed_dir), name)
                ev = load_eval_images(m, num_images, seed=c.seed)
                interaction_of_models([m], ev.images, ev.labels, ev.ids, settings, cache=cache, wall_times=c.out)
    return missing


def _trained_accuracy(c, rates):
    """A line per compared model (its run's results.yaml, parameters and MACs) and the machines that trained them."""
    rows, machines = [], []
    for name in c.models:
        with open(os.path.join(c.out, name, 'results.yaml')) as f:
            r = yaml.safe_load(f)
        machine = trained_on(r)
        machines += [machine] if machine not in machines else []
        params, macs = count_params_macs(ModelConfig(name=name), image_size=c.image_size or 28)
        rows.append(dict(model=name, seed=c.seed, lr=rates[name], params_M=round(params / 1e6, 2),
                         MMACs=round(macs / 1e6, 1),
                         test_top1=round(100 * r['test/acc1'], 2), test_top5=round(100 * r['test/acc5'], 2),
                         train_images_per_s=r['train_images_per_second'],
                         train_wall_min=round(r.get('wall_seconds', float('nan')) / 60, 1)))
    return pd.DataFrame(rows), machines


def _analyses(c) -> dict:
    """Every model's ``analysis.pt``, checked to be on the same images (same test set and seeds)."""
    results = {name: torch.load(os.path.join(c.out, name, 'analysis.pt')) for name in c.models}
    first = results[c.models[0]]
    for name, res in results.items():
        if res['cam_ids'] != first['cam_ids'] or res['grid_ids'] != first['grid_ids']:
            raise ValueError(f'{name} was analysed on other test images than {c.models[0]} (another data set or '
                             f'image size?); accepted: models analysed on the same images')
    return results


def _trained_gradcam(c, results, accuracy) -> str:
    """The Grad-CAM grid, ``gradcam.csv`` and the mass on the garment (added to ``accuracy``); the report's text."""
    grid = results[c.models[0]]
    plot_gradcam_grid(grid['grid_images'], [results[m]['maps'] for m in c.models], list(c.models),
                      grid['grid_labels'], [results[m]['preds'] for m in c.models], grid['class_names'],
                      grid['mean'], grid['std'], os.path.join(c.out, 'gradcam_grid.png'))
    cam_table = pd.concat([pd.DataFrame(dict(model=m, image_id=results[m]['cam_ids'],
                                             cam_on_garment=results[m]['cam'].numpy(),
                                             garment_area=results[m]['garment_area'].numpy())) for m in c.models],
                          ignore_index=True)
    atomic_write_csv(os.path.join(c.out, 'gradcam.csv'), cam_table)
    cam, cam_diffs, area, n_cam = mass_summary(cam_table, c.models, c.seed)
    accuracy['cam_on_garment'] = [round(cam[m][0], 3) for m in c.models]
    accuracy['cam_on_garment_95ci'] = [f'{cam[m][1]:.3f}-{cam[m][2]:.3f}' for m in c.models]
    return _cam_text(c.models[0], cam_diffs, area, n_cam, c.seed)


def _shared_runs(c, seed_rows) -> str:
    """Runs copied in from another study (e.g. the ablation grid's full row): their curves were computed, and timed,
    there; their training time is in the table as that study measured it."""
    shared = [(f'{name} seed {seed}', source) for name, seed, folder in
              [(m, c.seed, os.path.join(c.out, m)) for m in c.models]
              + [(m, s, os.path.join(c.out, m, f'seed{s}')) for m, s in zip(seed_rows.model, seed_rows.seed)]
              for source in [shared_from(folder)] if source]
    return ('' if not shared else '; the curves of runs copied from another study were computed and timed '
            'there, not in this total: ' + ', '.join(f'{run} (`{source}`)' for run, source in shared))


def _trained_report(c, budget, settings, accuracy, seed_rows, frame, shares, flat, machines, layers, n_grid,
                    cam_text) -> str:
    size = c.image_size or 28
    budget_text = f'{size} px, {budget.describe_epochs()} at batch {budget.batch_size}'
    seeds = [c.seed] + sorted(set(seed_rows.seed)) if len(seed_rows) else [c.seed]
    seed_md = (_seed_accuracy(accuracy, seed_rows) if len(seed_rows) else '') + seed_tables(
        c.out, frame, seeds, frame.image_id.nunique(), (0.2, 0.6), c.models[0],
        f'Middle-order share of each model on each training seed ({budget_text})', budget_text, noun='model')
    seed_wall = (f', and {seed_rows.train_wall_min.sum():.0f} min for the later training seeds' if len(seed_rows)
                 else '')
    wall = wall_time(c.out, 'interaction')  # (added per image: a stopped run loses nothing)
    note = c.note + chr(10) * 2 if c.note else ''
    return f"""# {_title(c.models)} on Fashion-MNIST

{note}Same recipe and budget for every model: {budget.describe_epochs()}, batch {budget.batch_size}, AdamW (lr per model in
the table), cosine schedule, label smoothing 0.1, stochastic depth {budget.drop_path_rate:g}, seed {c.seed},
{size} px. {_stems(size)}

## Accuracy (10k test images) and interactions

{accuracy.to_markdown(index=False)}

`middle_share` (with its 95 % bootstrap interval over images): fraction of the normalised multi-order interaction
strength in orders 0.2n-0.6n ({frame.image_id.nunique()} test images, {settings.grid}x{settings.grid} patches,
{settings.num_pairs} pairs, {describe_contexts(frame)}; statistic: {STATISTIC_TEXT[c.statistic]}); a flat curve (no
preferred order) gives {flat:.3f}. {_separation(shares)} {describe_precision(frame)}.

`train_images_per_s` is what each training process measured (with whatever else ran on the machine at the time);
benchmarks/study_speed.py measures the models side by side. Trained on: {'; '.join(machines)}. Wall time: training
{accuracy.train_wall_min.sum():.0f} min (`train_wall_min` per model){seed_wall}, interactions {wall / 60:.0f} min (each image as it
finished, summed across resumed runs{_shared_runs(c, seed_rows)}). {provenance('analysis/compare_models.py', c.argv)}

![interaction curves ({frame.image_id.nunique()} test images; models trained {budget.describe_epochs()} at batch
{budget.batch_size})](interaction_curves.png)
{'' if not seed_md else chr(10) + '## Training seeds' + chr(10) * 2 + seed_md}
## Grad-CAM

Layers: {'; '.join(layers)}. Explained class: the top-1 prediction; {n_grid} test images (seed {c.seed + 1}).

{cam_text}

![Grad-CAM ({n_grid} test images; models trained {budget.describe_epochs()} at batch
{budget.batch_size})](gradcam_grid.png)
"""
