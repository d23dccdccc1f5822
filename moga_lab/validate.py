"""``python -m moga_lab.validate --checkpoint FILE [--variant tiny] [--data-dir DIR]``: top-1 / top-5 of a checkpoint.

* A ``.ckpt`` written by ``moga_lab.fit`` rebuilds its own network and, unless told otherwise, evaluates on
  the test split of the data it was trained on.
* Any other file is taken as MogaNet weights (e.g. the authors' ``moganet_tiny_sz224_8xbs128_ep300.pth.tar``):
  ``--variant`` names the architecture, the classifier size and input channels are read from the weights,
  and ``--data-dir`` is an ImageFolder (``DIR/val/<class>/...`` or ``DIR/<class>/...``) evaluated with the
  reference's eval transform: bicubic resize to size/0.9, centre crop, ImageNet mean/std.
"""
import os
import sys
from typing import List, Optional

from .cli import Parser, choice, fail


def build_parser() -> Parser:
    from .data import DATASETS
    from .models.moganet import MOGANET_ARCHS, VARIANT_ALIASES
    p = Parser(prog='python -m moga_lab.validate', description=__doc__,
               formatter_class=lambda prog: __import__('argparse').RawDescriptionHelpFormatter(prog, width=110))
    p.add_argument('--checkpoint', required=True, help='a fit .ckpt or MogaNet weights (.pth / .pth.tar)')
    p.add_argument('--variant', type=choice(list(MOGANET_ARCHS) + sorted(VARIANT_ALIASES)),
                   help='MogaNet variant of plain weights (ignored for fit checkpoints)')
    p.add_argument('--data', type=choice(DATASETS), help='dataset (default: the run\'s, or imagefolder for weights)')
    p.add_argument('--data-dir', help='dataset folder')
    p.add_argument('--image-size', type=int, default=None, help='eval image size for weights (default 224)')
    p.add_argument('--crop-pct', type=float, default=0.9)
    p.add_argument('--batch-size', type=int, default=64)
    p.add_argument('--num-workers', type=int, default=2)
    p.add_argument('--split', type=choice(['test', 'val']), default='test',
                   help='for fit checkpoints on Fashion-MNIST/CIFAR: the test set (default) or the held-out val split')
    p.add_argument('--precision', default='32-true')
    return p


def _is_fit_checkpoint(obj) -> bool:
    return isinstance(obj, dict) and 'config' in (obj.get('hyper_parameters') or {})


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .runtime import keep_freed_memory
    keep_freed_memory()  # speed only: freed tensor buffers stay in the heap (moga_lab/runtime.py)
    prog = parser.prog
    if not os.path.isfile(args.checkpoint):
        fail(prog, f'--checkpoint {args.checkpoint!r} does not exist (pass a local file; nothing is downloaded)')

    import lightning as L
    import torch

    from .data import DataError, create_datamodule
    from .models import CheckpointMismatchError, load_checkpoint, read_state_dict
    from .training import ImageClassifier, RunConfig, build_datamodule

    try:
        raw = torch.load(args.checkpoint, map_location='cpu', weights_only=True)
    except Exception:  # noqa: BLE001 - plain weights saved with pickled extras: read_state_dict handles them
        raw = None
    try:
        if _is_fit_checkpoint(raw):
            module = ImageClassifier.load_from_checkpoint(args.checkpoint, map_location='cpu', weights_only=True)
            cfg = RunConfig.from_dict(module.hparams.config)
            if args.data:
                cfg.data.name = args.data
            if args.data_dir:
                cfg.data.data_dir = args.data_dir
            cfg.data.batch_size = args.batch_size
            dm = build_datamodule(cfg)
            if (dm.num_classes, dm.in_chans) != (module.hparams.num_classes, module.hparams.in_chans):
                raise ValueError(f'the checkpoint was trained for {module.hparams.num_classes} classes and '
                                 f'{module.hparams.in_chans} channels; {cfg.data.name} has {dm.num_classes} and '
                                 f'{dm.in_chans}')
            dm.setup('fit' if args.split == 'val' else 'test')
            loader = dm.val_dataloader() if args.split == 'val' else dm.test_dataloader()
            what = f'{cfg.model.name} ({args.checkpoint}) on {cfg.data.name} {args.split}'
        else:
            if not args.variant:
                raise ValueError('--variant is required for plain MogaNet weights (accepted: xtiny, tiny, small, '
                                 'base, large, xlarge)')
            state = read_state_dict(args.checkpoint)
            head = state.get('head.weight')
            first = state.get('patch_embed1.projection.0.weight')
            if head is None or first is None:
                raise CheckpointMismatchError(f'{args.checkpoint} holds no MogaNet classifier (no head.weight / '
                                              f'patch_embed1.projection.0.weight)')
            num_classes, in_chans = int(head.shape[0]), int(first.shape[1])
            from .models import resolve_variant
            args.variant = resolve_variant(args.variant)
            size = args.image_size or 224
            cfg = RunConfig()
            cfg.model.name, cfg.model.stem_stride, cfg.model.drop_path_rate = f'moganet_{args.variant}', 4, 0.0
            module = ImageClassifier(cfg.to_dict(), num_classes=num_classes, in_chans=in_chans, image_size=size)
            load_checkpoint(module.model, state)
            data = args.data or 'imagefolder'
            if data == 'imagefolder':
                dm = create_datamodule('imagefolder', data_dir=args.data_dir, image_size=size, crop_pct=args.crop_pct,
                                       batch_size=args.batch_size, num_workers=args.num_workers)
                dm.setup('validate')
                loader = dm.val_dataloader()
            else:
                dm = create_datamodule(data, data_dir=args.data_dir, batch_size=args.batch_size)
                dm.setup('test')
                loader = dm.test_dataloader()
            if dm.num_classes != num_classes or dm.in_chans != in_chans:
                raise ValueError(f'the weights have a {num_classes}-class classifier for {in_chans}-channel input; '
                                 f'the data has {dm.num_classes} classes and {dm.in_chans} channels')
            what = f'moganet_{args.variant} ({args.checkpoint}) on {data}'
    except (ValueError, DataError, FileNotFoundError, CheckpointMismatchError) as error:
        fail(prog, str(error))
    trainer = L.Trainer(accelerator='auto', devices=1, precision=args.precision, logger=False,
                        enable_model_summary=False)
    out = trainer.test(module, dataloaders=loader, verbose=False)[0]
    print(f'{what}: top-1 {100 * out["test/acc1"]:.2f} %  top-5 {100 * out["test/acc5"]:.2f} %  '
          f'({len(loader.dataset)} images)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
