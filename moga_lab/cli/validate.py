"""``python -m moga_lab.cli.validate --checkpoint FILE`` / ``--model NAME --weights FILE --data-dir DIR``: top-1 / top-5.

* A ``.ckpt`` written by ``moga_lab.cli.fit`` rebuilds its own network and, unless told otherwise, evaluates on
  the test split of the data it was trained on (Lightning's Trainer, so DDP-synchronised metrics are checked here).
* ``--model NAME --weights FILE`` (repeatable): a timm model with a local weights file: the authors' MogaNet releases
  (``moganet_tiny_sz224_8xbs128_ep300.pth.tar``) or timm-format ConvNeXt / Swin weights, on the ImageFolder
  ``--data-dir`` (``DIR/val/<class>/...`` or ``DIR/<class>/...``; ImageNet class folders by WordNet ID), each model with
  its own pretrained eval transform (``--eval-transform paper``: the authors' shared one). ``--checkpoint FILE
  --variant tiny`` is the older spelling of ``--model moganet_tiny --weights FILE``.
"""
import os
import sys
from typing import Any, List, Optional, cast

from moga_lab.cli.common import Parser, add_model_arguments, choice, fail, model_sources, user_errors


def build_parser() -> Parser:
    """The command's options (``--help`` prints them with the module docstring)."""
    from moga_lab.data import DATASETS
    from moga_lab.loaders import EVAL_TRANSFORMS
    from moga_lab.models.moganet import MOGANET_ARCHS, VARIANT_ALIASES
    p = Parser(prog='python -m moga_lab.cli.validate', description=__doc__,
               formatter_class=lambda prog: __import__('argparse').RawDescriptionHelpFormatter(prog, width=110))
    add_model_arguments(p, images=False)
    p.add_argument('--variant', type=choice(list(MOGANET_ARCHS) + sorted(VARIANT_ALIASES)),
                   help='older spelling: --checkpoint WEIGHTS --variant V = --model moganet_V --weights WEIGHTS')
    p.add_argument('--data', type=choice(DATASETS), help='dataset (default: the run\'s, or imagefolder for weights)')
    p.add_argument('--data-dir', help='dataset folder')
    p.add_argument('--eval-transform', type=choice(EVAL_TRANSFORMS), default='model',
                   help='--weights: each model\'s own pretrained config (model, default) or the authors\' shared '
                        'resize 256 -> crop 224 (paper)')
    p.add_argument('--image-size', type=int, default=None, help='--weights: eval image size (default: the model\'s)')
    p.add_argument('--crop-pct', type=float, default=None, help='--weights: crop fraction (default: the model\'s)')
    p.add_argument('--batch-size', type=int, default=64)
    p.add_argument('--num-workers', type=int, default=2)
    p.add_argument('--split', type=choice(['test', 'val']), default='test',
                   help='for fit checkpoints on Fashion-MNIST/CIFAR: the test set (default) or the held-out val split')
    p.add_argument('--precision', default='32-true', help='32-true or bf16-mixed')
    return p


def _is_fit_checkpoint(path: str, trust: bool = False) -> bool:
    from moga_lab.models import CheckpointMismatchError, UntrustedCheckpointError, torch_load
    if path.endswith('.safetensors'):
        return False
    try:
        raw = torch_load(path, trust=trust)
    except UntrustedCheckpointError:
        raise
    except CheckpointMismatchError:  # weights saved with pickled extras are not fit checkpoints (refused later)
        return False
    return isinstance(raw, dict) and 'config' in (raw.get('hyper_parameters') or {})


def _validate_fit_checkpoint(args, path: str) -> str:
    import lightning as L

    from moga_lab.training import ImageClassifier, RunConfig, build_datamodule
    module = ImageClassifier.load_from_checkpoint(path, map_location='cpu', weights_only=not args.trust_weights)
    hp = cast(Any, module.hparams)  # (the fit run's saved arguments: config, num_classes, in_chans)
    cfg = RunConfig.from_dict(hp.config)
    if args.data:
        cfg.data.name = args.data
    if args.data_dir:
        cfg.data.data_dir = args.data_dir
    cfg.data.batch_size = args.batch_size
    dm = build_datamodule(cfg)
    if (dm.num_classes, dm.in_chans) != (hp.num_classes, hp.in_chans):
        raise ValueError(f'the checkpoint was trained for {hp.num_classes} classes and '
                         f'{hp.in_chans} channels; {cfg.data.name} has {dm.num_classes} and {dm.in_chans}')
    dm.setup('fit' if args.split == 'val' else 'test')
    loader = dm.val_dataloader() if args.split == 'val' else dm.test_dataloader()
    trainer = L.Trainer(accelerator='auto', devices=1, precision=args.precision, logger=False,
                        enable_model_summary=False)
    out = trainer.test(module, dataloaders=loader, verbose=False)[0]
    return (f'{cfg.model.name} ({path}) on {cfg.data.name} {args.split}: top-1 {100 * out["test/acc1"]:.2f} %  '
            f'top-5 {100 * out["test/acc5"]:.2f} %  ({len(loader.dataset)} images)')


