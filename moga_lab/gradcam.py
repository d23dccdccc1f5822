"""``python -m moga_lab.gradcam --checkpoint A.ckpt [--checkpoint B.ckpt ...] --num-images 8 --out DIR``

Grad-CAM maps (captum) of several trained models on the same test images: ``DIR/gradcam_grid.png`` (rows =
images, columns = input and one overlay per model) and ``DIR/gradcam_maps.npz`` (maps [models, N, H, W],
images, labels, predictions, model names, class names).
"""
import io
import os
import sys
from typing import List, Optional

from .cli import Parser, choice, fail, user_errors


def build_parser() -> Parser:
    from .data import DATASETS
    p = Parser(prog='python -m moga_lab.gradcam', description=__doc__,
               formatter_class=lambda prog: __import__('argparse').RawDescriptionHelpFormatter(prog, width=110))
    p.add_argument('--checkpoint', action='append', required=True, help='a fit checkpoint; repeat for several models')
    p.add_argument('--label', action='append', help='a name per checkpoint for the column titles')
    p.add_argument('--data', type=choice(DATASETS), help="default: the first checkpoint's data")
    p.add_argument('--data-dir')
    p.add_argument('--num-images', type=int, default=8)
    p.add_argument('--seed', type=int, default=0, help='selects the test images')
    p.add_argument('--target', type=choice(['predicted', 'true']), default='predicted',
                   help='explain the top-1 prediction (default) or the true class')
    p.add_argument('--layer', help='module to explain, by name (e.g. norm3 for a finer MogaNet map on 28 px inputs, '
                   'where norm4 is 2x2); default: norm4 / stages.3 / layers.3 by family')
    p.add_argument('--out', required=True)
    return p


def run(args) -> str:
    import numpy as np
    import torch

    from .analysis.gradcam import grad_cam, plot_gradcam_grid
    from .training import load_classifiers, load_eval_images

    models = load_classifiers(args.checkpoint, args.label)
    ref = models[0]
    images, targets, ids, info = load_eval_images(ref, args.num_images, args.data, args.data_dir, args.seed)
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
    plot_gradcam_grid(images, maps, [m.name for m in models], targets, preds, ref.class_names, ref.mean, ref.std, png)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, maps=torch.stack(maps).numpy(), images=images.numpy(), labels=targets.numpy(),
                        predictions=torch.stack(preds).numpy(), image_ids=np.array(ids),
                        models=np.array([m.name for m in models]), class_names=np.array(ref.class_names))
    tmp = os.path.join(args.out, '.gradcam_maps.npz.tmp')
    with open(tmp, 'wb') as f:
        f.write(buffer.getvalue())
    os.replace(tmp, os.path.join(args.out, 'gradcam_maps.npz'))
    for m, p in zip(models, preds):
        print(f'{m.name}: {int((p == targets).sum())}/{len(targets)} of these images right')
    print(f'wrote {png} and {os.path.join(args.out, "gradcam_maps.npz")}')
    return png


def main(argv: Optional[List[str]] = None) -> int:
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
