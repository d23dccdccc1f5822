"""``python -m moga_lab.cli.gradcam --checkpoint A.ckpt [--checkpoint B.ckpt ...] --num-images 8 --out DIR``
``python -m moga_lab.cli.gradcam --model moganet_tiny --weights T.pth.tar --model swin_tiny_patch4_window7_224 --weights
S.pth --data-dir IMAGENET --one-per-class --out DIR``

Grad-CAM maps (captum) of several models on the same images (fit checkpoints: their test set; released / timm
weights: an ImageFolder, one eval transform for all, ``--eval-transform``): ``DIR/gradcam_grid.png`` (rows =
images, columns = input and one overlay per model) and ``DIR/gradcam_maps.npz`` (maps [models, N, H, W],
images, labels, predictions, model names, class names).
"""
import io
import os
import sys
from typing import List, Optional

from moga_lab.cli.common import (Parser, add_model_arguments, choice, fail, int_at_least, model_sources, open_fraction,
                                 user_errors)


def build_parser() -> Parser:
    """The command's options (``--help`` prints them with the module docstring)."""
    from moga_lab.data import DATASETS
    p = Parser(prog='python -m moga_lab.cli.gradcam', description=__doc__,
               formatter_class=lambda prog: __import__('argparse').RawDescriptionHelpFormatter(prog, width=110))
    add_model_arguments(p)
    p.add_argument('--data', type=choice(DATASETS), help="default: the first checkpoint's data; imagefolder for --weights")
    p.add_argument('--data-dir')
    p.add_argument('--num-images', type=int_at_least(1), default=8)
    p.add_argument('--seed', type=int, default=0, help='selects the test images')
    p.add_argument('--target', type=choice(['predicted', 'true']), default='predicted',
                   help='explain the top-1 prediction (default) or the true class')
    p.add_argument('--layer', help='module to explain, by name (e.g. norm3 for a finer MogaNet map on 28 px inputs, '
                   'where norm4 is 2x2); default: norm4 / stages.3 / layers.3 by family')
    p.add_argument('--plot-images', type=int_at_least(1), default=12, metavar='N',
                   help='images drawn in gradcam_grid.png (the first N; every image is in the npz and csv)')
    p.add_argument('--garment-threshold', type=open_fraction, metavar='T',
                   help='also write gradcam.csv: each map\'s share of mass on the object, the pixels brighter than T of '
                        'full scale (Fashion-MNIST\'s garments on their black background; e.g. 0.1)')
    p.add_argument('--out', required=True)
    return p


def run(args) -> str:
    """Load the models and images, compute and plot the maps, write the npz; the PNG path."""
    import numpy as np
    import torch

    from moga_lab.analysis.gradcam import grad_cam, plot_gradcam_grid
    from moga_lab.loaders import load_eval_images, load_models, write_image_list

    models = load_models(model_sources(args), args.label, use_ema=not args.no_ema, trust=args.trust_weights)
    images, targets, ids, info, paths = load_eval_images(models, args.num_images, args.data, args.data_dir, args.seed,
                                                         per_class=args.one_per_class, transform=args.eval_transform)
    for m in models:
        print(f'{m.name}: {m.source}', file=sys.stderr)
    print(f'images: {len(ids)} from {info.name}, {info.transform}', file=sys.stderr)
    maps, preds = [], []
    for m in models:
        with torch.no_grad():
            pred = m.model(images).argmax(1)
        layer = None
        if args.layer:
            try:
                layer = m.model.get_submodule(args.layer)
            except AttributeError:
                names = [n for n, _ in m.model.named_children()]
                raise ValueError(f'--layer {args.layer!r} is not a module of {m.name}; its top-level modules: '
                                 f'{", ".join(names)}') from None
        maps.append(grad_cam(m.model, images, targets if args.target == 'true' else pred, layer=layer))
        preds.append(pred)
    os.makedirs(args.out, exist_ok=True)
    png = os.path.join(args.out, 'gradcam_grid.png')
    k = args.plot_images
    plot_gradcam_grid(images[:k], [x[:k] for x in maps], [m.name for m in models], targets[:k], [p[:k] for p in preds],
                      info.class_names, info.mean, info.std, png)
    write_image_list(os.path.join(args.out, 'images.csv'), ids, targets, info, paths)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, maps=torch.stack(maps).numpy(), images=images.numpy(), labels=targets.numpy(),
                        predictions=torch.stack(preds).numpy(), image_ids=np.array(ids),
                        models=np.array([m.name for m in models]), class_names=np.array(info.class_names))
    tmp = os.path.join(args.out, '.gradcam_maps.npz.tmp')
    with open(tmp, 'wb') as f:
        f.write(buffer.getvalue())
    os.replace(tmp, os.path.join(args.out, 'gradcam_maps.npz'))
    if args.garment_threshold is not None:
        import pandas as pd
        from moga_lab.analysis.gradcam import mass_inside
        from moga_lab.utils.atomic import atomic_write_csv
        mean = torch.tensor(info.mean, dtype=images.dtype).view(1, -1, 1, 1)
        std = torch.tensor(info.std, dtype=images.dtype).view(1, -1, 1, 1)
        masks = (images * std + mean).amax(1) > args.garment_threshold
        area = masks.flatten(1).float().mean(1)
        rows = [dict(model=m.name, image_id=i, label=int(t), prediction=int(p[k]), cam_on_garment=float(share[k]),
                     garment_area=float(area[k]))
                for m, p, share in zip(models, preds, (mass_inside(x, masks) for x in maps))
                for k, (i, t) in enumerate(zip(ids, targets))]
        atomic_write_csv(os.path.join(args.out, 'gradcam.csv'), pd.DataFrame(rows))
    for m, p in zip(models, preds):
        print(f'{m.name}: {int((p == targets).sum())}/{len(targets)} of these images right')
    print(f'wrote {png} and {os.path.join(args.out, "gradcam_maps.npz")}')
    return png


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point: parse ``argv``, run, exit 2 with one line on bad input."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.num_images < 1:
            raise ValueError(f'--num-images={args.num_images} must be >= 1')
        run(args)
    except user_errors() as error:
        fail(parser.prog, str(error))
    return 0


if __name__ == '__main__':
    sys.exit(main())