def evaluate(model, loader, num_classes: int, bf16: bool = False, progress: bool = True):
    """(top-1, top-5) of an nn.Module over a loader. A plain loop on purpose: any timm model, no LightningModule
    around it; torchmetrics does the counting (micro-averaged, as ImageNet top-1 is)."""
    import torch
    from torchmetrics.classification import MulticlassAccuracy
    from tqdm.auto import tqdm
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    model = model.to(device).eval()
    top1 = MulticlassAccuracy(num_classes, top_k=1, average='micro').to(device)
    top5 = MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average='micro').to(device)
    with torch.inference_mode(), torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
        for x, y in tqdm(loader, desc='validate', unit='batch', disable=not progress):
            logits = model(x.to(device)).float()
            top1.update(logits, y.to(device))
            top5.update(logits, y.to(device))
    return float(top1.compute()), float(top5.compute())


def _validate_weights(args, source) -> str:
    from torch.utils.data import DataLoader

    from moga_lab.loaders import eval_dataset, load_pretrained
    _, name, weights = source
    m = load_pretrained(name, weights, use_ema=not args.no_ema, trust=args.trust_weights)
    if args.data not in (None, 'imagefolder'):
        raise ValueError(f'--data {args.data} does not fit --weights (a {m.num_classes}-class model); use an '
                         f'ImageFolder: --data-dir DIR')
    overrides = {}
    if args.image_size:
        overrides['input_size'] = (3, args.image_size, args.image_size)
    if args.crop_pct:
        overrides['crop_pct'] = args.crop_pct
    ds, info = eval_dataset([m], args.data_dir, args.eval_transform, overrides)
    loader = DataLoader(ds, batch_size=args.batch_size, num_workers=args.num_workers)
    top1, top5 = evaluate(m.model, loader, m.num_classes, bf16='bf16' in args.precision)
    return (f'{name} ({m.source}) on {info.name}: top-1 {100 * top1:.2f} %  top-5 {100 * top5:.2f} %  '
            f'({len(ds)} images; {info.transform})')


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point: parse ``argv``, run, exit 2 with one line on bad input."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from moga_lab.utils.runtime import keep_freed_memory
    keep_freed_memory()  # speed only: freed tensor buffers stay in the heap (moga_lab/utils/runtime.py)
    try:
        if args.batch_size < 1:
            raise ValueError(f'--batch-size={args.batch_size} must be >= 1')
        if args.crop_pct is not None and not 0 < args.crop_pct <= 1:
            raise ValueError(f'--crop-pct={args.crop_pct} is out of range; accepted: a fraction in (0, 1]')
        sources = model_sources(args)
        for src in sources:
            path = src[1] if src[0] == 'checkpoint' else src[2]
            if not os.path.isfile(path):
                raise FileNotFoundError(f'{path!r} does not exist (pass a local file; nothing is downloaded)')
        lines = []
        for src in sources:
            if src[0] == 'checkpoint' and _is_fit_checkpoint(src[1], args.trust_weights):
                lines.append(_validate_fit_checkpoint(args, src[1]))
                continue
            if src[0] == 'checkpoint':
                if not args.variant:
                    raise ValueError(f'{src[1]} is not a fit checkpoint: name its architecture with --model NAME '
                                     f'--weights {src[1]} (or --variant xtiny|tiny|small|base|large|xlarge)')
                from moga_lab.models import resolve_variant
                src = ('model', f'moganet_{resolve_variant(args.variant)}', src[1])
            lines.append(_validate_weights(args, src))
    except user_errors() as error:
        fail(parser.prog, str(error))
    for line in lines:
        print(line)
    return 0


if __name__ == '__main__':
    sys.exit(main())
