"""MogaNet vs ConvNeXt vs Swin of similar size, trained with the same budget on Fashion-MNIST.

    python analysis/compare_models.py [--models moganet_xtiny convnext_atto swin_femto] [--epochs 2]
                                      [--out runs/compare] [--quick]

Trains each model (resumable; a run directory that already holds results.yaml is reused, so the runs of
benchmarks/fit_fashion_mnist.py can be pointed at with --out), then writes to ``<out>``:
``accuracy.csv``, interaction curves with 95 % bootstrap bands on the same images / pairs / contexts
(``interaction.csv``, ``curve.csv``, ``interaction_curves.png``), a Grad-CAM grid (``gradcam_grid.png``) and
``report.md`` tying them together.
"""
import argparse
import os
import sys

import pandas as pd
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from moga_lab.cli import positive_float  # noqa: E402
from moga_lab.analysis.games import (STATISTICS, STATISTIC_TEXT, describe_contexts, flat_middle_share,  # noqa: E402
                                     middle_order_share, strength_curve)
from moga_lab.analysis.gradcam import default_layer, grad_cam, plot_gradcam_grid  # noqa: E402
from moga_lab.analysis.plots import plot_interaction_curves  # noqa: E402
from moga_lab.studies import Budget, count_params_macs, interaction_of_checkpoints, train_variant  # noqa: E402
from moga_lab.training import ModelConfig, load_classifier, load_eval_images  # noqa: E402
from moga_lab.training.report import atomic_write_csv, atomic_write_text  # noqa: E402


def gradcam_layer(model, images):
    """(name, module, map size) of the layer Grad-CAM explains. MogaNet's default is norm4 (the authors' choice at
    224 px); on 28 px inputs with the stride-2 stem it is a 2x2 map, so take the deepest stage norm that is still
    at least 4x4, comparable to the baselines' last stages here (ConvNeXt 3x3, Swin 2x2). Other models: their default layer
    (``moga_lab.analysis.gradcam.default_layer``), named by its path in the model."""
    if hasattr(model, 'forward_intermediates') and hasattr(model, 'norm1'):
        with torch.no_grad():
            feats = model.forward_intermediates(images[:1], intermediates_only=True)
        index = max([i for i, f in enumerate(feats) if min(f.shape[-2:]) >= 4], default=len(feats) - 1)
        size = 'x'.join(str(n) for n in feats[index].shape[-2:])
        return f'norm{index + 1}', getattr(model, f'norm{index + 1}'), size
    layer = default_layer(model)
    name = next(n for n, m in model.named_modules() if m is layer)
    shapes = []
    handle = layer.register_forward_hook(lambda mod, inp, out: shapes.append(tuple(out.shape)))
    try:
        with torch.no_grad():
            model(images[:1])
    finally:
        handle.remove()
    shape = shapes[0]
    # timm Swin stages are NHWC, ConvNeXt stages NCHW
    h, w = (shape[1], shape[2]) if type(model).__name__.startswith('SwinTransformer') else shape[-2:]
    return name, layer, f'{h}x{w}'


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--models', nargs='+', default=['moganet_xtiny', 'convnext_atto', 'swin_femto'])
    p.add_argument('--epochs', type=int, default=2)
    p.add_argument('--limit-train-batches', type=positive_float, default=None,
                   help='fraction of the training set per epoch (default: all of it)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out', default='runs/compare')
    p.add_argument('--num-images', type=int, default=8, help='images for the interaction curves')
    p.add_argument('--gradcam-images', type=int, default=6)
    p.add_argument('--quick', action='store_true', help='a few steps per model and a tiny interaction budget')
    p.add_argument('--data-dir', default=None)
    p.add_argument('--target-ci', type=positive_float, default=None,
                   help='interaction precision mode: contexts until every order\'s 95 %% interval is within this '
                        'fraction of its value (default: the fixed 12 contexts)')
    p.add_argument('--statistic', choices=STATISTICS, default='debiased',
                   help='curve statistic: debiased (root-mean-square of I, noise removed; default) or naive '
                        '(the authors\' mean |I|)')
    args = p.parse_args(argv)
    if args.quick:
        budget = Budget(epochs=1, batch_size=32, limit_train_batches=6, limit_test_batches=2, data_dir=args.data_dir)
        inter = dict(num_images=2, grid=4, pairs=2, contexts=2, ratios=(0.0, 0.3, 0.6, 1.0))
    else:
        budget = Budget(epochs=args.epochs, limit_train_batches=args.limit_train_batches, data_dir=args.data_dir)
        inter = dict(num_images=args.num_images, grid=7, pairs=12, contexts=12, target_ci=args.target_ci)

    rows, checkpoints = [], {}
    for name in args.models:
        run_dir = os.path.join(args.out, name)
        r = train_variant(run_dir, budget, args.seed, model_name=name)
        params, macs = count_params_macs(ModelConfig(name=name))
        rows.append(dict(model=name, params_M=round(params / 1e6, 2), MMACs=round(macs / 1e6, 1),
                         test_top1=round(100 * r['test/acc1'], 2), test_top5=round(100 * r['test/acc5'], 2),
                         train_images_per_s=r['train_images_per_second']))
        ckpt = os.path.join(run_dir, 'best.ckpt')
        checkpoints[name] = ckpt if os.path.isfile(ckpt) else os.path.join(run_dir, 'last.ckpt')
    accuracy = pd.DataFrame(rows)
    os.makedirs(args.out, exist_ok=True)
    atomic_write_csv(os.path.join(args.out, 'accuracy.csv'), accuracy)

    frame = interaction_of_checkpoints(checkpoints, cache=os.path.join(args.out, 'interaction.csv'), seed=args.seed,
                                       **inter)
    curve = strength_curve(frame, args.statistic)
    atomic_write_csv(os.path.join(args.out, 'curve.csv'), curve)
    plot_interaction_curves(curve, os.path.join(args.out, 'interaction_curves.png'),
                            title=f'Interaction strength ({args.statistic}) on Fashion-MNIST (same images and pairs)')
    shares = middle_order_share(curve)
    accuracy['middle_share_0.2-0.6n'] = accuracy.model.map(shares).round(3)
    flat = flat_middle_share(curve)

    trained = [load_classifier(checkpoints[m]) for m in args.models]
    images, labels, _, info = load_eval_images(trained[0], args.gradcam_images, seed=args.seed + 1)
    maps, preds, layers = [], [], []
    for name, t in zip(args.models, trained):
        with torch.no_grad():
            pred = t.model(images).argmax(1)
        layer_name, layer, size = gradcam_layer(t.model, images)
        maps.append(grad_cam(t.model, images, pred, layer=layer))
        preds.append(pred)
        layers.append(f'{name}: `{layer_name}` ({size} map)')
    plot_gradcam_grid(images, maps, args.models, labels, preds, info.class_names, info.mean, info.std,
                      os.path.join(args.out, 'gradcam_grid.png'))

    report = f"""# MogaNet vs ConvNeXt vs Swin on Fashion-MNIST

Same recipe and budget for every model: {budget.describe_epochs()}, batch {budget.batch_size}, AdamW lr {budget.lr},
cosine schedule, label smoothing 0.1, seed {args.seed}. Small-image stems: MogaNet stride 2, ConvNeXt patch 1,
Swin patch 2 (see moga_lab/training/factory.py).

## Accuracy (10k test images) and interactions

{accuracy.to_markdown(index=False)}

`middle_share_0.2-0.6n`: fraction of the normalised multi-order interaction strength in orders 0.2n-0.6n
({frame.image_id.nunique()} test images, {inter['grid']}x{inter['grid']} patches, {inter['pairs']} pairs,
{describe_contexts(frame)}; statistic: {STATISTIC_TEXT[args.statistic]}); a flat curve (no preferred order)
gives {flat:.3f}.

![interaction curves](interaction_curves.png)

## Grad-CAM

Layers: {'; '.join(layers)}.

![Grad-CAM](gradcam_grid.png)
"""
    atomic_write_text(os.path.join(args.out, 'report.md'), report)
    print(accuracy.to_markdown(index=False))
    print(f'wrote {args.out}/report.md')


if __name__ == '__main__':
    main()
